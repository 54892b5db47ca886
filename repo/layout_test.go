package repo

import (
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

func loadTestKey(t testing.TB, m keys.Memory, ref string) crypto.Signer {
	t.Helper()
	k, err := m.Private(context.Background(), ref)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func genKey(t testing.TB, typ keys.Type) crypto.Signer {
	t.Helper()
	k, err := keys.Generate(typ)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testLayout signs a layout whose functionaries, for both steps, are the
// given keys.
func testLayout(t testing.TB, owner crypto.Signer, expires time.Time, functionaries ...crypto.PublicKey) []byte {
	t.Helper()
	layout, err := intoto.NewLayout(owner, intoto.LayoutOptions{
		ReadFunctionaries: functionaries, PublishFunctionaries: functionaries, Expires: expires,
	})
	if err != nil {
		t.Fatal(err)
	}
	return layout
}

func TestPublishLayout(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	owner := genKey(t, keys.ED25519)
	ci := loadTestKey(t, r.signers, r.keys["measurements"])
	layout := testLayout(t, owner, time.Now().Add(time.Hour), ci.Public())
	targetsKey := loadTestKey(t, r.signers, r.keys["targets"])
	if pl, err := r.ws.Layout(ctx); err != nil || pl != nil {
		t.Fatalf("Layout() of a new repository = %+v, %v; want none", pl, err)
	}

	res, err := r.ws.PublishLayout(ctx, layout, []crypto.PublicKey{owner.Public()}, []crypto.Signer{targetsKey})
	if err != nil {
		t.Fatal(err)
	}
	ownerID, _ := intoto.KeyID(owner.Public())
	if res.Unchanged || res.TargetsVersion != 2 || res.Target != metadata.LayoutTarget || len(res.OwnerKeyIDs) != 1 || res.OwnerKeyIDs[0] != ownerID {
		t.Fatalf("result = %+v", res)
	}
	// A client gets the layout through TUF, from the top-level targets
	// metadata, signed with the offline key, with the owner key.
	if got := fetch(t, r.storage, metadata.LayoutTarget); string(got) != string(layout) {
		t.Fatalf("clients fetch %q", got)
	}
	targets := readMeta[tuf.TargetsType](t, r.ws.Storage, "metadata/2.targets.json")
	tf, ok := targets.Signed.Targets[metadata.LayoutTarget]
	if !ok || tf.Custom == nil {
		t.Fatalf("targets v2 has no layout target with custom metadata: %+v", targets.Signed.Targets)
	}
	owners, err := metadata.ParseLayoutCustom(*tf.Custom)
	if err != nil || len(owners) != 1 || !keys.Equal(owners[0], owner.Public()) {
		t.Fatalf("owner keys in custom metadata = %v, %v", owners, err)
	}
	pl, err := r.ws.Layout(ctx)
	if err != nil || pl == nil || string(pl.Data) != string(layout) || !keys.Equal(pl.OwnerKeys[0], owner.Public()) {
		t.Fatalf("Layout() = %+v, %v", pl, err)
	}
	// The offline key was used for this call only.
	if _, kept := r.ws.signerCache[tuf.TARGETS]; kept {
		t.Error("the workspace kept the targets key")
	}

	again, err := r.ws.PublishLayout(ctx, layout, []crypto.PublicKey{owner.Public()}, []crypto.Signer{targetsKey})
	if err != nil || !again.Unchanged || again.TargetsVersion != 2 {
		t.Fatalf("publishing the same layout again: %+v, %v", again, err)
	}

	// The online measurements role cannot publish, let alone replace, it.
	if _, err := r.ws.PublishTargets(ctx, []Target{{Name: metadata.LayoutTarget, Data: []byte("{}")}}, true); err == nil ||
		!strings.Contains(err.Error(), "no role of this repository may sign target "+metadata.LayoutTarget) {
		t.Fatalf("publishing the layout with the online keys: %v", err)
	}

	// A new layout (a new functionary) replaces the old one.
	layout2 := testLayout(t, owner, time.Now().Add(time.Hour), ci.Public(), genKey(t, keys.ED25519).Public())
	res2, err := r.ws.PublishLayout(ctx, layout2, []crypto.PublicKey{owner.Public()}, []crypto.Signer{targetsKey})
	if err != nil || res2.TargetsVersion != 3 {
		t.Fatalf("replacing the layout: %+v, %v", res2, err)
	}
	if got := fetch(t, r.storage, metadata.LayoutTarget); string(got) != string(layout2) {
		t.Fatal("clients do not see the new layout")
	}
}

func TestPublishLayoutRefuses(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	owner := genKey(t, keys.ED25519)
	ci := loadTestKey(t, r.signers, r.keys["measurements"])
	targetsKey := loadTestKey(t, r.signers, r.keys["targets"])
	good := testLayout(t, owner, time.Now().Add(time.Hour), ci.Public())
	owners := []crypto.PublicKey{owner.Public()}
	for _, tc := range []struct {
		name    string
		layout  []byte
		owners  []crypto.PublicKey
		targets []crypto.Signer
		now     time.Time
		want    string
	}{
		{"no targets key", good, owners, nil, time.Time{}, "no targets key given"},
		{"online key as targets key", good, owners, []crypto.Signer{ci}, time.Time{}, "is not a key of the top-level targets role"},
		{"targets key twice", good, owners, []crypto.Signer{targetsKey, targetsKey}, time.Time{}, "is given twice"},
		{"no owner key", good, nil, []crypto.Signer{targetsKey}, time.Time{}, "no layout owner key given"},
		{"owner key twice", good, []crypto.PublicKey{owner.Public(), owner.Public()}, []crypto.Signer{targetsKey}, time.Time{}, "is given twice"},
		{"signed by another owner", good, []crypto.PublicKey{genKey(t, keys.ED25519).Public()}, []crypto.Signer{targetsKey}, time.Time{}, "not signed by a trusted layout key"},
		{"expired", good, owners, []crypto.Signer{targetsKey}, time.Now().Add(2 * time.Hour), "has expired"},
		{"not a layout", []byte(`{"signed": {"_type": "link"}, "signatures": []}`), owners, []crypto.Signer{targetsKey}, time.Time{}, "in-toto layout is invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.ws.Now = nil
			if !tc.now.IsZero() {
				r.ws.Now = func() time.Time { return tc.now }
			}
			_, err := r.ws.PublishLayout(ctx, tc.layout, tc.owners, tc.targets)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(r.storage, "metadata", "2.targets.json")); err == nil {
				t.Fatal("targets was re-signed despite the error")
			}
		})
	}
}

func TestPublishLayoutThreshold(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, k, m := testInitConfig(t, dir)
	k2 := newTestKey(t, m, "targets-2-test", keys.ECDSAP256)
	cfg.Targets = RoleKeys{Keys: []string{k["targets"], k2}, Threshold: 2}
	ws, err := Init(context.Background(), filepath.Join(dir, "ws"), cfg, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	owner := genKey(t, keys.ECDSAP256)
	layout := testLayout(t, owner, time.Now().Add(time.Hour), loadTestKey(t, m, k["measurements"]).Public())
	owners := []crypto.PublicKey{owner.Public()}
	if _, err := ws.PublishLayout(context.Background(), layout, owners, []crypto.Signer{loadTestKey(t, m, k["targets"])}); err == nil ||
		!strings.Contains(err.Error(), "needs 2 signatures, 1 targets key(s) given") {
		t.Fatalf("one of two targets keys: %v", err)
	}
	if _, err := ws.PublishLayout(context.Background(), layout, owners, []crypto.Signer{loadTestKey(t, m, k["targets"]), loadTestKey(t, m, k2)}); err != nil {
		t.Fatal(err)
	}
	if got := fetch(t, cfg.Storage, metadata.LayoutTarget); string(got) != string(layout) {
		t.Fatal("clients do not see the layout signed by both targets keys")
	}
}

func TestPublishWithoutLinksAfterLayout(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}); err != nil {
		t.Fatalf("measurements without links before any layout: %v", err)
	}
	owner := genKey(t, keys.ED25519)
	ci := loadTestKey(t, r.signers, r.keys["measurements"])
	targetsKey := loadTestKey(t, r.signers, r.keys["targets"])
	if _, err := r.ws.PublishLayout(ctx, testLayout(t, owner, time.Now().Add(time.Hour), ci.Public()), []crypto.PublicKey{owner.Public()}, []crypto.Signer{targetsKey}); err != nil {
		t.Fatal(err)
	}
	// Once a layout is published, clients refuse measurements without
	// links: the library refuses to publish them, not only the CLI.
	_, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v2.0.0", "qemu-vtpm", 2)})
	if !errors.Is(err, ErrLinksRequired) || !strings.Contains(err.Error(), metadata.LayoutTarget) {
		t.Fatalf("measurements without links after the layout: %v, want ErrLinksRequired naming the layout", err)
	}
}
