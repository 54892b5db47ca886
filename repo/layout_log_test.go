package repo

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/translog"
)

// Publishing the in-toto layout writes a snapshot, so it appends exactly
// one entry: that snapshot, the top-level targets it re-signed, and the
// root in force, each with the SHA-256 of the file in storage. A client
// that accepted the log before accepts the new version.
func TestLogLayout(t *testing.T) {
	t.Parallel()
	r := newLogRepo(t, nil, 0)
	ctx := context.Background()
	st := r.ws.Storage
	rd := &translog.Reader{Fetch: logStore{st}.Read}
	cfg := rootLog(t, r)
	v0, sum0 := currentSnapshot(t, st)
	seen, err := rd.Accept(ctx, cfg, nil, v0, sum0)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := logEntries(t, r)

	owner := genKey(t, keys.ED25519)
	ci := loadTestKey(t, r.signers, r.keys["measurements"])
	layout := testLayout(t, owner, time.Now().Add(time.Hour), ci.Public())
	res, err := r.ws.PublishLayout(ctx, layout, []crypto.PublicKey{owner.Public()}, []crypto.Signer{loadTestKey(t, r.signers, r.keys["targets"])})
	if err != nil {
		t.Fatal(err)
	}

	cp, entries := logEntries(t, r)
	if cp.Size != before.Size+1 {
		t.Fatalf("the layout took the log from %d to %d entries, want one more", before.Size, cp.Size)
	}
	e := entries[len(entries)-1]
	v, sum := currentSnapshot(t, st)
	if e.SnapshotVersion != res.SnapshotVersion || v != res.SnapshotVersion || !bytes.Equal(e.SnapshotSHA256, sum) {
		t.Fatalf("entry for snapshot v%d %x; the layout wrote v%d, timestamp.json names v%d %x", e.SnapshotVersion, e.SnapshotSHA256, res.SnapshotVersion, v, sum)
	}
	want := map[string]int64{tuf.TARGETS: res.TargetsVersion, tuf.ROOT: 1}
	if len(e.Files) != len(want) {
		t.Fatalf("entry names %d files, want targets and root: %+v", len(e.Files), e.Files)
	}
	for _, f := range e.Files {
		if want[f.Role] != f.Version {
			t.Fatalf("entry names %s v%d; the layout wrote targets v%d under root v1", f.Role, f.Version, res.TargetsVersion)
		}
		data, err := st.Get(ctx, fmt.Sprintf("metadata/%d.%s.json", f.Version, f.Role))
		if err != nil {
			t.Fatal(err)
		}
		if s := sha256.Sum256(data); !bytes.Equal(s[:], f.SHA256) {
			t.Fatalf("entry for %s v%d has a SHA-256 other than the file's", f.Role, f.Version)
		}
	}

	// A client: the layout through TUF, the snapshot in the log, the log
	// consistent with the one it saw before.
	if got := fetch(t, r.storage, metadata.LayoutTarget); !bytes.Equal(got, layout) {
		t.Fatalf("clients fetch %q", got)
	}
	if _, err := rd.Accept(ctx, cfg, seen, v, sum); err != nil {
		t.Fatalf("client after the layout: %v", err)
	}
}
