package repo

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/keys"
)

func TestStageSignCommitRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newTestRepo(t)
	root2 := newTestKey(t, r.signers, "root2-test", keys.ED25519)

	// A key already in the role, under any id, is refused.
	if _, err := r.ws.Stage(ctx, StageRequest{Role: "root", Changes: []KeyChange{{Role: "root", Add: []string{r.keys["root"]}}}}); err == nil || !strings.Contains(err.Error(), "already a key of role root") {
		t.Fatalf("duplicate key: %v", err)
	}
	if _, err := r.ws.Stage(ctx, StageRequest{Role: "root", Changes: []KeyChange{{Role: "root", Threshold: 3}}}); err == nil || !strings.Contains(err.Error(), "threshold 3 is more than its 1 key") {
		t.Fatalf("threshold: %v", err)
	}
	if _, err := r.ws.Stage(ctx, StageRequest{Role: "nope"}); err == nil {
		t.Fatal("unknown role staged")
	}

	p, err := r.ws.Stage(ctx, StageRequest{Role: "root", Changes: []KeyChange{{Role: "root", Add: []string{root2}, Threshold: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ws.Stage(ctx, StageRequest{Role: "root"}); err == nil || !strings.Contains(err.Error(), "already staged") {
		t.Fatalf("second stage: %v", err)
	}
	// A key of another role may not sign.
	if _, _, err := Sign(ctx, p, r.keys["targets"], r.signers); err == nil || !strings.Contains(err.Error(), "may not sign the staged root v2") ||
		!strings.Contains(err.Error(), "it is not one of the root keys of root v1 (current) or root keys of root v2 (new)") {
		t.Fatalf("targets key on root: %v", err)
	}
	// Unsigned: refused, with no empty list of signers, and pointing at
	// the file that Stage wrote.
	_, err = r.ws.Commit(ctx)
	if !errors.Is(err, ErrThreshold) || !strings.Contains(err.Error(), "0 of 1 signed; may still sign: ") || strings.Contains(err.Error(), "()") ||
		!strings.Contains(err.Error(), "sign it with 'mtuf repo sign "+p+" --key KEY'") {
		t.Fatalf("commit unsigned: %v", err)
	}
	if _, _, err := Sign(ctx, p, r.keys["root"], r.signers); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Sign(ctx, p, r.keys["root"], r.signers); err == nil || !strings.Contains(err.Error(), "signed this file already") {
		t.Fatalf("same key twice: %v", err)
	}
	// One signature fewer than the new root's threshold: refused, naming
	// who may still sign, and nothing is published.
	_, err = r.ws.Commit(ctx)
	if !errors.Is(err, ErrThreshold) || !strings.Contains(err.Error(), "1 of 2 signed") || !strings.Contains(err.Error(), "may still sign") {
		t.Fatalf("commit under threshold: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.storage, "metadata", "2.root.json")); err == nil {
		t.Fatal("a refused commit published a root")
	}
	st, err := r.ws.Staged()
	if err != nil || len(st) != 1 {
		t.Fatalf("staged = %v, %v", st, err)
	}
	prog := st["root"].Progress()
	if len(prog) != 2 || !prog[0].Met || prog[1].Met {
		t.Fatalf("progress = %+v", prog)
	}

	// A staged file edited after signing is refused.
	data, _ := os.ReadFile(p)
	saved := append([]byte(nil), data...)
	os.WriteFile(p, []byte(strings.Replace(string(data), `"expires": "20`, `"expires": "21`, 1)), 0o600)
	if strings.Contains(string(data), `"expires": "20`) {
		if _, err := ReadStaged(p); err == nil || !strings.Contains(err.Error(), "changed after it was signed") {
			t.Fatalf("edited file: %v", err)
		}
	} else {
		t.Fatalf("staged file carries no expiry:\n%s", data)
	}
	os.WriteFile(p, saved, 0o600)

	if _, _, err := Sign(ctx, p, root2, r.signers); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ws.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	fetch(t, r.storage, "measurements/x/qemu-vtpm/measurements.json")

	// A staged version that is not the next one is refused.
	os.MkdirAll(filepath.Dir(p), 0o700)
	os.WriteFile(p, saved, 0o600)
	Sign(ctx, p, root2, r.signers)
	if _, err := r.ws.Commit(ctx); err == nil || !strings.Contains(err.Error(), "staged root is version 2, but the repository's root is at version 2") {
		t.Fatalf("stale version: %v", err)
	}
}

// One key listed under two key ids signs twice: it counts once.
func TestOneKeyCountsOnce(t *testing.T) {
	t.Parallel()
	priv, err := keys.Generate(keys.ECDSAP256)
	if err != nil {
		t.Fatal(err)
	}
	k1, _ := keys.TUFKey(priv.Public())
	// The same public key under a second key type spelling gives a
	// second key id.
	alt := *k1
	alt.Type = "ecdsa-sha2-nistp256"
	id1, _ := k1.ID()
	id2, _ := (&tuf.Key{Type: alt.Type, Scheme: alt.Scheme, Value: alt.Value}).ID()
	if id1 == id2 {
		t.Fatal("no second key id")
	}
	md := tuf.Targets()
	signer, _ := keys.Signer(priv)
	sig, err := md.Sign(signer)
	if err != nil {
		t.Fatal(err)
	}
	md.Signatures = append(md.Signatures, tuf.Signature{KeyID: id2, Signature: sig.Signature})
	data, _ := md.ToBytes(false)
	ks := map[string]*tuf.Key{id1: k1, id2: {Type: alt.Type, Scheme: alt.Scheme, Value: alt.Value}}
	if err := verifyWith("targets", data, ks, []string{id1, id2}, 1); err != nil {
		t.Fatalf("threshold 1: %v", err)
	}
	if err := verifyWith("targets", data, ks, []string{id1, id2}, 2); err == nil {
		t.Fatal("one key signing under two key ids met a threshold of 2")
	}
}

// publicOnly resolves the public halves of the keys it holds, but no
// private key, as a resolver of keys held elsewhere may.
type publicOnly struct{ keys.Memory }

func (publicOnly) Private(_ context.Context, ref string) (crypto.Signer, error) {
	return nil, fmt.Errorf("private key %s is not here", ref)
}

// A key staged for an online role must be one the workspace can sign with,
// whatever resolves its keys.
func TestStageOnlineKeyNeedsPrivateKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newTestRepo(t)
	held := keys.Memory{}
	newTestKey(t, held, "online2-test", keys.ED25519)
	r.ws.Keys = publicOnly{held}
	_, err := r.ws.Stage(ctx, StageRequest{Role: "root", Changes: []KeyChange{{Role: "timestamp", Add: []string{"online2-test"}}}})
	if err == nil || !strings.Contains(err.Error(), "needs its private key: private key online2-test is not here") {
		t.Fatalf("online key without its private key: %v", err)
	}
	r.ws.Keys = held
	if _, err := r.ws.Stage(ctx, StageRequest{Role: "root", Changes: []KeyChange{{Role: "timestamp", Add: []string{"online2-test"}}}}); err != nil {
		t.Fatalf("online key held in memory: %v", err)
	}
}
