package repo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/translog"
)

// newLogRepo makes a test repository whose root declares a transparency
// log with the given witnesses.
func newLogRepo(t testing.TB, witnesses []translog.Witness, quorum int) *testRepo {
	t.Helper()
	dir := t.TempDir()
	cfg, k, m := testInitConfig(t, dir)
	k["log"] = newTestKey(t, m, "log-test", keys.ED25519)
	cfg.Log = &LogSettings{Origin: "example.com/mtuf-test", Key: k["log"], Witnesses: witnesses, Quorum: quorum}
	ws, err := Init(context.Background(), filepath.Join(dir, "ws"), cfg, m, nil)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return &testRepo{dir: dir, storage: cfg.Storage, ws: ws, keys: k, signers: m, cfg: cfg}
}

// startWitness runs a tlog-witness server for the logs given.
func startWitness(t testing.TB, name string, logs ...string) (translog.Witness, *httptest.Server) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	ws := &translog.WitnessServer{Signer: s, Logs: map[string]note.Verifier{}, Dir: t.TempDir()}
	srv := httptest.NewServer(ws)
	t.Cleanup(srv.Close)
	return translog.Witness{Name: name, Key: vkey, URL: srv.URL}, srv
}

func rootLog(t testing.TB, r *testRepo) *translog.Config {
	t.Helper()
	return rootLogIn(t, r.ws.Storage)
}

// rootLogIn returns the log that the current root of the repository in st
// declares.
func rootLogIn(t testing.TB, st Storage) *translog.Config {
	t.Helper()
	s, err := loadState(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	c, err := logConfig(s.root)
	if err != nil || c == nil {
		t.Fatalf("root declares no log: %v", err)
	}
	return c
}

// logEntries reads the whole log, checking the checkpoint against the
// root's log declaration and every tile and bundle against it.
func logEntries(t testing.TB, r *testRepo) (translog.Checkpoint, []*translog.Entry) {
	t.Helper()
	return logEntriesIn(t, r.ws.Storage)
}

// logEntriesIn is logEntries for the repository in st.
func logEntriesIn(t testing.TB, st Storage) (translog.Checkpoint, []*translog.Entry) {
	t.Helper()
	ctx := context.Background()
	c := rootLogIn(t, st)
	signed, err := st.Get(ctx, translog.CheckpointPath)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.Verify(signed)
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	var out []*translog.Entry
	rd := &translog.Reader{Fetch: logStore{st}.Read}
	if err := rd.Entries(ctx, cp, 0, func(i int64, data []byte) error {
		e, err := translog.ParseEntry(data)
		out = append(out, e)
		return err
	}); err != nil {
		t.Fatalf("log entries: %v", err)
	}
	return cp, out
}

// currentSnapshot returns the version and SHA-256 of the snapshot that
// timestamp.json names.
func currentSnapshot(t testing.TB, st Storage) (int64, []byte) {
	t.Helper()
	ts := readMetaTB[tuf.TimestampType](t, st, "metadata/timestamp.json")
	m := ts.Signed.Meta["snapshot.json"]
	return m.Version, m.Hashes["sha256"]
}

func readMetaTB[T tuf.Roles](t testing.TB, st Storage, name string) *tuf.Metadata[T] {
	t.Helper()
	data, err := st.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	md, err := decodeMetadata[T](name, data)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// Every operation that writes a snapshot logs it, with the files it wrote.
func TestLogEverySnapshot(t *testing.T) {
	t.Parallel()
	r := newLogRepo(t, nil, 0)
	ctx := context.Background()
	res, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ws.Refresh(ctx, 10000*time.Hour); err != nil {
		t.Fatal(err)
	}
	cp, entries := logEntries(t, r)
	v, sum := currentSnapshot(t, r.ws.Storage)
	if cp.Size != int64(len(entries)) || len(entries) < 2 {
		t.Fatalf("checkpoint size %d, %d entries", cp.Size, len(entries))
	}
	last := entries[len(entries)-1]
	if last.SnapshotVersion != v || !bytes.Equal(last.SnapshotSHA256, sum) {
		t.Fatalf("last entry is snapshot v%d, timestamp names v%d", last.SnapshotVersion, v)
	}
	// The entry of the publish names the bin it re-signed, at the version
	// written and with the SHA-256 of the file in storage.
	var found bool
	for _, e := range entries {
		for _, f := range e.Files {
			if f.Role != res.Targets[0].Bin || f.Version != res.Targets[0].BinVersion {
				continue
			}
			data, err := r.ws.Storage.Get(ctx, fmt.Sprintf("metadata/%d.%s.json", f.Version, f.Role))
			if err != nil {
				t.Fatal(err)
			}
			if s := sha256.Sum256(data); !bytes.Equal(s[:], f.SHA256) {
				t.Fatalf("entry for %s v%d has a SHA-256 other than the file's", f.Role, f.Version)
			}
			found = true
		}
	}
	if !found {
		t.Fatalf("no entry names %s v%d", res.Targets[0].Bin, res.Targets[0].BinVersion)
	}
	for i, e := range entries {
		if e.SnapshotVersion != int64(i+1) {
			t.Fatalf("entry %d is snapshot v%d", i, e.SnapshotVersion)
		}
		data, err := r.ws.Storage.Get(ctx, fmt.Sprintf("metadata/%d.snapshot.json", e.SnapshotVersion))
		if err != nil {
			t.Fatal(err)
		}
		if s := sha256.Sum256(data); !bytes.Equal(s[:], e.SnapshotSHA256) {
			t.Fatalf("entry %d: SHA-256 differs from snapshot v%d", i, e.SnapshotVersion)
		}
	}
}

// A publish that fails at any write leaves a log that verifies, holds
// every snapshot that timestamp.json ever named, and takes the retry.
func TestLogPublishInterruptedAtEveryWrite(t *testing.T) {
	t.Parallel()
	r := newLogRepo(t, nil, 0)
	ctx := context.Background()
	base := r.ws.Storage
	var failedWrites []string
	prev, _ := logEntries(t, r)
	k := 0
	// interrupt publishes through fs and, when fs fails a write, checks the
	// log and retries; it reports whether a write failed.
	interrupt := func(fs *failingStorage) bool {
		k++
		r.ws.Storage = fs
		req := PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", byte(10+k)), Replace: true}
		_, err := r.ws.Publish(ctx, req)
		r.ws.Storage = base
		if err == nil {
			return false
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("publish %d: %v", k, err)
		}
		failedWrites = append(failedWrites, fs.failed)
		check := func(when string) {
			cp, entries := logEntries(t, r)
			if err := (&translog.Reader{Fetch: logStore{base}.Read}).Consistent(ctx, prev, cp); err != nil {
				t.Fatalf("%s %s: log not consistent with before: %v", when, fs.failed, err)
			}
			prev = cp
			v, sum := currentSnapshot(t, base)
			for _, e := range entries {
				if e.SnapshotVersion == v && bytes.Equal(e.SnapshotSHA256, sum) {
					return
				}
			}
			t.Fatalf("%s %s: the current snapshot v%d is not in the log", when, fs.failed, v)
		}
		check("after a failure at")
		if _, err := r.ws.Publish(ctx, req); err != nil {
			t.Fatalf("retry after failure at %s: %v", fs.failed, err)
		}
		check("after the retry of")
		return true
	}
	// Every write in turn, whatever order the parallel ones take...
	for n := 1; interrupt(&failingStorage{Storage: base, failAt: n}); n++ {
	}
	// ...and each kind of log write by name, since a count may meet the
	// same parallel write twice and the other never.
	for _, name := range []string{"log/tile/0/", "log/tile/entries/", "log/checkpoint", "metadata/timestamp.json"} {
		if !interrupt(&failingStorage{Storage: base, failName: name}) {
			t.Errorf("no write of %s failed (failed before: %s)", name, strings.Join(failedWrites, " "))
		}
	}
}

// Publishers at once: every publish is logged, none lost.
func TestLogConcurrentPublishers(t *testing.T) {
	t.Parallel()
	r := newLogRepo(t, nil, 0)
	ctx := context.Background()
	errs := publishConcurrently(ctx, r, 4)
	for i, err := range errs {
		if err != nil {
			t.Fatalf("publisher %d: %v", i, err)
		}
	}
	cp, entries := logEntries(t, r)
	if cp.Size != 5 {
		t.Fatalf("log of %d entries after init and 4 publishes", cp.Size)
	}
	for i, e := range entries {
		if e.SnapshotVersion != int64(i+1) {
			t.Fatalf("entry %d is snapshot v%d", i, e.SnapshotVersion)
		}
	}
}

// Three witnesses, quorum 2: a publish goes through with one down, and
// fails, leaving the repository as it was, with two down.
func TestLogWitnessQuorum(t *testing.T) {
	t.Parallel()
	w1, s1 := startWitness(t, "witness-1")
	w2, s2 := startWitness(t, "witness-2")
	w3, s3 := startWitness(t, "witness-3")
	r := newLogRepoWithWitnessSetup(t, []translog.Witness{w1, w2, w3}, 2, s1, s2, s3)
	ctx := context.Background()
	s3.Close()
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}); err != nil {
		t.Fatalf("publish with 2 of 3 witnesses: %v", err)
	}
	cp, _ := logEntries(t, r)
	s2.Close()
	tsBefore, _ := r.ws.Storage.Get(ctx, "metadata/timestamp.json")
	cpBefore, _ := r.ws.Storage.Get(ctx, translog.CheckpointPath)
	_, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.1.0", "qemu-vtpm", 2)})
	if !errors.Is(err, translog.ErrNoQuorum) || !strings.Contains(err.Error(), "witness-2 unreachable") {
		t.Fatalf("publish with 1 of 3 witnesses: %v", err)
	}
	tsAfter, _ := r.ws.Storage.Get(ctx, "metadata/timestamp.json")
	cpAfter, _ := r.ws.Storage.Get(ctx, translog.CheckpointPath)
	if !bytes.Equal(tsBefore, tsAfter) || !bytes.Equal(cpBefore, cpAfter) {
		t.Fatal("a publish without quorum changed timestamp.json or the checkpoint")
	}
	if cp2, _ := logEntries(t, r); cp2 != cp {
		t.Fatal("the log changed")
	}
}

// tellWitnesses gives witness servers the key of the log origin.
func tellWitnesses(t testing.TB, origin string, pub ed25519.PublicKey, servers []*httptest.Server) {
	t.Helper()
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range servers {
		srv.Config.Handler.(*translog.WitnessServer).Logs[origin] = v
	}
}

// newLogRepoWithWitnessSetup is newLogRepo that tells each witness
// server the log's key before Init writes the first checkpoint.
func newLogRepoWithWitnessSetup(t testing.TB, witnesses []translog.Witness, quorum int, servers ...*httptest.Server) *testRepo {
	t.Helper()
	dir := t.TempDir()
	cfg, k, m := testInitConfig(t, dir)
	k["log"] = newTestKey(t, m, "log-test", keys.ED25519)
	cfg.Log = &LogSettings{Origin: "example.com/mtuf-test", Key: k["log"], Witnesses: witnesses, Quorum: quorum}
	tellWitnesses(t, cfg.Log.Origin, m[k["log"]].Public().(ed25519.PublicKey), servers)
	ws, err := Init(context.Background(), filepath.Join(dir, "ws"), cfg, m, nil)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return &testRepo{dir: dir, storage: cfg.Storage, ws: ws, keys: k, signers: m, cfg: cfg}
}

// A publisher that dies after the witnesses cosigned its checkpoint, but
// before writing it, leaves its entry bundle; the next publish logs that
// entry again before its own, so the witness sees the log extend what it
// cosigned instead of a fork.
func TestLogWitnessAfterCrash(t *testing.T) {
	t.Parallel()
	w, srv := startWitness(t, "witness-1")
	r := newLogRepoWithWitnessSetup(t, []translog.Witness{w}, 1, srv)
	ctx := context.Background()
	base := r.ws.Storage
	fs := &failingStorage{Storage: base, failName: translog.CheckpointPath}
	r.ws.Storage = fs
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}); !errors.Is(err, errInjected) {
		t.Fatalf("publish failing at the checkpoint: %v", err)
	}
	r.ws.Storage = base
	before, _ := logEntries(t, r)
	res, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 2)})
	if err != nil {
		t.Fatalf("publish after one whose cosigned checkpoint was lost: %v", err)
	}
	cp, entries := logEntries(t, r)
	if cp.Size != before.Size+2 {
		t.Fatalf("log of %d entries after %d and a publish that took over a lost entry", cp.Size, before.Size)
	}
	lost := entries[before.Size]
	if _, err := base.Get(ctx, fmt.Sprintf("metadata/%d.snapshot.json", lost.SnapshotVersion)); err != nil {
		t.Fatalf("the lost entry names snapshot v%d: %v", lost.SnapshotVersion, err)
	}
	if got := entries[cp.Size-1].SnapshotVersion; got != res.SnapshotVersion {
		t.Fatalf("last entry is snapshot v%d, the publish wrote v%d", got, res.SnapshotVersion)
	}
}

// A publisher that dies just before a root rotation replacing the snapshot
// key leaves an entry whose snapshot only the old key signed; the commit
// of the rotation takes it over, checked against the root the entry names,
// authenticated back from the new root.
func TestLogClaimAcrossRotation(t *testing.T) {
	t.Parallel()
	r := newLogRepo(t, nil, 0)
	ctx := context.Background()
	base := r.ws.Storage
	r.ws.Storage = &failingStorage{Storage: base, failName: translog.CheckpointPath}
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}); !errors.Is(err, errInjected) {
		t.Fatalf("publish failing at the checkpoint: %v", err)
	}
	r.ws.Storage = base
	before, _ := logEntries(t, r)
	snap2 := newTestKey(t, r.signers, "snapshot2-test", keys.ED25519)
	staged, err := r.ws.Stage(ctx, StageRequest{Role: tuf.ROOT, Changes: []KeyChange{{Role: tuf.SNAPSHOT, Add: []string{snap2}, Remove: []string{r.keys["online"]}}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Sign(ctx, staged, r.keys["root"], r.signers); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ws.Commit(ctx); err != nil {
		t.Fatalf("commit of a rotation after a lost entry: %v", err)
	}
	cp, entries := logEntries(t, r)
	if cp.Size != before.Size+2 {
		t.Fatalf("log of %d entries after %d, a lost entry and a rotation", cp.Size, before.Size)
	}
	if root := entries[before.Size].Files[len(entries[before.Size].Files)-1]; root.Role != tuf.ROOT || root.Version != 1 {
		t.Fatalf("the lost entry names %s v%d, want root v1", root.Role, root.Version)
	}
	// A root file in storage that the chain does not vouch for is refused.
	st := claimingLogStore{logStore{base}, readMetaTB[tuf.RootType](t, base, "metadata/2.root.json")}
	data, _ := entries[before.Size].Marshal()
	if err := st.CheckClaimed(ctx, data); err != nil {
		t.Fatalf("the lost entry, checked again: %v", err)
	}
	forged := readMetaTB[tuf.RootType](t, base, "metadata/1.root.json")
	forged.Signed.Roles[tuf.SNAPSHOT].KeyIDs = []string{"00"}
	forgedBytes, err := forged.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	if err := base.Replace(ctx, "metadata/1.root.json", forgedBytes); err != nil {
		t.Fatal(err)
	}
	if err := st.CheckClaimed(ctx, data); !errors.Is(err, translog.ErrForeignEntry) || !strings.Contains(err.Error(), "1.root.json is not signed by its own root keys") {
		t.Fatalf("entry naming a forged root v1: %v", err)
	}
}
