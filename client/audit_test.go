package client_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/mod/sumdb/note"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/translog"
)

func audit(t *testing.T, l *logged, follow bool) *client.AuditReport {
	t.Helper()
	cl, err := client.Open(l.state)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := cl.Audit(context.Background(), follow)
	if err != nil {
		t.Fatalf("audit: %v", err)
	}
	return rep
}

// The audit lists every measurements document published, with its log
// entry; followed, only what is new.
func TestAuditListsMeasurements(t *testing.T) {
	t.Parallel()
	l := newLogged(t)
	l.publish(l.ws)
	rep := audit(t, l, true)
	if len(rep.Problems) != 0 || rep.Size != 3 || len(rep.Measurements) != 2 {
		t.Fatalf("audit: %+v", rep)
	}
	if m := rep.Measurements[1]; m.Image != "v1.0.0" || m.Platform != "qemu-vtpm" || m.LogIndex != 2 || m.Snapshot != 3 {
		t.Fatalf("second publish listed as %+v", m)
	}
	rep = audit(t, l, true)
	if rep.From != 3 || len(rep.Measurements) != 0 {
		t.Fatalf("followed audit with nothing new: %+v", rep)
	}
	l.publish(l.ws)
	if rep = audit(t, l, true); rep.From != 3 || len(rep.Measurements) != 1 || rep.Measurements[0].LogIndex != 3 {
		t.Fatalf("followed audit after a publish: %+v", rep)
	}
}

// Metadata replaced after it was logged, and a logged snapshot signed by
// a key its role never had, are flagged.
func TestAuditFlagsReplacedAndForeignSignedMetadata(t *testing.T) {
	t.Parallel()
	l := newLogged(t)
	ctx := context.Background()
	// An attacker with the log key logs a snapshot signed by its own key.
	snapPath := filepath.Join(l.repo, "metadata", "2.snapshot.json")
	data, err := os.ReadFile(snapPath)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := (&tuf.Metadata[tuf.SnapshotType]{}).FromBytes(data)
	if err != nil {
		t.Fatal(err)
	}
	rogue, err := keys.Generate(keys.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	rs, err := keys.Signer(rogue)
	if err != nil {
		t.Fatal(err)
	}
	snap.Signed.Version = 3
	snap.ClearSignatures()
	if _, err := snap.Sign(rs); err != nil {
		t.Fatal(err)
	}
	forged, err := snap.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(l.repo, "metadata", "3.snapshot.json"), forged, 0o644); err != nil {
		t.Fatal(err)
	}
	rootData, _ := os.ReadFile(filepath.Join(l.repo, "metadata", "1.root.json"))
	fsum, rsum := sha256.Sum256(forged), sha256.Sum256(rootData)
	e, err := (&translog.Entry{SnapshotVersion: 3, SnapshotSHA256: fsum[:], Files: []translog.File{{Role: "root", Version: 1, SHA256: rsum[:]}}}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	logKey, _ := l.signers.Private(ctx, "log-test")
	if _, err := translog.Append(ctx, dirStore(l.repo), "example.com/mtuf-client-test", noteSigner(t, "example.com/mtuf-client-test", logKey.(ed25519.PrivateKey)), nil, e); err != nil {
		t.Fatal(err)
	}
	// And a logged bin is replaced afterwards.
	bins, _ := filepath.Glob(filepath.Join(l.repo, "metadata", "2.measurements-bin-*.json"))
	if len(bins) != 1 {
		t.Fatalf("bins written by the publish: %v", bins)
	}
	if err := os.WriteFile(bins[0], []byte(`{"signed":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cl, _ := client.Open(l.state)
	rep, err := cl.Audit(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, p := range rep.Problems {
		found = append(found, fmt.Sprintf("%d %s: %s", p.LogIndex, p.File, p.Problem))
	}
	all := strings.Join(found, "\n")
	for _, want := range []string{
		"1 metadata/2." + strings.TrimSuffix(filepath.Base(bins[0]), ".json")[2:] + ".json: its SHA-256 is",
		"2 metadata/3.snapshot.json: not signed by the threshold of its role's keys",
		"2 metadata/3.snapshot.json: signed by key ",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("audit does not flag %q; found:\n%s", want, all)
		}
	}
}

// dirStore is a translog.Store over a repository directory, as an
// attacker with write access to it has.
type dirStore string

func (d dirStore) Read(_ context.Context, name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(string(d), name))
}

func (d dirStore) ReadCheckpoint(ctx context.Context) ([]byte, string, error) {
	data, err := d.Read(ctx, translog.CheckpointPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, "", nil
	}
	return data, "", err
}

func (d dirStore) WriteTile(_ context.Context, name string, data []byte) error {
	p := filepath.Join(string(d), name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, data, 0o644)
}

func (d dirStore) WriteCheckpoint(ctx context.Context, data []byte, _ string) error {
	return d.WriteTile(ctx, translog.CheckpointPath, data)
}

// noteSigner turns an ed25519 key into a note signer named origin.
func noteSigner(t *testing.T, origin string, priv ed25519.PrivateKey) note.Signer {
	t.Helper()
	h := sha256.New()
	h.Write([]byte(origin + "\n\x01"))
	h.Write(priv.Public().(ed25519.PublicKey))
	hash := binary.BigEndian.Uint32(h.Sum(nil))
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", origin, hash, base64.StdEncoding.EncodeToString(append([]byte{1}, priv.Seed()...)))
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
