package client_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/repo"
)

// newTestKey generates an ed25519 key, holds it in m under name, and
// returns name, the key's reference. The repositories of these tests sign
// with keys in memory: an encrypted key file costs seconds of scrypt under
// the race detector, and no test here is about key files.
func newTestKey(t testing.TB, m keys.Memory, name string) string {
	t.Helper()
	priv, err := keys.Generate(keys.ED25519)
	if err != nil {
		t.Fatal(err)
	}
	m[name] = priv
	return name
}

// fixture is a repository on disk, its workspace, and a client of it.
type fixture struct {
	dir     string
	repoDir string
	ws      *repo.Workspace
	root    []byte
	// oldTimestamp is a timestamp.json an attacker saved earlier.
	oldTimestamp []byte
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	m := keys.Memory{}
	root, targets, online := newTestKey(t, m, "root-test"), newTestKey(t, m, "targets-test"), newTestKey(t, m, "online-test")
	ci := newTestKey(t, m, "measurements-test")
	repoDir := filepath.Join(dir, "repo")
	ws, err := repo.Init(context.Background(), filepath.Join(dir, "ws"), repo.InitConfig{
		Storage:          repoDir,
		Root:             repo.RoleKeys{Keys: []string{root}, Threshold: 1},
		Targets:          repo.RoleKeys{Keys: []string{targets}, Threshold: 1},
		Snapshot:         repo.RoleKeys{Keys: []string{online}, Threshold: 1},
		Timestamp:        repo.RoleKeys{Keys: []string{online}, Threshold: 1},
		Measurements:     repo.RoleKeys{Keys: []string{ci}, Threshold: 1},
		MeasurementsBins: 8,
	}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	rootBytes, err := os.ReadFile(filepath.Join(repoDir, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dir: dir, repoDir: repoDir, ws: ws, root: rootBytes}
}

func (f *fixture) publish(t *testing.T, image string, fill byte) *metadata.Measurements {
	t.Helper()
	m := &metadata.Measurements{Image: image, Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{
		4: {Expected: bytes.Repeat([]byte{fill}, 32)},
		8: {Expected: bytes.Repeat([]byte{fill + 1}, 32), WarnOnly: true},
	}}
	if _, err := f.ws.Publish(context.Background(), repo.PublishRequest{Measurements: m, Replace: true}); err != nil {
		t.Fatal(err)
	}
	return m
}

// updatedClient is a client of the fixture's directory that has updated
// the v1.0.0 qemu-vtpm measurements once, and its state directory.
func (f *fixture) updatedClient(t *testing.T) (*client.Client, string) {
	t.Helper()
	c, state := f.client(t, f.repoDir)
	if _, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm"); err != nil {
		t.Fatal(err)
	}
	return c, state
}

func (f *fixture) client(t *testing.T, url string) (*client.Client, string) {
	t.Helper()
	state := filepath.Join(t.TempDir(), "state")
	c, err := client.Init(state, url, f.root)
	if err != nil {
		t.Fatal(err)
	}
	return c, state
}

func TestUpdateOverFileAndHTTP(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	want := f.publish(t, "v1.0.0", 0x40)
	srv := httptest.NewServer(repo.Handler(f.repoDir))
	defer srv.Close()
	for name, url := range map[string]string{"file": "file://" + f.repoDir, "dir": f.repoDir, "http": srv.URL} {
		t.Run(name, func(t *testing.T) {
			c, state := f.client(t, url)
			got, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.PCRs[4].Expected, want.PCRs[4].Expected) {
				t.Errorf("PCR 4 = %x", got.PCRs[4].Expected)
			}
			// The measurements are in the config, for verify.
			reopened, err := client.Open(state)
			if err != nil {
				t.Fatal(err)
			}
			cfg := reopened.Config()
			if cfg.Measurements == nil || cfg.Image != "v1.0.0" || !cfg.Measurements.PCRs[8].WarnOnly {
				t.Errorf("config = %+v", cfg)
			}
			list, err := reopened.List(context.Background())
			if err != nil || len(list) != 1 || list[0].Image != "v1.0.0" {
				t.Errorf("List = %+v, %v", list, err)
			}
		})
	}
}

func TestUpdateFollowsNewMeasurements(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "v1.0.0", 0x40)
	c, _ := f.updatedClient(t)
	f.publish(t, "v1.0.0", 0x50)
	got, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm")
	if err != nil {
		t.Fatal(err)
	}
	if got.PCRs[4].Expected[0] != 0x50 {
		t.Errorf("client kept old measurements %x", got.PCRs[4].Expected)
	}
}

// Attacks on the repository: every one is refused with ErrUntrusted and
// leaves the client's trusted measurements as they were.
func TestUpdateRefusesAttacks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		attack func(t *testing.T, f *fixture)
		now    time.Time
		want   string
	}{
		{
			name: "tampered target",
			attack: func(t *testing.T, f *fixture) {
				matches, _ := filepath.Glob(filepath.Join(f.repoDir, "targets/measurements/v1.0.0/qemu-vtpm/*.measurements.json"))
				for _, m := range matches {
					data, _ := os.ReadFile(m)
					os.WriteFile(m, bytes.Replace(data, []byte("qemu-vtpm"), []byte("qemu-vtpX"), 1), 0o644)
				}
			},
			want: "differs from its signed length or hash",
		},
		{
			name: "rollback of timestamp",
			attack: func(t *testing.T, f *fixture) {
				// The attacker serves the timestamp of an older state.
				os.WriteFile(filepath.Join(f.repoDir, "metadata/timestamp.json"), f.oldTimestamp, 0o644)
			},
			want: "rollback",
		},
		{
			name: "mix and match targets",
			attack: func(t *testing.T, f *fixture) {
				// The snapshot names the target's bin at v3; the attacker
				// serves the bin's v2 under that name.
				bins, _ := filepath.Glob(filepath.Join(f.repoDir, "metadata/3.measurements-bin-*.json"))
				if len(bins) != 1 {
					t.Fatalf("bins at version 3: %v", bins)
				}
				old, err := os.ReadFile(strings.Replace(bins[0], "/3.", "/2.", 1))
				if err != nil {
					t.Fatal(err)
				}
				os.WriteFile(bins[0], old, 0o644)
			},
			want: "refused",
		},
		{
			name: "unsigned timestamp",
			attack: func(t *testing.T, f *fixture) {
				p := filepath.Join(f.repoDir, "metadata/timestamp.json")
				data, _ := os.ReadFile(p)
				// Extend its expiry without the timestamp key.
				if !bytes.Contains(data, []byte(`"expires":"20`)) {
					t.Fatalf("timestamp has no expires field: %s", data)
				}
				os.WriteFile(p, bytes.Replace(data, []byte(`"expires":"20`), []byte(`"expires":"21`), 1), 0o644)
			},
			want: "not signed by the required threshold",
		},
		{
			name:   "freeze: expired timestamp",
			attack: func(t *testing.T, f *fixture) {},
			now:    time.Now().Add(48 * time.Hour),
			want:   "freeze attack",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.publish(t, "v1.0.0", 0x40)
			c, state := f.updatedClient(t)
			f.oldTimestamp, _ = os.ReadFile(filepath.Join(f.repoDir, "metadata/timestamp.json"))
			f.publish(t, "v1.0.0", 0x50)
			// The client's cached target is dropped so that it downloads again.
			os.RemoveAll(filepath.Join(state, "targets"))
			before, _ := os.ReadFile(filepath.Join(state, "config.json"))
			if tc.name == "rollback of timestamp" {
				// First let the client trust the newest timestamp.
				if _, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm"); err != nil {
					t.Fatal(err)
				}
				before, _ = os.ReadFile(filepath.Join(state, "config.json"))
			}
			tc.attack(t, f)
			c, err := client.Open(state)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.now.IsZero() {
				c.Now = func() time.Time { return tc.now }
			}
			_, err = c.Update(context.Background(), "v1.0.0", "qemu-vtpm")
			if !errors.Is(err, client.ErrUntrusted) {
				t.Fatalf("err = %v, want ErrUntrusted", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
			after, _ := os.ReadFile(filepath.Join(state, "config.json"))
			if !bytes.Equal(before, after) {
				t.Error("a refused update changed the trusted config")
			}
		})
	}
}

func TestInitRefusesBadRoot(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	for name, root := range map[string][]byte{
		"not json":         []byte("{"),
		"signature broken": bytes.Replace(f.root, []byte(`"consistent_snapshot": true`), []byte(`"consistent_snapshot": false`), 1),
		"a timestamp":      mustRead(t, filepath.Join(f.repoDir, "metadata/timestamp.json")),
	} {
		t.Run(name, func(t *testing.T) {
			state := filepath.Join(t.TempDir(), "s")
			if _, err := client.Init(state, f.repoDir, root); err == nil {
				t.Fatal("bad root accepted")
			}
			if _, err := os.Stat(filepath.Join(state, "config.json")); err == nil {
				t.Error("a refused init left a config")
			}
		})
	}
	if _, err := client.Init(t.TempDir(), "ftp://x", f.root); err == nil || !strings.Contains(err.Error(), "unsupported scheme") {
		t.Errorf("ftp URL: %v", err)
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// Object stores answer 403 for a missing key when listing is not allowed;
// the probe for the next root must read that as "no newer root", but a
// 403 anywhere else is still an error.
func TestRootProbeForbidden(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "v1.0.0", 0x40)
	files := repo.Handler(f.repoDir)
	forbidAll := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := os.Stat(filepath.Join(f.repoDir, r.URL.Path)); err != nil || forbidAll {
			http.Error(w, "AccessDenied", http.StatusForbidden)
			return
		}
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, _ := f.client(t, srv.URL)
	if _, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm"); err != nil {
		t.Fatalf("403 on the root probe: %v", err)
	}
	forbidAll = true
	if _, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("403 on timestamp.json: %v", err)
	}
}

func TestOpenNotInitialized(t *testing.T) {
	t.Parallel()
	_, err := client.Open(t.TempDir())
	if !errors.Is(err, client.ErrNotInitialized) || !strings.Contains(err.Error(), "mtuf client init") {
		t.Fatalf("err = %v", err)
	}
}
