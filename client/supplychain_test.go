package client_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/repo"
)

// chainRepo is a repository whose measurements come with in-toto links,
// with TUF metadata valid for a month so that a client can look at it
// from a few days ahead (when a shorter-lived layout has expired).
type chainRepo struct {
	repoDir string
	ws      *repo.Workspace
	root    []byte
	targets crypto.Signer
	// ci is the measurements key, functionary of both steps.
	ci    crypto.Signer
	owner crypto.Signer
}

func newChainRepo(t *testing.T) *chainRepo {
	t.Helper()
	dir := t.TempDir()
	m := keys.Memory{}
	root, targets, online := newTestKey(t, m, "root-test"), newTestKey(t, m, "targets-test"), newTestKey(t, m, "online-test")
	ci := newTestKey(t, m, "measurements-test")
	month := repo.Duration(30 * 24 * time.Hour)
	ws, err := repo.Init(context.Background(), filepath.Join(dir, "ws"), repo.InitConfig{
		Storage:          filepath.Join(dir, "repo"),
		Root:             repo.RoleKeys{Keys: []string{root}, Threshold: 1},
		Targets:          repo.RoleKeys{Keys: []string{targets}, Threshold: 1},
		Snapshot:         repo.RoleKeys{Keys: []string{online}, Threshold: 1},
		Timestamp:        repo.RoleKeys{Keys: []string{online}, Threshold: 1},
		Measurements:     repo.RoleKeys{Keys: []string{ci}, Threshold: 1},
		MeasurementsBins: 8,
		Expiry:           map[string]repo.Duration{"timestamp": month, "snapshot": month},
	}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	load := func(ref string) crypto.Signer {
		k, err := m.Private(context.Background(), ref)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	owner, err := keys.Generate(keys.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	return &chainRepo{
		repoDir: filepath.Join(dir, "repo"), ws: ws, root: mustRead(t, filepath.Join(dir, "repo", "metadata", "1.root.json")),
		targets: load(targets), ci: load(ci), owner: owner,
	}
}

// publishLayout publishes a layout naming the given functionaries for both
// steps (the CI key when none is given).
func (r *chainRepo) publishLayout(t *testing.T, expires time.Duration, functionaries ...crypto.PublicKey) {
	t.Helper()
	if len(functionaries) == 0 {
		functionaries = []crypto.PublicKey{r.ci.Public()}
	}
	layout, err := intoto.NewLayout(r.owner, intoto.LayoutOptions{
		ReadFunctionaries: functionaries, PublishFunctionaries: functionaries, Expires: time.Now().Add(expires),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ws.PublishLayout(context.Background(), layout, []crypto.PublicKey{r.owner.Public()}, []crypto.Signer{r.targets}); err != nil {
		t.Fatal(err)
	}
}

func chainDoc(t *testing.T, image string, fill byte) []byte {
	t.Helper()
	m := &metadata.Measurements{Image: image, Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{
		4: {Expected: bytes.Repeat([]byte{fill}, 32)},
		8: {Expected: bytes.Repeat([]byte{fill + 1}, 32), WarnOnly: true},
	}}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(data, '\n')
}

func link(t *testing.T, step string, doc []byte, key crypto.Signer) (name string, data []byte) {
	t.Helper()
	materials, products := map[string][]byte{}, map[string][]byte{}
	if step == intoto.StepReadMeasurements {
		products[metadata.MeasurementsFile] = doc
	} else {
		materials[metadata.MeasurementsFile] = doc
	}
	data, keyID, err := intoto.NewLink(step, materials, products, key)
	if err != nil {
		t.Fatal(err)
	}
	name, err = metadata.LinkFileName(step, keyID)
	if err != nil {
		t.Fatal(err)
	}
	return name, data
}

// publish publishes doc with a read link signed by reader and, when
// publisher is set, a publish link signed by it.
func (r *chainRepo) publish(t *testing.T, doc []byte, reader, publisher crypto.Signer) {
	t.Helper()
	name, data := link(t, intoto.StepReadMeasurements, doc, reader)
	if _, err := r.ws.PublishWithLinks(context.Background(), repo.LinkedPublishRequest{
		Document: doc, Links: []repo.LinkFile{{Source: name, Data: data}}, PublishSigner: publisher, Replace: true,
	}); err != nil {
		t.Fatal(err)
	}
}

func (r *chainRepo) client(t *testing.T) (*client.Client, string) {
	t.Helper()
	state := filepath.Join(t.TempDir(), "state")
	c, err := client.Init(state, r.repoDir, r.root)
	if err != nil {
		t.Fatal(err)
	}
	return c, state
}

func TestUpdateVerifiesSupplyChain(t *testing.T) {
	t.Parallel()
	r := newChainRepo(t)
	r.publishLayout(t, 24*time.Hour)
	doc := chainDoc(t, "v1.0.0", 0x40)
	r.publish(t, doc, r.ci, r.ci)
	c, state := r.client(t)
	m, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm")
	if err != nil {
		t.Fatal(err)
	}
	if m.PCRs[4].Expected[0] != 0x40 {
		t.Fatalf("measurements = %+v", m)
	}
	// The record survives a reopen and describes this update.
	c, err = client.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := c.SupplyChain()
	if err != nil || sc == nil {
		t.Fatalf("SupplyChain() = %v, %v", sc, err)
	}
	ownerID, _ := intoto.KeyID(r.owner.Public())
	ciID, _ := intoto.KeyID(r.ci.Public())
	wantLinks := []string{
		"measurements/v1.0.0/qemu-vtpm/publish." + ciID[:8] + ".link",
		"measurements/v1.0.0/qemu-vtpm/read-measurements." + ciID[:8] + ".link",
	}
	if !sc.Verified || sc.Warning != "" || !slices.Equal(sc.LayoutOwners, []string{ownerID}) || !slices.Equal(sc.Links, wantLinks) ||
		sc.Image != "v1.0.0" || sc.LayoutExpires == nil || sc.LayoutExpires.Before(time.Now()) {
		t.Fatalf("SupplyChain() = %+v", sc)
	}
}

func TestUpdateWithoutLayoutWarns(t *testing.T) {
	t.Parallel()
	r := newChainRepo(t)
	r.publish(t, chainDoc(t, "v1.0.0", 0x40), r.ci, r.ci)
	c, _ := r.client(t)
	if _, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm"); err != nil {
		t.Fatal(err)
	}
	sc, err := c.SupplyChain()
	if err != nil || sc == nil {
		t.Fatalf("SupplyChain() = %v, %v", sc, err)
	}
	if sc.Verified || sc.Warning != client.NoLayoutWarning || !strings.Contains(sc.Warning, "no in-toto layout") {
		t.Fatalf("SupplyChain() = %+v", sc)
	}
	// Once the layout is there, the same client verifies the chain.
	r.publishLayout(t, 24*time.Hour)
	if _, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm"); err != nil {
		t.Fatal(err)
	}
	if sc, _ := c.SupplyChain(); sc == nil || !sc.Verified {
		t.Fatalf("after the layout was published: %+v", sc)
	}
}

// Every broken supply chain is refused with ErrUntrusted and the in-toto
// error that says which guarantee failed, and leaves the client's trusted
// measurements as they were.
func TestUpdateRefusesBrokenSupplyChain(t *testing.T) {
	t.Parallel()
	other, err := keys.Generate(keys.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, r *chainRepo)
		now    time.Time
		wantIs error
		want   string
	}{
		{
			name: "missing link",
			setup: func(t *testing.T, r *chainRepo) {
				// Published before the layout, without the publish link.
				r.publish(t, chainDoc(t, "v1.0.0", 0x40), r.ci, nil)
				r.publishLayout(t, 24*time.Hour)
			},
			wantIs: intoto.ErrLinkMissing,
			want:   "step publish needs 1 link(s) signed by distinct functionaries, found 0",
		},
		{
			name: "link signed by a key that is not a functionary",
			setup: func(t *testing.T, r *chainRepo) {
				r.publish(t, chainDoc(t, "v1.0.0", 0x40), other, r.ci)
				r.publishLayout(t, 24*time.Hour)
			},
			wantIs: intoto.ErrLinkUnauthorized,
			want:   "which is not a functionary of step read-measurements",
		},
		{
			name: "measurements differ from the link's product",
			setup: func(t *testing.T, r *chainRepo) {
				r.publishLayout(t, 24*time.Hour)
				// The CI key signs other measurements than those the
				// links attest, bypassing the publish checks.
				doc, forged := chainDoc(t, "v1.0.0", 0x40), chainDoc(t, "v1.0.0", 0x66)
				var targets []repo.Target
				for _, step := range []string{intoto.StepReadMeasurements, intoto.StepPublish} {
					name, data := link(t, step, doc, r.ci)
					targets = append(targets, repo.Target{Name: "measurements/v1.0.0/qemu-vtpm/" + name, Data: data})
				}
				targets = append(targets, repo.Target{Name: "measurements/v1.0.0/qemu-vtpm/measurements.json", Data: forged})
				if _, err := r.ws.PublishTargets(context.Background(), targets, true); err != nil {
					t.Fatal(err)
				}
			},
			wantIs: intoto.ErrMeasurementsMismatch,
			want:   "measurements.json is not the measurements.json that step read-measurements produced",
		},
		{
			name: "expired layout",
			setup: func(t *testing.T, r *chainRepo) {
				r.publishLayout(t, 24*time.Hour)
				r.publish(t, chainDoc(t, "v1.0.0", 0x40), r.ci, r.ci)
			},
			now:    time.Now().Add(72 * time.Hour),
			wantIs: intoto.ErrLayoutExpired,
			want:   "the layout owner must sign a new layout",
		},
		{
			name: "tampered layout file",
			setup: func(t *testing.T, r *chainRepo) {
				r.publishLayout(t, 24*time.Hour)
				r.publish(t, chainDoc(t, "v1.0.0", 0x40), r.ci, r.ci)
				files, _ := filepath.Glob(filepath.Join(r.repoDir, "targets", "supplychain", "*.root.layout"))
				if len(files) != 1 {
					t.Fatalf("layout files: %v", files)
				}
				data := mustRead(t, files[0])
				os.WriteFile(files[0], bytes.Replace(data, []byte(`"threshold": 1`), []byte(`"threshold": 0`), 1), 0o644)
			},
			want: "differs from its signed length or hash",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newChainRepo(t)
			tc.setup(t, r)
			c, state := r.client(t)
			if !tc.now.IsZero() {
				c.Now = func() time.Time { return tc.now }
			}
			_, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm")
			if !errors.Is(err, client.ErrUntrusted) || (tc.wantIs != nil && !errors.Is(err, tc.wantIs)) {
				t.Fatalf("err = %v, want ErrUntrusted and %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
			if tc.wantIs != nil && !strings.Contains(err.Error(), "in-toto verification of measurements/v1.0.0/qemu-vtpm/measurements.json") {
				t.Errorf("err = %v, want it to name the measurements", err)
			}
			reopened, err := client.Open(state)
			if err != nil {
				t.Fatal(err)
			}
			if cfg := reopened.Config(); cfg.Measurements != nil {
				t.Error("a refused update recorded measurements")
			}
			if sc, err := reopened.SupplyChain(); sc != nil || err != nil {
				t.Errorf("a refused update recorded a supply chain: %+v, %v", sc, err)
			}
		})
	}
}
