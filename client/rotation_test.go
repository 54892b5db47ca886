package client_test

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/repo"
)

// ceremony is a repository with three root keys, two targets keys and a
// client that updated once at the start.
type ceremony struct {
	t    *testing.T
	dir  string
	repo string
	ws   *repo.Workspace
	k    map[string]string
	// signers holds the keys that k names.
	signers keys.Memory
	client  *client.Client
	state   string
	fill    byte
}

func newCeremony(t *testing.T) *ceremony {
	t.Helper()
	dir := t.TempDir()
	k, m := map[string]string{}, keys.Memory{}
	for _, n := range []string{"root1", "root2", "root3", "targets1", "targets2", "online1", "online2", "ci1", "ci2"} {
		k[n] = newTestKey(t, m, n+"-test")
	}
	c := &ceremony{t: t, dir: dir, repo: filepath.Join(dir, "repo"), k: k, signers: m}
	one := func(n string) repo.RoleKeys { return repo.RoleKeys{Keys: []string{k[n]}, Threshold: 1} }
	ws, err := repo.Init(context.Background(), filepath.Join(dir, "ws"), repo.InitConfig{
		Storage: c.repo, Root: one("root1"), Targets: one("targets1"),
		Snapshot: one("online1"), Timestamp: one("online1"), Measurements: one("ci1"), MeasurementsBins: 4,
	}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.ws = ws
	c.publish()
	root, _ := os.ReadFile(filepath.Join(c.repo, "metadata", "1.root.json"))
	c.state = filepath.Join(dir, "state")
	if c.client, err = client.Init(c.state, c.repo, root); err != nil {
		t.Fatal(err)
	}
	c.update()
	return c
}

func (c *ceremony) publish() {
	c.t.Helper()
	c.fill++
	m := measurementsWith("v1.0.0", c.fill)
	if _, err := c.ws.Publish(context.Background(), repo.PublishRequest{Measurements: m, Replace: true}); err != nil {
		c.t.Fatal(err)
	}
}

// update runs the client and checks it sees the newest measurements.
func (c *ceremony) update() {
	c.t.Helper()
	cl, err := client.Open(c.state)
	if err != nil {
		c.t.Fatal(err)
	}
	m, err := cl.Update(context.Background(), "v1.0.0", "qemu-vtpm")
	if err != nil {
		c.t.Fatalf("client update: %v", err)
	}
	if m.PCRs[4].Expected[0] != c.fill {
		c.t.Fatalf("client sees measurements %x, want the latest (%x)", m.PCRs[4].Expected[0], c.fill)
	}
}

// stage stages role with changes and signs it with the named keys.
func (c *ceremony) stage(role string, signers []string, changes ...repo.KeyChange) {
	c.t.Helper()
	p, err := c.ws.Stage(context.Background(), repo.StageRequest{Role: role, Changes: changes})
	if err != nil {
		c.t.Fatalf("stage %s: %v", role, err)
	}
	for _, s := range signers {
		if _, _, err := repo.Sign(context.Background(), p, c.k[s], c.signers); err != nil {
			c.t.Fatalf("sign %s with %s: %v", role, s, err)
		}
	}
}

func (c *ceremony) commit() {
	c.t.Helper()
	if _, err := c.ws.Commit(context.Background()); err != nil {
		c.t.Fatalf("commit: %v", err)
	}
}

// Every rotation a project meets; in each, a client that last updated
// several versions earlier updates cleanly.
func TestRotations(t *testing.T) {
	t.Parallel()
	t.Run("root key replaced", func(t *testing.T) {
		t.Parallel()
		c := newCeremony(t)
		c.stage("root", []string{"root1", "root2"}, repo.KeyChange{Role: "root", Add: []string{c.k["root2"]}, Remove: []string{c.k["root1"]}})
		c.commit()
		c.publish()
		c.update()
	})
	t.Run("root threshold raised and lowered over several versions", func(t *testing.T) {
		t.Parallel()
		c := newCeremony(t)
		c.stage("root", []string{"root1", "root2"}, repo.KeyChange{Role: "root", Add: []string{c.k["root2"], c.k["root3"]}, Threshold: 2})
		c.commit()
		c.publish()
		c.stage("root", []string{"root2", "root3"}, repo.KeyChange{Role: "root", Remove: []string{c.k["root1"]}, Threshold: 1})
		c.commit()
		c.stage("root", []string{"root3"})
		c.commit()
		c.publish()
		c.update()
		if _, err := os.Stat(filepath.Join(c.state, "tuf", "root.json")); err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(filepath.Join(c.state, "tuf", "root.json"))
		if r, err := tuf.Root().FromBytes(data); err != nil || r.Signed.Version != 4 {
			t.Fatalf("client trusts root %v, want v4", err)
		}
	})
	t.Run("targets key replaced", func(t *testing.T) {
		t.Parallel()
		c := newCeremony(t)
		c.stage("root", []string{"root1"}, repo.KeyChange{Role: "targets", Add: []string{c.k["targets2"]}, Remove: []string{c.k["targets1"]}})
		c.stage("targets", []string{"targets2"})
		c.commit()
		c.publish()
		c.update()
	})
	t.Run("delegated role key replaced and the old one revoked", func(t *testing.T) {
		t.Parallel()
		c := newCeremony(t)
		c.stage("targets", []string{"targets1"}, repo.KeyChange{Role: "measurements", Add: []string{c.k["ci2"]}, Remove: []string{c.k["ci1"]}})
		c.commit()
		c.publish()
		c.update()
		// The revoked key signs the bin the client is about to fetch:
		// refused, although the bin is otherwise exactly right.
		c.publish()
		resign(t, newestBin(t, c.repo), c.signers[c.k["ci1"]])
		cl, _ := client.Open(c.state)
		_, err := cl.Update(context.Background(), "v1.0.0", "qemu-vtpm")
		if !errors.Is(err, client.ErrUntrusted) || !strings.Contains(err.Error(), "threshold") {
			t.Fatalf("bin signed by a revoked key: %v", err)
		}
	})
	t.Run("online key replaced after a fast-forward attack", func(t *testing.T) {
		t.Parallel()
		c := newCeremony(t)
		// The attacker holds online1 and pushes a timestamp far ahead.
		forged := forgeTimestamp(t, c, 1000000)
		os.WriteFile(filepath.Join(c.repo, "metadata", "timestamp.json"), forged, 0o644)
		cl, _ := client.Open(c.state)
		if _, err := cl.Update(context.Background(), "v1.0.0", "qemu-vtpm"); err != nil {
			t.Fatalf("client did not take the forged timestamp: %v", err)
		}
		// The maintainers rotate the online key in root; the repository's
		// next timestamp is far below the forged one.
		c.stage("root", []string{"root1"},
			repo.KeyChange{Role: "timestamp", Add: []string{c.k["online2"]}, Remove: []string{c.k["online1"]}},
			repo.KeyChange{Role: "snapshot", Add: []string{c.k["online2"]}, Remove: []string{c.k["online1"]}})
		c.commit()
		c.publish()
		// TUF 5.3.11: the client drops the timestamp signed by the
		// rotated key and accepts the lower version.
		c.update()
	})
}

// newestBin is the measurements bin file written last.
func newestBin(t *testing.T, dir string) string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "metadata", "*.measurements-bin-*.json"))
	var best string
	var bestTime int64
	for _, p := range m {
		fi, err := os.Stat(p)
		if err == nil && fi.ModTime().UnixNano() >= bestTime {
			best, bestTime = p, fi.ModTime().UnixNano()
		}
	}
	if best == "" {
		t.Fatal("no bins")
	}
	return best
}

// resign replaces a metadata file's signatures with one by priv.
func resign(t *testing.T, path string, priv crypto.Signer) {
	t.Helper()
	data, _ := os.ReadFile(path)
	md, err := tuf.Targets().FromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := keys.Signer(priv)
	md.ClearSignatures()
	if _, err := md.Sign(signer); err != nil {
		t.Fatal(err)
	}
	out, _ := md.ToBytes(false)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func measurementsWith(image string, fill byte) *metadata.Measurements {
	return &metadata.Measurements{Image: image, Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{
		4: {Expected: bytes.Repeat([]byte{fill}, 32)},
	}}
}

// forgeTimestamp signs, with the compromised online1 key, a timestamp of
// the given version naming the repository's current snapshot.
func forgeTimestamp(t *testing.T, c *ceremony, version int64) []byte {
	t.Helper()
	data, _ := os.ReadFile(filepath.Join(c.repo, "metadata", "timestamp.json"))
	ts, err := tuf.Timestamp().FromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	ts.Signed.Version = version
	signer, _ := keys.Signer(c.signers[c.k["online1"]])
	ts.ClearSignatures()
	if _, err := ts.Sign(signer); err != nil {
		t.Fatal(err)
	}
	out, _ := ts.ToBytes(false)
	return out
}
