package repo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/internal/s3test"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/translog"
)

// newS3LogRepo is newS3Repo for a repository whose root declares a
// transparency log, cosigned by the given witnesses, whose servers are
// told the log's key. The log key goes into a copy of the fixture's keys,
// which other subtests share.
func newS3LogRepo(t *testing.T, fx *s3Fixture, prefix string, witnesses []translog.Witness, quorum int, servers ...*httptest.Server) (*testRepo, string) {
	t.Helper()
	if err := fx.srv.SetReadPolicy(context.Background(), prefix, []string{s3test.Anyone}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	signers := keys.Memory{}
	maps.Copy(signers, fx.signers)
	k := maps.Clone(fx.keys)
	k["log"] = newTestKey(t, signers, "log-test", keys.ED25519)
	cfg := fx.cfg
	cfg.Storage = fx.srv.URL(prefix)
	cfg.Log = &LogSettings{Origin: "example.com/mtuf-s3-test", Key: k["log"], Witnesses: witnesses, Quorum: quorum}
	tellWitnesses(t, cfg.Log.Origin, signers[k["log"]].Public().(ed25519.PublicKey), servers)
	ws, err := Init(context.Background(), filepath.Join(dir, "ws"), cfg, signers, nil)
	if err != nil {
		t.Fatalf("Init on %s: %v", cfg.Storage, err)
	}
	return &testRepo{dir: dir, storage: cfg.Storage, ws: ws, keys: k, signers: signers, cfg: cfg}, fx.srv.HTTPURL(prefix)
}

// httpLogFetch reads the log as a client does: over plain HTTP from the
// address the bucket is served at. The bucket answers 403 or 404 for a
// missing object.
func httpLogFetch(base string) translog.Fetch {
	return func(ctx context.Context, name string) ([]byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/"+name, nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			return io.ReadAll(resp.Body)
		case http.StatusNotFound, http.StatusForbidden:
			return nil, fmt.Errorf("%s: %s (%w)", name, resp.Status, fs.ErrNotExist)
		}
		return nil, fmt.Errorf("%s: %s", name, resp.Status)
	}
}

// s3LogClient is a client of a logged repository in a bucket: it keeps
// the log it accepted last, as the client package does in its state.
type s3LogClient struct {
	base string
	root []byte
	seen *translog.Seen
}

// accept checks what a client checks on an update: TUF metadata from the
// bucket, and the current snapshot's inclusion under a checkpoint signed
// as the root requires and consistent with the one accepted before.
func (c *s3LogClient) accept(t *testing.T, st Storage) {
	t.Helper()
	if _, err := tryFetch(c.base, c.root, "measurements/v0.0.0/none/measurements.json"); err != nil {
		t.Fatalf("client: %v", err)
	}
	v, sum := currentSnapshot(t, st)
	seen, err := (&translog.Reader{Fetch: httpLogFetch(c.base)}).Accept(context.Background(), rootLogIn(t, st), c.seen, v, sum)
	if err != nil {
		t.Fatalf("client: snapshot v%d refused: %v", v, err)
	}
	c.seen = seen
}

// checkLogged fails unless the log holds snapshot version v as stored in
// st. It also fails if two entries name one snapshot version with
// different contents: that is a split view.
func checkLogged(t *testing.T, st Storage, entries []*translog.Entry, v int64) {
	t.Helper()
	data, err := st.Get(context.Background(), fmt.Sprintf("metadata/%d.snapshot.json", v))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	found := false
	for i, e := range entries {
		if e.SnapshotVersion != v {
			continue
		}
		if !bytes.Equal(e.SnapshotSHA256, sum[:]) {
			t.Fatalf("entry %d names snapshot v%d with SHA-256 %x; the bucket holds %x", i, v, e.SnapshotSHA256, sum)
		}
		found = true
	}
	if !found {
		t.Fatalf("snapshot v%d is not in the log", v)
	}
}

// On a bucket, publishes and a refresh append one entry each, naming the
// snapshot they wrote, and a client reading the bucket over HTTP accepts
// each new version, as a mirror does.
func testS3LogEverySnapshot(t *testing.T, fx *s3Fixture) {
	ctx := context.Background()
	r, base := newS3LogRepo(t, fx, "log/every", nil, 0)
	st := r.ws.Storage
	c := &s3LogClient{base: base, root: s3Root(t, st)}
	cp, entries := logEntriesIn(t, st)
	if cp.Size != 1 || len(entries) != 1 {
		t.Fatalf("log of %d entries after init", cp.Size)
	}
	c.accept(t, st)
	ops := []func() error{
		func() error {
			_, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)})
			return err
		},
		func() error {
			_, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.1.0", "qemu-vtpm", 2)})
			return err
		},
		func() error {
			res, err := r.ws.Refresh(ctx, 10000*time.Hour)
			if err == nil && len(res.Signed) == 0 {
				err = errors.New("refresh re-signed nothing")
			}
			return err
		},
	}
	for i, op := range ops {
		before := cp
		if err := op(); err != nil {
			t.Fatalf("operation %d: %v", i, err)
		}
		cp, entries = logEntriesIn(t, st)
		if cp.Size != before.Size+1 {
			t.Fatalf("operation %d took the log from %d to %d entries, want one more", i, before.Size, cp.Size)
		}
		if err := (&translog.Reader{Fetch: logStore{st}.Read}).Consistent(ctx, before, cp); err != nil {
			t.Fatalf("operation %d: %v", i, err)
		}
		v, sum := currentSnapshot(t, st)
		if last := entries[len(entries)-1]; last.SnapshotVersion != v || !bytes.Equal(last.SnapshotSHA256, sum) {
			t.Fatalf("operation %d: the new entry is snapshot v%d, timestamp.json names v%d", i, last.SnapshotVersion, v)
		}
		for _, e := range entries {
			checkLogged(t, st, entries, e.SnapshotVersion)
		}
		c.accept(t, st)
	}
	// A mirror copies the bucket only after checking the log as clients do.
	dst, err := NewFileStorage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Mirror(ctx, base, dst, MirrorOptions{Root: c.root}); err != nil {
		t.Fatalf("mirror of the bucket: %v", err)
	}
	if mcp, _ := logEntriesIn(t, dst); mcp != cp {
		t.Fatalf("the mirror's log is at %d entries, the bucket's at %d", mcp.Size, cp.Size)
	}
}

// Publishers in separate workspaces publish at once on one bucket: every
// publish that reports success is in the log, and the log extends the one
// before.
func testS3LogConcurrentPublishers(t *testing.T, fx *s3Fixture) {
	ctx := context.Background()
	r, base := newS3LogRepo(t, fx, "log/many", nil, 0)
	st := r.ws.Storage
	c := &s3LogClient{base: base, root: s3Root(t, st)}
	c.accept(t, st)
	before, _ := logEntriesIn(t, st)
	const n = 4
	wss := make([]*Workspace, n)
	for i := range wss {
		wss[i] = openS3Workspace(t, r)
	}
	res := make([]*PublishResult, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			res[i], errs[i] = wss[i].Publish(ctx, PublishRequest{Measurements: testMeasurements(fmt.Sprintf("v1.%d.0", i), "qemu-vtpm", byte(i+1))})
		})
	}
	wg.Wait()
	cp, entries := logEntriesIn(t, st)
	if err := (&translog.Reader{Fetch: logStore{st}.Read}).Consistent(ctx, before, cp); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if errs[i] != nil {
			t.Errorf("publisher %d: %v", i, errs[i])
			continue
		}
		checkLogged(t, st, entries, res[i].SnapshotVersion)
	}
	if cp.Size < before.Size+n {
		t.Errorf("log of %d entries after %d publishes on %d", cp.Size, n, before.Size)
	}
	c.accept(t, st)
}

// gatedLog holds a publisher at its first write of a log file whose name
// starts with at, so that a test can let another publisher append
// meanwhile. It counts the conflicts met writing the checkpoint.
type gatedLog struct {
	*S3Storage
	at      string
	reached chan struct{}
	proceed chan struct{}
	once    sync.Once

	mu        sync.Mutex
	conflicts int
}

func (g *gatedLog) gate(name string) {
	if strings.HasPrefix(name, g.at) {
		g.once.Do(func() {
			close(g.reached)
			<-g.proceed
		})
	}
}

func (g *gatedLog) PutOnce(ctx context.Context, name string, data []byte) error {
	g.gate(name)
	return g.S3Storage.PutOnce(ctx, name, data)
}

func (g *gatedLog) Replace(ctx context.Context, name string, data []byte) error {
	g.gate(name)
	return g.S3Storage.Replace(ctx, name, data)
}

func (g *gatedLog) ReplaceIf(ctx context.Context, name string, data []byte, etag string) error {
	g.gate(name)
	err := g.S3Storage.ReplaceIf(ctx, name, data, etag)
	if name == translog.CheckpointPath && errors.Is(err, ErrConflict) {
		g.mu.Lock()
		g.conflicts++
		g.mu.Unlock()
	}
	return err
}

// Publisher A reads the checkpoint, and is held either before its first
// write to the log or with its bundle and tiles written, just before the
// checkpoint; publisher B appends meanwhile. B must get through, A must
// lose the checkpoint's conditional write and publish again, and the tiles
// under B's checkpoint must stay B's: the checkpoint B wrote still
// verifies against what the bucket holds once A is done.
func testS3LogRace(t *testing.T, fx *s3Fixture) {
	for _, at := range []string{"log/tile/entries/", translog.CheckpointPath} {
		t.Run(at, func(t *testing.T) { testS3LogRaceAt(t, fx, at) })
	}
}

func testS3LogRaceAt(t *testing.T, fx *s3Fixture, at string) {
	ctx := context.Background()
	r, base := newS3LogRepo(t, fx, "log/race/"+strings.ReplaceAll(at, "/", "-"), nil, 0)
	st := r.ws.Storage
	c := &s3LogClient{base: base, root: s3Root(t, st)}
	c.accept(t, st)
	before, _ := logEntriesIn(t, st)

	a, b := openS3Workspace(t, r), openS3Workspace(t, r)
	gate := &gatedLog{S3Storage: a.Storage.(*S3Storage), at: at, reached: make(chan struct{}), proceed: make(chan struct{})}
	a.Storage = gate
	type result struct {
		res *PublishResult
		err error
	}
	doneA := make(chan result, 1)
	go func() {
		res, err := a.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)})
		doneA <- result{res, err}
	}()
	select {
	case <-gate.reached:
	case ra := <-doneA:
		t.Fatalf("publisher A ended before writing %s: %v", at, ra.err)
	}
	resB, err := b.Publish(ctx, PublishRequest{Measurements: testMeasurements("v2.0.0", "qemu-vtpm", 2)})
	if err != nil {
		close(gate.proceed)
		<-doneA
		t.Fatalf("publisher B while A is held at %s: %v", at, err)
	}
	signedB, err := st.Get(ctx, translog.CheckpointPath)
	if err != nil {
		t.Fatal(err)
	}
	cpB, _ := logEntriesIn(t, st)
	c.accept(t, st)
	close(gate.proceed)
	ra := <-doneA
	if ra.err != nil {
		t.Fatalf("publisher A after losing the checkpoint: %v", ra.err)
	}
	if gate.conflicts != 1 {
		t.Errorf("publisher A met %d conflicts on the checkpoint, want 1", gate.conflicts)
	}
	cp, entries := logEntriesIn(t, st)
	rd := &translog.Reader{Fetch: logStore{st}.Read}
	for _, older := range []translog.Checkpoint{before, cpB} {
		if err := rd.Consistent(ctx, older, cp); err != nil {
			t.Fatalf("log at %d entries after the race: %v", cp.Size, err)
		}
	}
	// B's checkpoint, as a client that fetched it keeps it, against the
	// tiles and bundle of its size now in the bucket.
	old, err := rootLogIn(t, st).Verify(signedB)
	if err != nil {
		t.Fatal(err)
	}
	if err := (&translog.Reader{Fetch: httpLogFetch(base)}).Entries(ctx, old, 0, func(int64, []byte) error { return nil }); err != nil {
		t.Fatalf("B's checkpoint no longer verifies against the bucket's tiles: %v", err)
	}
	checkLogged(t, st, entries, resB.SnapshotVersion)
	checkLogged(t, st, entries, ra.res.SnapshotVersion)
	c.accept(t, st)
}

// A logged publish to a bucket that fails at any one of its writes leaves
// a log that verifies, extends the log before, and holds the current
// snapshot; the publish run again succeeds on top of what the failed one
// left behind, tiles and bundles past the checkpoint included.
func testS3LogInterruptedAtEveryWrite(t *testing.T, fx *s3Fixture) {
	ctx := context.Background()
	r, base := newS3LogRepo(t, fx, "log/crash", nil, 0)
	s3st := r.ws.Storage.(*S3Storage)
	c := &s3LogClient{base: base, root: s3Root(t, s3st)}
	c.accept(t, s3st)
	prev, _ := logEntriesIn(t, s3st)
	var failedWrites []string
	k := 0
	check := func(when string) {
		t.Helper()
		cp, entries := logEntriesIn(t, s3st)
		if err := (&translog.Reader{Fetch: logStore{s3st}.Read}).Consistent(ctx, prev, cp); err != nil {
			t.Fatalf("%s: log not consistent with before: %v", when, err)
		}
		prev = cp
		v, _ := currentSnapshot(t, s3st)
		checkLogged(t, s3st, entries, v)
		c.accept(t, s3st)
	}
	// interrupt publishes through fs and, when fs fails a write, checks
	// the log and publishes again; it reports whether a write failed.
	interrupt := func(fs *failingS3) bool {
		k++
		r.ws.Storage = fs
		req := PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", byte(10+k)), Replace: true}
		_, err := r.ws.Publish(ctx, req)
		r.ws.Storage = s3st
		if err == nil {
			return false
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("publish %d: %v", k, err)
		}
		failedWrites = append(failedWrites, fs.failed...)
		check(fmt.Sprintf("after a failure at %s", fs.failed))
		// Other content than the failed publish's, so that what it left
		// past the checkpoint differs from what this one writes.
		req.Measurements = testMeasurements("v1.0.0", "qemu-vtpm", byte(128+k))
		if _, err := r.ws.Publish(ctx, req); err != nil {
			t.Fatalf("publish again after a failure at %s: %v", fs.failed, err)
		}
		check(fmt.Sprintf("after publishing again from a failure at %s", fs.failed))
		return true
	}
	for n := 1; interrupt(&failingS3{S3Storage: s3st, failAt: n}); n++ {
	}
	for _, name := range []string{"log/tile/0/", "log/tile/entries/", translog.CheckpointPath, "metadata/timestamp.json"} {
		if !interrupt(&failingS3{S3Storage: s3st, failName: name}) {
			t.Errorf("no write of %s failed (failed before: %v)", name, failedWrites)
		}
	}
}

// Someone who can write to the bucket but holds no key plants, past the
// checkpoint, an entry for a snapshot they made. The next publish does not
// take it into the log: it fails naming the planted bundle, and leaves the
// log and timestamp.json as they were.
func testS3LogPlantedClaim(t *testing.T, fx *s3Fixture) {
	ctx := context.Background()
	r, _ := newS3LogRepo(t, fx, "log/planted", nil, 0)
	st := r.ws.Storage
	snap := readMetaTB[tuf.SnapshotType](t, st, "metadata/1.snapshot.json")
	snap.Signed.Version = 99
	forged, err := snap.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutOnce(ctx, "metadata/99.snapshot.json", forged); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(forged)
	e, err := (&translog.Entry{SnapshotVersion: 99, SnapshotSHA256: sum[:]}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	prev, err := st.Get(ctx, "log/tile/entries/000.p/1")
	if err != nil {
		t.Fatal(err)
	}
	const planted = "log/tile/entries/000.p/2"
	if err := st.PutOnce(ctx, planted, append(append(prev, byte(len(e)>>8), byte(len(e))), e...)); err != nil {
		t.Fatal(err)
	}
	tsBefore, _ := st.Get(ctx, "metadata/timestamp.json")
	cpBefore, _ := st.Get(ctx, translog.CheckpointPath)
	_, err = r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)})
	if !errors.Is(err, translog.ErrForeignEntry) || !strings.Contains(err.Error(), planted) ||
		!strings.Contains(err.Error(), "metadata/99.snapshot.json is not signed by the snapshot keys") || !strings.Contains(err.Error(), "delete that entry bundle") {
		t.Fatalf("publish over a planted entry: %v", err)
	}
	tsAfter, _ := st.Get(ctx, "metadata/timestamp.json")
	cpAfter, _ := st.Get(ctx, translog.CheckpointPath)
	if !bytes.Equal(tsBefore, tsAfter) || !bytes.Equal(cpBefore, cpAfter) {
		t.Fatal("a publish over a planted entry changed timestamp.json or the checkpoint")
	}
}

// A publish that dies after the witness cosigned its checkpoint, before
// writing it, leaves the witness one checkpoint ahead of the log. On a
// bucket the next publish appends after the entry the dead one claimed,
// so the witness sees the log extend what it cosigned, and cosigns again.
func testS3LogWitnessAfterCrash(t *testing.T, fx *s3Fixture) {
	ctx := context.Background()
	w, srv := startWitness(t, "witness-1")
	r, base := newS3LogRepo(t, fx, "log/witnessed", []translog.Witness{w}, 1, srv)
	s3st := r.ws.Storage.(*S3Storage)
	c := &s3LogClient{base: base, root: s3Root(t, s3st)}
	c.accept(t, s3st)
	fs := &failingS3{S3Storage: s3st, failName: translog.CheckpointPath}
	r.ws.Storage = fs
	req := PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}
	if _, err := r.ws.Publish(ctx, req); !errors.Is(err, errInjected) || len(fs.failed) != 1 {
		t.Fatalf("publish failing at the checkpoint: %v", err)
	}
	// Other content: the same publish run again within the same second
	// would write the very same bytes, and the witness the same checkpoint.
	r.ws.Storage = s3st
	res, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 2)})
	if err != nil {
		t.Fatalf("publish after one whose cosigned checkpoint was lost: %v", err)
	}
	_, entries := logEntriesIn(t, s3st)
	checkLogged(t, s3st, entries, res.SnapshotVersion)
	c.accept(t, s3st)
}
