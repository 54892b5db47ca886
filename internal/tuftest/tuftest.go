// Package tuftest builds TUF repositories by hand with go-tuf's metadata
// API, for tests of shapes that mtuf's own repository code never writes
// but a client or a mirror must still handle correctly.
package tuftest

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// Delegation paths of the roles a and b of SharedRoleRepo.
const (
	PathsA = "measurements/v1.0.0/*/*"
	PathsB = "measurements/v2.0.0/*/*"
)

// SharedRoleRepo writes into dir (metadata/ and targets/, consistent
// snapshots, hash-prefixed targets) a repository where two delegators
// hand one role name to different keys: targets delegates PathsA to role
// a and PathsB to role b; a delegates PathsA to role "shared" with one
// key, b delegates PathsB to role "shared" with another. shared.json
// lists files (target name to contents) and is signed by a's key for it
// only, so TUF trusts it for a lookup through a and refuses it for one
// through b. It returns the root metadata, the trust anchor.
func SharedRoleRepo(t testing.TB, dir string, files map[string][]byte) []byte {
	t.Helper()
	expires := time.Now().Add(24 * time.Hour)
	write := func(name string, data []byte) {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	topPriv, topKey := newKey(t)
	root := tuf.Root(expires)
	root.Signed.ConsistentSnapshot = true
	for _, role := range []string{tuf.ROOT, tuf.TARGETS, tuf.SNAPSHOT, tuf.TIMESTAMP} {
		if err := root.Signed.AddKey(topKey, role); err != nil {
			t.Fatal(err)
		}
	}
	aPriv, aKey := newKey(t)
	bPriv, bKey := newKey(t)
	sharedPriv, sharedAKey := newKey(t)
	_, sharedBKey := newKey(t)
	targets, a, b, shared := tuf.Targets(expires), tuf.Targets(expires), tuf.Targets(expires), tuf.Targets(expires)
	delegate(t, targets, "a", aKey, PathsA)
	delegate(t, targets, "b", bKey, PathsB)
	delegate(t, a, "shared", sharedAKey, PathsA)
	delegate(t, b, "shared", sharedBKey, PathsB)
	for name, data := range files {
		tf, err := tuf.TargetFile().FromBytes(name, data, "sha256")
		if err != nil {
			t.Fatal(err)
		}
		shared.Signed.Targets[name] = tf
		sum := sha256.Sum256(data)
		write("targets/"+path.Join(path.Dir(name), hex.EncodeToString(sum[:])+"."+path.Base(name)), data)
	}
	rootBytes := sign(t, root, topPriv)
	write("metadata/1.root.json", rootBytes)
	snapshot := tuf.Snapshot(expires)
	for _, r := range []struct {
		name string
		md   *tuf.Metadata[tuf.TargetsType]
		key  ed25519.PrivateKey
	}{{tuf.TARGETS, targets, topPriv}, {"a", a, aPriv}, {"b", b, bPriv}, {"shared", shared, sharedPriv}} {
		write(fmt.Sprintf("metadata/1.%s.json", r.name), sign(t, r.md, r.key))
		snapshot.Signed.Meta[r.name+".json"] = tuf.MetaFile(1)
	}
	write("metadata/1.snapshot.json", sign(t, snapshot, topPriv))
	timestamp := tuf.Timestamp(expires)
	timestamp.Signed.Meta["snapshot.json"] = tuf.MetaFile(1)
	write("metadata/timestamp.json", sign(t, timestamp, topPriv))
	return rootBytes
}

func newKey(t testing.TB) (ed25519.PrivateKey, *tuf.Key) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := tuf.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return priv, k
}

// delegate has parent delegate paths to role, with threshold 1 of key k.
func delegate(t testing.TB, parent *tuf.Metadata[tuf.TargetsType], role string, k *tuf.Key, paths ...string) {
	t.Helper()
	if parent.Signed.Delegations == nil {
		parent.Signed.Delegations = &tuf.Delegations{Keys: map[string]*tuf.Key{}}
	}
	parent.Signed.Delegations.Roles = append(parent.Signed.Delegations.Roles,
		tuf.DelegatedRole{Name: role, Threshold: 1, Paths: paths, KeyIDs: []string{}})
	if err := parent.Signed.AddKey(k, role); err != nil {
		t.Fatal(err)
	}
}

func sign[T tuf.Roles](t testing.TB, md *tuf.Metadata[T], priv ed25519.PrivateKey) []byte {
	t.Helper()
	md.ClearSignatures()
	s, err := signature.LoadSigner(priv, crypto.Hash(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.Sign(s); err != nil {
		t.Fatal(err)
	}
	data, err := md.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
