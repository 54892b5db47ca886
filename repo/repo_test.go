package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

const testPassword = "test-password"

func testPW() keys.PasswordSource {
	return keys.PasswordSource{Env: func(k string) string {
		if k == keys.PasswordEnv {
			return testPassword
		}
		return ""
	}}
}

// newTestKey writes an encrypted ed25519 test key pair and returns the
// path of the private key.
func newTestKey(t testing.TB, dir, name string) string {
	t.Helper()
	priv, err := keys.Generate(keys.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := keys.WriteKeyPair(p, priv, []byte(testPassword)); err != nil {
		t.Fatal(err)
	}
	return p + ".key"
}

type testRepo struct {
	dir, storage string
	ws           *Workspace
	keys         map[string]string
}

func newTestRepo(t testing.TB) *testRepo {
	t.Helper()
	dir := t.TempDir()
	k := map[string]string{}
	for _, r := range []string{"root", "targets", "online"} {
		k[r] = newTestKey(t, dir, r+"-test")
	}
	storage := filepath.Join(dir, "repo")
	ws, err := Init(context.Background(), filepath.Join(dir, "ws"), InitConfig{
		Storage:   storage,
		Root:      RoleKeys{Keys: []string{k["root"]}, Threshold: 1},
		Targets:   RoleKeys{Keys: []string{k["targets"]}, Threshold: 1},
		Snapshot:  RoleKeys{Keys: []string{k["online"]}, Threshold: 1},
		Timestamp: RoleKeys{Keys: []string{k["online"]}, Threshold: 1},
	}, testPW(), nil)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return &testRepo{dir: dir, storage: storage, ws: ws, keys: k}
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

// verifyChain checks the stored repository the way a client does, with
// go-tuf's trusted metadata state machine.
func verifyChain(t *testing.T, st Storage) *trustedmetadata.TrustedMetadata {
	t.Helper()
	ctx := context.Background()
	root, err := st.Get(ctx, "metadata/1.root.json")
	if err != nil {
		t.Fatal(err)
	}
	tm, err := trustedmetadata.New(root)
	if err != nil {
		t.Fatalf("root: %v", err)
	}
	ts, _ := st.Get(ctx, "metadata/timestamp.json")
	tsm, err := tm.UpdateTimestamp(ts)
	if err != nil {
		t.Fatalf("timestamp: %v", err)
	}
	snapV := tsm.Signed.Meta["snapshot.json"].Version
	snap, _ := st.Get(ctx, filepathName("snapshot", snapV))
	sm, err := tm.UpdateSnapshot(snap, false)
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	targets, _ := st.Get(ctx, filepathName("targets", sm.Signed.Meta["targets.json"].Version))
	if _, err := tm.UpdateDelegatedTargets(targets, tuf.TARGETS, tuf.ROOT); err != nil {
		t.Fatalf("targets: %v", err)
	}
	return tm
}

func filepathName(role string, v int64) string {
	return fmt.Sprintf("metadata/%d.%s.json", v, role)
}

func TestInitCreatesVerifiableRepository(t *testing.T) {
	r := newTestRepo(t)
	tm := verifyChain(t, r.ws.Storage)
	if !tm.Root.Signed.ConsistentSnapshot {
		t.Error("consistent snapshots must be on")
	}
	if got := time.Until(tm.Root.Signed.Expires); got < 364*24*time.Hour || got > 366*24*time.Hour {
		t.Errorf("root expires in %v, want about a year", got)
	}
	if got := time.Until(tm.Timestamp.Signed.Expires); got < 23*time.Hour || got > 25*time.Hour {
		t.Errorf("timestamp expires in %v, want a day", got)
	}
	// The workspace records online keys but never root keys.
	data, err := os.ReadFile(filepath.Join(r.dir, "ws", WorkspaceFile))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte("root-test")) {
		t.Errorf("workspace records a root key:\n%s", data)
	}
	// A second init on the same storage must not clobber it.
	_, err = Init(context.Background(), filepath.Join(r.dir, "ws2"), InitConfig{
		Storage: r.storage, Root: RoleKeys{Keys: []string{r.keys["root"]}, Threshold: 1},
		Targets: RoleKeys{Keys: []string{r.keys["targets"]}, Threshold: 1}, Snapshot: RoleKeys{Keys: []string{r.keys["online"]}, Threshold: 1},
		Timestamp: RoleKeys{Keys: []string{r.keys["online"]}, Threshold: 1},
	}, testPW(), nil)
	if err == nil || !strings.Contains(err.Error(), "already holds a repository") {
		t.Errorf("second init: err = %v, want 'already holds a repository'", err)
	}
}

func TestInitRefusesBadConfig(t *testing.T) {
	dir := t.TempDir()
	root := newTestKey(t, dir, "root-test")
	other := newTestKey(t, dir, "other-test")
	ok := RoleKeys{Keys: []string{other}, Threshold: 1}
	for _, tc := range []struct {
		name string
		cfg  InitConfig
		want string
	}{
		{"no root keys", InitConfig{Root: RoleKeys{Threshold: 1}, Targets: ok, Snapshot: ok, Timestamp: ok}, "role root has no keys"},
		{"threshold above keys", InitConfig{Root: RoleKeys{Keys: []string{root}, Threshold: 2}, Targets: ok, Snapshot: ok, Timestamp: ok}, "threshold 2 is more than its 1 key"},
		{"zero threshold", InitConfig{Root: RoleKeys{Keys: []string{root}, Threshold: 0}, Targets: ok, Snapshot: ok, Timestamp: ok}, "must be at least 1"},
		{"same key twice", InitConfig{Root: RoleKeys{Keys: []string{root, root}, Threshold: 2}, Targets: ok, Snapshot: ok, Timestamp: ok}, "are the same key"},
		{"missing key file", InitConfig{Root: RoleKeys{Keys: []string{filepath.Join(dir, "nope.key")}, Threshold: 1}, Targets: ok, Snapshot: ok, Timestamp: ok}, "nope.key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Storage = filepath.Join(dir, "repo-"+strings.ReplaceAll(tc.name, " ", "-"))
			_, err := Init(context.Background(), filepath.Join(dir, "ws-"+strings.ReplaceAll(tc.name, " ", "-")), tc.cfg, testPW(), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tc.want)
			}
			if _, serr := os.Stat(filepath.Join(tc.cfg.Storage, "metadata", "1.root.json")); serr == nil {
				t.Error("a refused init wrote a root")
			}
		})
	}
}

func TestPublish(t *testing.T) {
	r := newTestRepo(t)
	ctx := context.Background()
	m := testMeasurements("v1.0.0", "qemu-vtpm", 0x10)
	res, err := r.ws.Publish(ctx, PublishRequest{Measurements: m})
	if err != nil {
		t.Fatal(err)
	}
	if res.Target != "measurements/v1.0.0/qemu-vtpm/measurements.json" || res.TargetsVersion != 2 || res.TimestampVersion != 2 {
		t.Errorf("result = %+v", res)
	}
	tm := verifyChain(t, r.ws.Storage)
	tf := tm.Targets[tuf.TARGETS].Signed.Targets[res.Target]
	if tf == nil {
		t.Fatalf("target %s not in signed targets", res.Target)
	}
	data, err := r.ws.Storage.Get(ctx, "targets/measurements/v1.0.0/qemu-vtpm/"+res.SHA256+".measurements.json")
	if err != nil {
		t.Fatalf("hash-prefixed target file: %v", err)
	}
	if err := tf.VerifyLengthHashes(data); err != nil {
		t.Fatal(err)
	}
	got, err := metadata.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.Image != "v1.0.0" || len(got.PCRs) != 3 {
		t.Errorf("stored document = %+v", got)
	}

	// Publishing the same measurements again changes nothing.
	again, err := r.ws.Publish(ctx, PublishRequest{Measurements: m})
	if err != nil || !again.Unchanged || again.TargetsVersion != 2 {
		t.Fatalf("republish: %+v, %v", again, err)
	}
	// Different measurements for a published image need --replace.
	changed := testMeasurements("v1.0.0", "qemu-vtpm", 0x20)
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: changed}); err == nil || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("changed measurements without replace: %v", err)
	}
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: changed, Replace: true}); err != nil {
		t.Fatal(err)
	}
	// A second image adds a target and keeps the first.
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.1.0", "qemu-vtpm", 0x30)}); err != nil {
		t.Fatal(err)
	}
	tm = verifyChain(t, r.ws.Storage)
	if n := len(tm.Targets[tuf.TARGETS].Signed.Targets); n != 2 {
		t.Errorf("%d targets, want 2", n)
	}
	if v := tm.Timestamp.Signed.Version; v != 4 {
		t.Errorf("timestamp version %d, want 4", v)
	}
	st, err := r.ws.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Targets) != 2 || len(st.Roles) != 4 || st.Roles[1].Signatures != 1 {
		t.Errorf("status = %+v", st)
	}
}

func TestPublishRefusesWrongKey(t *testing.T) {
	r := newTestRepo(t)
	// The workspace's targets key is swapped for one root does not know.
	r.ws.Config.Keys["targets"] = []string{newTestKey(t, r.dir, "stranger-test")}
	_, err := r.ws.Publish(context.Background(), PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)})
	if err == nil || !strings.Contains(err.Error(), "is not a targets key of this repository") {
		t.Fatalf("err = %v", err)
	}
	// Nothing was published.
	if _, err := r.ws.Storage.Get(context.Background(), "metadata/2.targets.json"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a refused publish wrote targets: %v", err)
	}
}

func TestPublishWrongPassword(t *testing.T) {
	r := newTestRepo(t)
	r.ws.Password = keys.PasswordSource{Env: func(string) string { return "" }, File: writeFile(t, r.dir, "pw", "not-the-password\n")}
	_, err := r.ws.Publish(context.Background(), PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)})
	if !errors.Is(err, keys.ErrWrongPassword) {
		t.Fatalf("err = %v, want ErrWrongPassword", err)
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
	dir := t.TempDir()
	if _, err := OpenWorkspace(dir); err == nil || !strings.Contains(err.Error(), "not an mtuf workspace") {
		t.Errorf("empty dir: %v", err)
	}
	writeFile(t, dir, WorkspaceFile, "{not json")
	if _, err := OpenWorkspace(dir); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Errorf("corrupt file: %v", err)
	}
}
