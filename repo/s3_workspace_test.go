package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/internal/s3test"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// s3Fixture is one S3 server and one set of keys for the repositories of
// the S3 tests: each gets a prefix of the bucket.
type s3Fixture struct {
	srv     *s3test.Server
	cfg     InitConfig
	keys    map[string]string
	signers keys.Memory
}

// TestS3Repository runs the repository on object storage: every workspace
// operation, racing publishers, and publishes interrupted at every write,
// without and with a transparency log.
func TestS3Repository(t *testing.T) {
	srv := s3test.Start(t)
	srv.Setenv(t)
	cfg, k, m := testInitConfig(t, t.TempDir())
	fx := &s3Fixture{srv: srv, cfg: cfg, keys: k, signers: m}
	for _, tc := range []struct {
		name string
		test func(*testing.T, *s3Fixture)
	}{
		{"workspace", testS3Workspace},
		{"race: no lost update", testS3PublishRaceNoLostUpdate},
		{"race: loses every time", testS3PublishLosesEveryRace},
		{"concurrent publishers", testS3ConcurrentPublishers},
		{"interrupted at every write", testS3PublishInterruptedAtEveryWrite},
		{"log: every snapshot", testS3LogEverySnapshot},
		{"log: concurrent publishers", testS3LogConcurrentPublishers},
		{"log: racing publishers", testS3LogRace},
		{"log: interrupted at every write", testS3LogInterruptedAtEveryWrite},
		{"log: planted entry", testS3LogPlantedClaim},
		{"log: witness after a crash", testS3LogWitnessAfterCrash},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, fx) })
	}
}

// newS3Repo creates a repository under prefix in the fixture's bucket,
// opened to anonymous readers as a bucket behind a CDN is, and returns it
// with the plain HTTP address clients read it from.
func newS3Repo(t *testing.T, fx *s3Fixture, prefix string) (*testRepo, string) {
	t.Helper()
	if err := fx.srv.SetReadPolicy(context.Background(), prefix, []string{s3test.Anyone}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := fx.cfg
	cfg.Storage = fx.srv.URL(prefix)
	ws, err := Init(context.Background(), filepath.Join(dir, "ws"), cfg, fx.signers, nil)
	if err != nil {
		t.Fatalf("Init on %s: %v", cfg.Storage, err)
	}
	if _, ok := ws.Storage.(*S3Storage); !ok {
		t.Fatalf("workspace storage is %T, want *S3Storage", ws.Storage)
	}
	return &testRepo{dir: dir, storage: cfg.Storage, ws: ws, keys: fx.keys, signers: fx.signers, cfg: cfg}, fx.srv.HTTPURL(prefix)
}

// fetchFrom is what a client sees: a fresh go-tuf updater over plain HTTP
// from base, trusting root, asked for one target. It returns nil when the
// target does not exist.
func fetchFrom(t *testing.T, base string, root []byte, name string) []byte {
	t.Helper()
	data, err := tryFetch(base, root, name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func tryFetch(base string, root []byte, name string) ([]byte, error) {
	cfg, err := config.New(base+"/metadata", root)
	if err != nil {
		return nil, err
	}
	cfg.RemoteTargetsURL = base + "/targets"
	cfg.DisableLocalCache = true
	up, err := updater.New(cfg)
	if err != nil {
		return nil, err
	}
	if err := up.Refresh(); err != nil {
		return nil, fmt.Errorf("refresh from %s: %w", base, err)
	}
	ti, err := up.GetTargetInfo(name)
	if err != nil {
		if strings.Contains(err.Error(), "not found") {
			return nil, nil
		}
		return nil, fmt.Errorf("target info %s: %w", name, err)
	}
	_, data, err := up.DownloadTarget(ti, "", "")
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", name, err)
	}
	return data, nil
}

func s3Root(t *testing.T, st Storage) []byte {
	t.Helper()
	root, err := st.Get(context.Background(), "metadata/1.root.json")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// Every workspace operation works on a bucket as on a directory: init,
// publish, status, refresh, stage/sign/commit; clients read the result
// over plain HTTP.
func testS3Workspace(t *testing.T, fx *s3Fixture) {
	ctx := context.Background()
	srv := fx.srv
	r, base := newS3Repo(t, fx, "repos/prod")
	root := s3Root(t, r.ws.Storage)
	if got := fetchFrom(t, base, root, "measurements/v1.0.0/qemu-vtpm/measurements.json"); got != nil {
		t.Fatal("an empty repository serves a target")
	}

	// Reopened from its workspace file, as every command does.
	ws, err := OpenWorkspace(filepath.Join(r.dir, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	ws.Keys = r.signers
	if ws.Config.Storage != srv.URL("repos/prod") {
		t.Errorf("workspace storage %q, want %q", ws.Config.Storage, srv.URL("repos/prod"))
	}
	m := testMeasurements("v1.0.0", "qemu-vtpm", 0x10)
	bin := []byte("mtuf release binary")
	res, err := ws.Publish(ctx, PublishRequest{Measurements: m, Release: &Release{Binary: bin, Version: "v1.0.0", OS: "linux", Arch: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.SnapshotVersion != 2 || res.TimestampVersion != 2 || len(res.Targets) != 3 {
		t.Fatalf("publish = %+v", res)
	}
	got, err := metadata.Parse(fetchFrom(t, base, root, "measurements/v1.0.0/qemu-vtpm/measurements.json"))
	if err != nil || !bytes.Equal(got.PCRs[4].Expected, m.PCRs[4].Expected) {
		t.Fatalf("client got %+v, %v", got, err)
	}
	if got := fetchFrom(t, base, root, "cli/v1.0.0/linux-amd64/mtuf"); !bytes.Equal(got, bin) {
		t.Fatalf("client got binary %q", got)
	}
	if again, err := ws.Publish(ctx, PublishRequest{Measurements: m}); err != nil || !again.Unchanged {
		t.Fatalf("republish: %+v, %v", again, err)
	}

	st, err := ws.Status(ctx, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if st.Storage != srv.URL("repos/prod") || len(st.Roles) != 6 || len(st.Warnings) != 0 {
		t.Fatalf("status = %+v", st)
	}
	if st.Roles[3].Role != tuf.TIMESTAMP || st.Roles[3].Version != 2 || st.Roles[4].Targets != 1 {
		t.Errorf("status roles = %+v", st.Roles)
	}
	names, err := ws.Targets(ctx)
	if err != nil || len(names) != 3 {
		t.Errorf("targets %v, %v", names, err)
	}

	// A day later the timestamp is due; refresh re-signs it, and clients
	// of that day see a valid repository.
	later := time.Now().Add(20 * time.Hour)
	ws.Now = func() time.Time { return later }
	ref, err := ws.Refresh(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ref.Signed, " ") != "timestamp" {
		t.Errorf("refresh re-signed %q, want timestamp", ref.Signed)
	}
	if ref, err := ws.Refresh(ctx, 0); err != nil || len(ref.Signed) != 0 {
		t.Errorf("second refresh: %+v, %v", ref, err)
	}
	ts, err := getMetadata[tuf.TimestampType](ctx, ws.Storage, "metadata/timestamp.json")
	if err != nil || ts.Signed.Version != 3 || !ts.Signed.Expires.After(later) {
		t.Fatalf("timestamp after refresh: %+v, %v", ts, err)
	}
	fetchFrom(t, base, root, "measurements/v1.0.0/qemu-vtpm/measurements.json")

	// The repository as a CDN origin: StorageHandler over the bucket
	// serves the same bytes with the same headers as Handler.
	h := httptest.NewServer(StorageHandler(ws.Storage))
	defer h.Close()
	if got := fetchFrom(t, h.URL, root, "cli/v1.0.0/linux-amd64/mtuf"); !bytes.Equal(got, bin) {
		t.Fatalf("client through StorageHandler got %q", got)
	}
	resp, err := http.Get(h.URL + "/metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Cache-Control") != timestampCacheControl || resp.Header.Get("ETag") == "" {
		t.Errorf("timestamp.json headers from the bucket: %v", resp.Header)
	}

	// Offline signing: a root rotation staged, signed by the old and the
	// new root key, and committed to the bucket. A client that starts from
	// root 1 follows the chain.
	// The fixture's keys are shared by its subtests: root2 goes into a
	// copy, not into a map that other workspaces read.
	signers := keys.Memory{}
	maps.Copy(signers, r.signers)
	ws.Keys = signers
	root2 := newTestKey(t, signers, "root2-test", keys.ED25519)
	staged, err := ws.Stage(ctx, StageRequest{Role: tuf.ROOT, Changes: []KeyChange{{Role: tuf.ROOT, Add: []string{root2}, Threshold: 2}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{r.keys["root"], root2} {
		if _, _, err := Sign(ctx, staged, k, signers); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := ws.Commit(ctx)
	if err != nil {
		t.Fatalf("commit to %s: %v", ws.Config.Storage, err)
	}
	if strings.Join(committed.Committed, " ") != "root v2" || committed.TimestampVersion != 4 {
		t.Errorf("commit = %+v", committed)
	}
	newRoot, err := getMetadata[tuf.RootType](ctx, ws.Storage, "metadata/2.root.json")
	if err != nil || newRoot.Signed.Roles[tuf.ROOT].Threshold != 2 {
		t.Fatalf("root v2 in the bucket: %+v, %v", newRoot, err)
	}
	if got := fetchFrom(t, base, root, "cli/v1.0.0/linux-amd64/mtuf"); !bytes.Equal(got, bin) {
		t.Fatalf("client from root 1 after the rotation got %q", got)
	}

	// A second init on the same bucket prefix does not clobber it.
	cfg := r.cfg
	if _, err := Init(ctx, filepath.Join(r.dir, "ws2"), cfg, r.signers, nil); err == nil || !strings.Contains(err.Error(), "already holds a repository") {
		t.Errorf("second init on %s: %v", cfg.Storage, err)
	}
}

// gatedStorage holds a publisher just before it replaces timestamp.json,
// so a test can let another publisher win the race.
type gatedStorage struct {
	*S3Storage
	reached chan struct{} // closed when ReplaceIf is first reached
	proceed chan struct{} // ReplaceIf waits for it
	once    sync.Once

	mu        sync.Mutex
	conflicts int
}

func (g *gatedStorage) ReplaceIf(ctx context.Context, name string, data []byte, etag string) error {
	g.once.Do(func() {
		close(g.reached)
		<-g.proceed
	})
	err := g.S3Storage.ReplaceIf(ctx, name, data, etag)
	if errors.Is(err, ErrConflict) {
		g.mu.Lock()
		g.conflicts++
		g.mu.Unlock()
	}
	return err
}

func openS3Workspace(t *testing.T, r *testRepo) *Workspace {
	t.Helper()
	ws, err := OpenWorkspace(filepath.Join(r.dir, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	ws.Keys = r.signers
	return ws
}

// Publisher A reads the repository, publisher B publishes meanwhile, then
// A tries to replace timestamp.json: its If-Match fails, and A publishes
// again on top of B's state. No update is lost.
func testS3PublishRaceNoLostUpdate(t *testing.T, fx *s3Fixture) {
	ctx := context.Background()
	r, base := newS3Repo(t, fx, "race")
	root := s3Root(t, r.ws.Storage)

	a, b := openS3Workspace(t, r), openS3Workspace(t, r)
	gate := &gatedStorage{S3Storage: a.Storage.(*S3Storage), reached: make(chan struct{}), proceed: make(chan struct{})}
	a.Storage = gate
	errA := make(chan error, 1)
	go func() {
		_, err := a.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)})
		errA <- err
	}()
	select {
	case <-gate.reached:
	case err := <-errA:
		t.Fatalf("publisher A ended before replacing timestamp.json: %v", err)
	}
	resB, err := b.Publish(ctx, PublishRequest{Measurements: testMeasurements("v2.0.0", "qemu-vtpm", 2)})
	if err != nil {
		t.Fatalf("publisher B: %v", err)
	}
	close(gate.proceed)
	if err := <-errA; err != nil {
		t.Fatalf("publisher A after losing the race: %v", err)
	}
	if gate.conflicts != 1 {
		t.Errorf("publisher A met %d conflicts, want 1", gate.conflicts)
	}
	ts, err := getMetadata[tuf.TimestampType](ctx, r.ws.Storage, "metadata/timestamp.json")
	if err != nil {
		t.Fatal(err)
	}
	if ts.Signed.Version != resB.TimestampVersion+1 {
		t.Errorf("timestamp v%d, want v%d: A's publish must come on top of B's", ts.Signed.Version, resB.TimestampVersion+1)
	}
	for _, image := range []string{"v1.0.0", "v2.0.0"} {
		if fetchFrom(t, base, root, "measurements/"+image+"/qemu-vtpm/measurements.json") == nil {
			t.Errorf("the target of image %s was lost", image)
		}
	}
}

// alwaysLosing lets another publisher win before each of its attempts to
// replace timestamp.json, as a busy bucket could.
type alwaysLosing struct {
	*S3Storage
	rival    *Workspace
	attempts int
}

func (l *alwaysLosing) ReplaceIf(ctx context.Context, name string, data []byte, etag string) error {
	l.attempts++
	if _, err := l.rival.Publish(ctx, PublishRequest{Measurements: testMeasurements(fmt.Sprintf("v9.%d.0", l.attempts), "qemu-vtpm", 9)}); err != nil {
		return fmt.Errorf("rival publish: %w", err)
	}
	return l.S3Storage.ReplaceIf(ctx, name, data, etag)
}

// A publisher that keeps losing gives up with an error that says so and
// what to do, having changed nothing clients see; run again, it succeeds.
func testS3PublishLosesEveryRace(t *testing.T, fx *s3Fixture) {
	ctx := context.Background()
	r, base := newS3Repo(t, fx, "busy")
	root := s3Root(t, r.ws.Storage)
	a := openS3Workspace(t, r)
	loser := &alwaysLosing{S3Storage: a.Storage.(*S3Storage), rival: openS3Workspace(t, r)}
	a.Storage = loser
	req := PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}
	_, err := a.Publish(ctx, req)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("publish that lost every race: %v, want ErrConflict", err)
	}
	for _, want := range []string{fmt.Sprintf("changed the repository %d times", maxPublishAttempts), "run it again", "metadata/timestamp.json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if loser.attempts != maxPublishAttempts {
		t.Errorf("%d attempts, want %d", loser.attempts, maxPublishAttempts)
	}
	if fetchFrom(t, base, root, "measurements/v1.0.0/qemu-vtpm/measurements.json") != nil {
		t.Error("a publish that failed is visible to clients")
	}
	// Every rival publish landed.
	for i := 1; i <= maxPublishAttempts; i++ {
		if fetchFrom(t, base, root, fmt.Sprintf("measurements/v9.%d.0/qemu-vtpm/measurements.json", i)) == nil {
			t.Errorf("rival publish %d was lost", i)
		}
	}
	a.Storage = loser.S3Storage
	if _, err := a.Publish(ctx, req); err != nil {
		t.Fatalf("publish again: %v", err)
	}
	if fetchFrom(t, base, root, "measurements/v1.0.0/qemu-vtpm/measurements.json") == nil {
		t.Error("the publish run again is not visible")
	}
}

// Publishers in separate workspaces, with separate S3 clients, publish at
// once on one bucket: every target is published.
func testS3ConcurrentPublishers(t *testing.T, fx *s3Fixture) {
	ctx := context.Background()
	r, base := newS3Repo(t, fx, "many")
	root := s3Root(t, r.ws.Storage)
	const n = 6
	var wg sync.WaitGroup
	errs := make([]error, n)
	wss := make([]*Workspace, n)
	for i := range wss {
		wss[i] = openS3Workspace(t, r)
	}
	for i := range n {
		wg.Go(func() {
			_, errs[i] = wss[i].Publish(ctx, PublishRequest{Measurements: testMeasurements(fmt.Sprintf("v1.%d.0", i), "qemu-vtpm", byte(i+1))})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("publisher %d: %v", i, err)
		}
	}
	for i := range n {
		if fetchFrom(t, base, root, fmt.Sprintf("measurements/v1.%d.0/qemu-vtpm/measurements.json", i)) == nil {
			t.Errorf("publisher %d's target was lost", i)
		}
	}
	ts, err := getMetadata[tuf.TimestampType](ctx, r.ws.Storage, "metadata/timestamp.json")
	if err != nil || ts.Signed.Version != 1+n {
		t.Errorf("timestamp version %d, %v; want %d: one version per publish", ts.Signed.Version, err, 1+n)
	}
}

// failingS3 fails the k-th write, counting conditional replaces too, as a
// crash or a network error at that point would. With failName set it fails
// instead the first write whose name starts with failName: the log's tiles
// and bundles are written in parallel, so a count alone cannot aim at one.
type failingS3 struct {
	*S3Storage
	mu             sync.Mutex
	writes, failAt int
	failName       string
	failed         []string
}

func (f *failingS3) hit(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	aimed := f.failAt != 0 && f.writes == f.failAt
	if f.failName != "" && len(f.failed) == 0 && strings.HasPrefix(name, f.failName) {
		aimed = true
	}
	if aimed {
		f.failed = append(f.failed, name)
		return fmt.Errorf("write %s: %w", name, errInjected)
	}
	return nil
}

func (f *failingS3) PutOnce(ctx context.Context, name string, data []byte) error {
	if err := f.hit(name); err != nil {
		return err
	}
	return f.S3Storage.PutOnce(ctx, name, data)
}

func (f *failingS3) Replace(ctx context.Context, name string, data []byte) error {
	if err := f.hit(name); err != nil {
		return err
	}
	return f.S3Storage.Replace(ctx, name, data)
}

func (f *failingS3) ReplaceIf(ctx context.Context, name string, data []byte, etag string) error {
	if err := f.hit(name); err != nil {
		return err
	}
	return f.S3Storage.ReplaceIf(ctx, name, data, etag)
}

// A publish to a bucket that fails at any one of its writes leaves a
// bucket in which a client sees the whole old state, and the next publish
// succeeds on top of what the failed one left behind.
func testS3PublishInterruptedAtEveryWrite(t *testing.T, fx *s3Fixture) {
	ctx := context.Background()
	r, base := newS3Repo(t, fx, "crash")
	root := s3Root(t, r.ws.Storage)
	const name = "measurements/v1.0.0/qemu-vtpm/measurements.json"
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}); err != nil {
		t.Fatal(err)
	}
	old := fetchFrom(t, base, root, name)
	s3st := r.ws.Storage.(*S3Storage)
	var failedWrites []string
	for k := 1; ; k++ {
		fs := &failingS3{S3Storage: s3st, failAt: k}
		r.ws.Storage = fs
		fill := byte(10 + k)
		req := PublishRequest{
			Measurements: testMeasurements("v1.0.0", "qemu-vtpm", fill), Replace: true,
			Release: &Release{Binary: fmt.Appendf(nil, "binary %d", k), Version: "v1.0.0", OS: "linux", Arch: "amd64"},
		}
		_, err := r.ws.Publish(ctx, req)
		if err == nil {
			if k == 1 {
				t.Fatal("no write failed")
			}
			break // k is past the last write
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("write %d: %v", k, err)
		}
		failedWrites = append(failedWrites, fs.failed...)
		if got := fetchFrom(t, base, root, name); !bytes.Equal(got, old) {
			t.Fatalf("after a failure at write %d (%s) the client sees a changed target", k, fs.failed)
		}
		r.ws.Storage = s3st
		if _, err := r.ws.Publish(ctx, req); err != nil {
			t.Fatalf("publish again after a failure at write %d: %v", k, err)
		}
		old = fetchFrom(t, base, root, name)
		if m, _ := metadata.Parse(old); m == nil || m.PCRs[4].Expected[0] != fill {
			t.Fatalf("publish again after write %d: client sees %s", k, old)
		}
		if got := fetchFrom(t, base, root, "cli/v1.0.0/linux-amd64/mtuf"); string(got) != fmt.Sprintf("binary %d", k) {
			t.Fatalf("publish again after write %d: binary %q", k, got)
		}
	}
	// Every kind of write was interrupted at least once: target files,
	// bins, snapshot and timestamp.json.
	joined := strings.Join(failedWrites, " ")
	for _, want := range []string{"targets/measurements/", ".mtuf.sig", ".mtuf ", "measurements-bin-", "releases-bin-", "snapshot.json", "metadata/timestamp.json"} {
		if !strings.Contains(joined+" ", want) {
			t.Errorf("no failure injected at a write of %s (failed: %s)", want, joined)
		}
	}
}
