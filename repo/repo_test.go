package repo

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/internal/testkeys"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// newTestKey generates a key of type typ, holds it in m under name, and
// returns name, the key's reference. Tests that are not about key files
// keep their keys in memory: an encrypted key file costs seconds of
// scrypt under the race detector.
func newTestKey(t testing.TB, m keys.Memory, name string, typ keys.Type) string {
	t.Helper()
	priv, err := keys.Generate(typ)
	if err != nil {
		t.Fatal(err)
	}
	m[name] = priv
	return name
}

type testRepo struct {
	dir, storage string
	ws           *Workspace
	// keys are the references of the repository's keys by role, and
	// signers holds them.
	keys    map[string]string
	signers keys.Memory
	cfg     InitConfig
}

func testInitConfig(t testing.TB, dir string) (InitConfig, map[string]string, keys.Memory) {
	m := keys.Memory{}
	k := map[string]string{}
	for _, r := range []string{"root", "targets", "online", "measurements"} {
		k[r] = newTestKey(t, m, r+"-test", keys.ED25519)
	}
	k["releases"] = newTestKey(t, m, "releases-test", keys.ECDSAP256)
	one := func(ref string) RoleKeys { return RoleKeys{Keys: []string{ref}, Threshold: 1} }
	return InitConfig{
		Storage: filepath.Join(dir, "repo"),
		Root:    one(k["root"]), Targets: one(k["targets"]),
		Snapshot: one(k["online"]), Timestamp: one(k["online"]),
		Measurements: one(k["measurements"]), Releases: one(k["releases"]),
		MeasurementsBins: 16, ReleasesBins: 4,
	}, k, m
}

func newTestRepo(t testing.TB) *testRepo {
	t.Helper()
	dir := t.TempDir()
	cfg, k, m := testInitConfig(t, dir)
	ws, err := Init(context.Background(), filepath.Join(dir, "ws"), cfg, m, nil)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return &testRepo{dir: dir, storage: cfg.Storage, ws: ws, keys: k, signers: m, cfg: cfg}
}

func testMeasurements(image, platform string, fill byte) *metadata.Measurements {
	return &metadata.Measurements{
		Image: image, Platform: platform, Hash: "sha256",
		PCRs: map[uint32]metadata.PCR{
			4:  {Expected: bytes.Repeat([]byte{fill}, 32)},
			9:  {Expected: bytes.Repeat([]byte{fill + 1}, 32)},
			14: {Expected: bytes.Repeat([]byte{fill + 2}, 32), WarnOnly: true},
		},
	}
}

// fetch is what a client sees: a fresh go-tuf updater, over HTTP, asked
// for one target. It returns nil when the target does not exist.
func fetch(t *testing.T, dir, name string) []byte {
	t.Helper()
	srv := httptest.NewServer(Handler(dir))
	defer srv.Close()
	root, err := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.New(srv.URL+"/metadata", root)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RemoteTargetsURL = srv.URL + "/targets"
	cfg.DisableLocalCache = true
	up, err := updater.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatalf("refresh: %v", err)
	}
	ti, err := up.GetTargetInfo(name)
	if err != nil {
		if strings.Contains(err.Error(), "not found") {
			return nil
		}
		t.Fatalf("target info %s: %v", name, err)
	}
	_, data, err := up.DownloadTarget(ti, "", "")
	if err != nil {
		t.Fatalf("download %s: %v", name, err)
	}
	return data
}

func readMeta[T tuf.Roles](t *testing.T, st Storage, name string) *tuf.Metadata[T] {
	t.Helper()
	md, err := getMetadata[T](context.Background(), st, name)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

func TestInitCreatesDelegationsAndBins(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	root := readMeta[tuf.RootType](t, r.ws.Storage, "metadata/1.root.json")
	if !root.Signed.ConsistentSnapshot {
		t.Error("consistent snapshots must be on")
	}
	if got := time.Until(root.Signed.Expires); got < 364*24*time.Hour || got > 366*24*time.Hour {
		t.Errorf("root expires in %v, want about a year", got)
	}
	snap := readMeta[tuf.SnapshotType](t, r.ws.Storage, "metadata/1.snapshot.json")
	// targets, measurements, releases, 16 + 4 bins.
	if n := len(snap.Signed.Meta); n != 3+16+4 {
		t.Errorf("snapshot lists %d files, want %d", n, 3+16+4)
	}
	targets := readMeta[tuf.TargetsType](t, r.ws.Storage, "metadata/1.targets.json")
	if d := targets.Signed.Delegations; d == nil || len(d.Roles) != 2 || d.Roles[0].Name != RoleMeasurements || !d.Roles[0].Terminating {
		t.Fatalf("targets delegations = %+v", targets.Signed.Delegations)
	}
	m := readMeta[tuf.TargetsType](t, r.ws.Storage, "metadata/1.measurements.json")
	if sr := m.Signed.Delegations.SuccinctRoles; sr == nil || sr.BitLength != 4 || sr.NamePrefix != "measurements-bin" {
		t.Fatalf("measurements delegations = %+v", m.Signed.Delegations)
	}
	// A client sees a valid, empty repository.
	if got := fetch(t, r.storage, "measurements/v1/qemu-vtpm/measurements.json"); got != nil {
		t.Errorf("empty repository has a target")
	}
	// The workspace records online keys, never root or targets keys.
	data, err := os.ReadFile(filepath.Join(r.dir, "ws", WorkspaceFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("root-test")) || bytes.Contains(data, []byte("targets-test")) {
		t.Errorf("workspace records an offline key:\n%s", data)
	}
	// A second init on the same storage must not clobber it.
	if _, err := Init(context.Background(), filepath.Join(r.dir, "ws2"), r.cfg, r.signers, nil); err == nil || !strings.Contains(err.Error(), "already holds a repository") {
		t.Errorf("second init: err = %v, want 'already holds a repository'", err)
	}
}

func TestInitRefusesBadConfig(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base, k, m := testInitConfig(t, dir)
	for _, tc := range []struct {
		name   string
		change func(c *InitConfig)
		want   string
	}{
		{"no root keys", func(c *InitConfig) { c.Root.Keys = nil }, "role root has no keys"},
		{"threshold above keys", func(c *InitConfig) { c.Root.Threshold = 2 }, "threshold 2 is more than its 1 key"},
		{"zero threshold", func(c *InitConfig) { c.Targets.Threshold = 0 }, "must be at least 1"},
		{"same key twice", func(c *InitConfig) { c.Root = RoleKeys{Keys: []string{k["root"], k["root"]}, Threshold: 2} }, "are the same key"},
		{"missing key file", func(c *InitConfig) { c.Root.Keys = []string{filepath.Join(dir, "nope.key")} }, "nope.key"},
		{"no measurements key", func(c *InitConfig) { c.Measurements.Keys = nil }, "role measurements has no keys"},
		{"bins not a power of two", func(c *InitConfig) { c.MeasurementsBins = 100 }, "power of two"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.change(&cfg)
			cfg.Storage = filepath.Join(dir, "repo-"+strings.ReplaceAll(tc.name, " ", "-"))
			_, err := Init(context.Background(), filepath.Join(dir, "ws-"+strings.ReplaceAll(tc.name, " ", "-")), cfg, m, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if _, serr := os.Stat(filepath.Join(cfg.Storage, "metadata", "1.root.json")); serr == nil {
				t.Error("a refused init wrote a root")
			}
		})
	}
}

func TestPublishReSignsOneBin(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	m := testMeasurements("v1.0.0", "qemu-vtpm", 0x10)
	res, err := r.ws.Publish(ctx, PublishRequest{Measurements: m})
	if err != nil {
		t.Fatal(err)
	}
	name := "measurements/v1.0.0/qemu-vtpm/measurements.json"
	if len(res.Targets) != 1 || res.Targets[0].Name != name || res.Targets[0].BinVersion != 2 || res.SnapshotVersion != 2 || res.TimestampVersion != 2 {
		t.Fatalf("result = %+v", res)
	}
	snap := readMeta[tuf.SnapshotType](t, r.ws.Storage, "metadata/2.snapshot.json")
	for file, meta := range snap.Signed.Meta {
		want := int64(1)
		if file == res.Targets[0].Bin+".json" {
			want = 2
		}
		if meta.Version != want {
			t.Errorf("%s at version %d after publish, want %d: only the target's bin is re-signed", file, meta.Version, want)
		}
	}
	got, err := metadata.Parse(fetch(t, r.storage, name))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.PCRs[4].Expected, m.PCRs[4].Expected) {
		t.Errorf("client got %+v", got)
	}

	again, err := r.ws.Publish(ctx, PublishRequest{Measurements: m})
	if err != nil || !again.Unchanged || again.TimestampVersion != 2 {
		t.Fatalf("republish: %+v, %v", again, err)
	}
	changed := testMeasurements("v1.0.0", "qemu-vtpm", 0x20)
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: changed}); err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("changed measurements without replace: %v", err)
	}
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: changed, Replace: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := metadata.Parse(fetch(t, r.storage, name)); got == nil || got.PCRs[4].Expected[0] != 0x20 {
		t.Errorf("replaced measurements not served: %+v", got)
	}
}

func TestPublishRelease(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	bin := bytes.Repeat([]byte("mtuf binary "), 1000)
	res, err := r.ws.Publish(context.Background(), PublishRequest{
		Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1),
		Release:      &Release{Binary: bin, Version: "v1.2.3", OS: "linux", Arch: "amd64"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Targets) != 3 {
		t.Fatalf("published %+v, want measurements, binary and signature", res.Targets)
	}
	if got := fetch(t, r.storage, "cli/v1.2.3/linux-amd64/mtuf"); !bytes.Equal(got, bin) {
		t.Fatal("client did not get the binary")
	}
	sig, err := base64.StdEncoding.DecodeString(string(fetch(t, r.storage, "cli/v1.2.3/linux-amd64/mtuf.sig")))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := r.signers.Public(context.Background(), r.keys["releases"])
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(bin)
	if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), sum[:], sig) {
		t.Error("mtuf.sig does not verify with the releases key as cosign would check it")
	}
	if _, err := r.ws.Publish(context.Background(), PublishRequest{Release: &Release{Binary: bin, Version: "../x", OS: "linux", Arch: "amd64"}}); err == nil {
		t.Error("bad release version accepted")
	}
}

func TestPublishRefusesWrongKeyAndPassword(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	before, _ := os.ReadFile(filepath.Join(r.storage, "metadata", "timestamp.json"))
	ws, err := OpenWorkspace(filepath.Join(r.dir, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	ws.Keys = r.signers
	ws.Config.Keys[RoleMeasurements] = []string{newTestKey(t, r.signers, "stranger-test", keys.ED25519)}
	_, err = ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)})
	if err == nil || !strings.Contains(err.Error(), "is not a key of role measurements-bin-") {
		t.Fatalf("stranger key: %v", err)
	}
	// Key files with the wrong password: every key of the workspace is
	// one, so whichever is unlocked first fails.
	ws, _ = OpenWorkspace(filepath.Join(r.dir, "ws"))
	keyFile, _ := testkeys.Write(t, r.dir, "online-file-test", keys.ED25519)
	for role, refs := range ws.Config.Keys {
		for i := range refs {
			ws.Config.Keys[role][i] = keyFile
		}
	}
	ws.Keys = keys.Files{Password: keys.PasswordSource{Env: func(string) string { return "" }, File: writeFile(t, r.dir, "pw", "not-the-password\n")}}
	if _, err := ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}); !errors.Is(err, keys.ErrWrongPassword) {
		t.Fatalf("wrong password: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(r.storage, "metadata", "timestamp.json"))
	if !bytes.Equal(before, after) {
		t.Error("a refused publish changed timestamp.json")
	}
	if m, _ := filepath.Glob(filepath.Join(r.storage, "targets", "measurements", "*")); len(m) != 0 {
		t.Errorf("a refused publish wrote target files: %v", m)
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOpenWorkspaceErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := OpenWorkspace(dir); err == nil || !strings.Contains(err.Error(), "not an mtuf workspace") {
		t.Errorf("empty dir: %v", err)
	}
	writeFile(t, dir, WorkspaceFile, "{not json")
	if _, err := OpenWorkspace(dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt file: %v", err)
	}
}

func TestRefresh(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	start := time.Now()
	for _, tc := range []struct {
		after   time.Duration
		want    string
		warning bool
	}{
		{0, "", false},
		{20 * time.Hour, "timestamp", false},
		{20 * time.Hour, "", false}, // idempotent: nothing due right after
		{6 * 24 * time.Hour, "snapshot timestamp", false},
		{80 * 24 * time.Hour, "measurements", true},
	} {
		now := start.Add(tc.after)
		r.ws.Now = func() time.Time { return now }
		res, err := r.ws.Refresh(ctx, 0)
		if err != nil {
			t.Fatalf("after %v: %v", tc.after, err)
		}
		got := strings.Join(res.Signed, " ")
		if tc.want == "" && got != "" || !strings.Contains(got, tc.want) {
			t.Errorf("after %v: re-signed %q, want %q", tc.after, got, tc.want)
		}
		if tc.warning != (len(res.Warnings) > 0) {
			t.Errorf("after %v: warnings %q", tc.after, res.Warnings)
		}
	}
	// After the refreshes a client, at that time, still sees a valid repository.
	fetch(t, r.storage, "measurements/v1/qemu-vtpm/measurements.json")
}

func TestStatus(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}); err != nil {
		t.Fatal(err)
	}
	st, err := r.ws.Status(ctx, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Roles) != 6 || len(st.Warnings) != 0 {
		t.Fatalf("status = %+v", st)
	}
	m := st.Roles[4]
	if m.Role != RoleMeasurements || m.Bins != 16 || m.Targets != 1 || !m.Online {
		t.Errorf("measurements = %+v", m)
	}
	if st.Roles[1].Online {
		t.Error("targets reported as online")
	}
	// Within 100 days everything signed for 90 days warns.
	st, _ = r.ws.Status(ctx, 100*24*time.Hour)
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "targets expires in") {
		t.Errorf("warnings = %q", st.Warnings)
	}
	r.ws.Now = func() time.Time { return time.Now().Add(2 * 24 * time.Hour) }
	st, _ = r.ws.Status(ctx, 0)
	if !strings.Contains(strings.Join(st.Warnings, "\n"), "timestamp expired") {
		t.Errorf("warnings = %q", st.Warnings)
	}
	names, err := r.ws.Targets(ctx)
	if err != nil || len(names) != 1 {
		t.Errorf("targets %v, %v", names, err)
	}
}

// failingStorage fails the k-th write, as a crash or a network error at
// that point would. With failName set it fails instead the first write
// whose name starts with failName: writes made in parallel (tiles and entry
// bundles) reach storage in no fixed order, so a count alone cannot aim at
// one of them.
type failingStorage struct {
	Storage
	mu       sync.Mutex
	writes   int
	failAt   int
	failName string
	// failed names the write that was failed.
	failed string
}

var errInjected = errors.New("injected failure")

func (f *failingStorage) hit(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.writes++
	aimed := f.failAt != 0 && f.writes == f.failAt
	if f.failName != "" && f.failed == "" && strings.HasPrefix(name, f.failName) {
		aimed = true
	}
	if aimed {
		f.failed = name
		return errInjected
	}
	return nil
}

func (f *failingStorage) PutOnce(ctx context.Context, name string, data []byte) error {
	if err := f.hit(name); err != nil {
		return err
	}
	return f.Storage.PutOnce(ctx, name, data)
}

func (f *failingStorage) Replace(ctx context.Context, name string, data []byte) error {
	if err := f.hit(name); err != nil {
		return err
	}
	return f.Storage.Replace(ctx, name, data)
}

// A publish that fails at any write leaves a repository in which a client
// sees the whole old state or the whole new one, and a retry succeeds.
func TestPublishInterruptedAtEveryWrite(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}); err != nil {
		t.Fatal(err)
	}
	old := fetch(t, r.storage, "measurements/v1.0.0/qemu-vtpm/measurements.json")
	base := r.ws.Storage
	var failedWrites []string
	for k := 1; ; k++ {
		fs := &failingStorage{Storage: base, failAt: k}
		r.ws.Storage = fs
		fill := byte(10 + k)
		req := PublishRequest{
			Measurements: testMeasurements("v1.0.0", "qemu-vtpm", fill), Replace: true,
			Release: &Release{Binary: []byte(fmt.Sprintf("binary %d", k)), Version: "v1.0.0", OS: "linux", Arch: "amd64"},
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
		failedWrites = append(failedWrites, fs.failed)
		got := fetch(t, r.storage, "measurements/v1.0.0/qemu-vtpm/measurements.json")
		if !bytes.Equal(got, old) {
			t.Fatalf("after a failure at write %d the client sees a changed target", k)
		}
		// The retry, with working storage, publishes.
		r.ws.Storage = base
		if _, err := r.ws.Publish(ctx, req); err != nil {
			t.Fatalf("retry after failure at write %d: %v", k, err)
		}
		old = fetch(t, r.storage, "measurements/v1.0.0/qemu-vtpm/measurements.json")
		if m, _ := metadata.Parse(old); m == nil || m.PCRs[4].Expected[0] != fill {
			t.Fatalf("retry after write %d: client sees %x", k, old)
		}
		if got := fetch(t, r.storage, "cli/v1.0.0/linux-amd64/mtuf"); string(got) != fmt.Sprintf("binary %d", k) {
			t.Fatalf("retry after write %d: binary %q", k, got)
		}
	}
	// Every kind of write was interrupted: each target file, both bins,
	// the snapshot and timestamp.json.
	joined := strings.Join(failedWrites, " ")
	for _, want := range []string{"targets/measurements/", ".mtuf.sig", ".mtuf ", "measurements-bin-", "releases-bin-", "snapshot.json", "metadata/timestamp.json"} {
		if !strings.Contains(joined+" ", want) {
			t.Errorf("no failure injected at a write of %s (failed: %s)", want, joined)
		}
	}
}

// publishConcurrently runs n publishers at once, each from its own
// workspace, publisher i publishing image v1.i.0, and returns their errors.
func publishConcurrently(ctx context.Context, r *testRepo, n int) []error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range errs {
		wg.Go(func() {
			ws, err := OpenWorkspace(filepath.Join(r.dir, "ws"))
			if err != nil {
				errs[i] = err
				return
			}
			ws.Keys = r.signers
			_, errs[i] = ws.Publish(ctx, PublishRequest{Measurements: testMeasurements(fmt.Sprintf("v1.%d.0", i), "qemu-vtpm", byte(i+1))})
		})
	}
	wg.Wait()
	return errs
}

// Two publishers at once on one repository: both targets are published.
func TestConcurrentPublishers(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	errs := publishConcurrently(ctx, r, 6)
	for i, err := range errs {
		if err != nil {
			t.Errorf("publisher %d: %v", i, err)
		}
		if fetch(t, r.storage, fmt.Sprintf("measurements/v1.%d.0/qemu-vtpm/measurements.json", i)) == nil {
			t.Errorf("publisher %d's target was lost", i)
		}
	}
}

// countingKeys counts how often each private key is unlocked.
type countingKeys struct {
	keys.Memory
	mu       sync.Mutex
	unlocked map[string]int
}

func (c *countingKeys) Private(ctx context.Context, ref string) (crypto.Signer, error) {
	c.mu.Lock()
	c.unlocked[ref]++
	c.mu.Unlock()
	return c.Memory.Private(ctx, ref)
}

// A key that signs several roles (snapshot and timestamp) is unlocked once
// per workspace: each unlock of a key file is a slow key derivation.
func TestOnlineKeyUnlockedOnce(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cfg, k, m := testInitConfig(t, dir)
	ck := &countingKeys{Memory: m, unlocked: map[string]int{}}
	if _, err := Init(context.Background(), filepath.Join(dir, "ws"), cfg, ck, nil); err != nil {
		t.Fatal(err)
	}
	ws, err := OpenWorkspace(filepath.Join(dir, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	ws.Keys = ck
	clear(ck.unlocked)
	if _, err := ws.Publish(context.Background(), PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}); err != nil {
		t.Fatal(err)
	}
	if n := ck.unlocked[k["online"]]; n != 1 {
		t.Errorf("the online key (snapshot and timestamp) was unlocked %d times in one publish, want 1", n)
	}
	if n := ck.unlocked[k["measurements"]]; n != 1 {
		t.Errorf("the measurements key was unlocked %d times in one publish, want 1", n)
	}
}
