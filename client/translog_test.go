package client_test

import (
	"context"
	"crypto"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/repo"
	"github.com/mtuf/mtuf/translog"
)

// logged is a repository that declares a transparency log, served over
// HTTP with a request counter, and a client that updated once.
type logged struct {
	t        *testing.T
	dir      string
	repo     string
	ws       *repo.Workspace
	signers  keys.Memory
	state    string
	requests atomic.Int64
	fill     byte
}

func newLogged(t *testing.T) *logged {
	t.Helper()
	l := &logged{t: t, dir: t.TempDir(), signers: keys.Memory{}}
	l.repo = filepath.Join(l.dir, "repo")
	k := map[string]string{}
	for _, n := range []string{"root", "targets", "online", "ci", "log"} {
		k[n] = newTestKey(t, l.signers, n+"-test")
	}
	one := func(n string) repo.RoleKeys { return repo.RoleKeys{Keys: []string{k[n]}, Threshold: 1} }
	ws, err := repo.Init(context.Background(), filepath.Join(l.dir, "ws"), repo.InitConfig{
		Storage: l.repo, Root: one("root"), Targets: one("targets"),
		Snapshot: one("online"), Timestamp: one("online"), Measurements: one("ci"), MeasurementsBins: 4,
		Log: &repo.LogSettings{Origin: "example.com/mtuf-client-test", Key: k["log"]},
	}, l.signers, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.ws = ws
	l.publish(l.ws)
	files := repo.Handler(l.repo)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.requests.Add(1)
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	root, _ := os.ReadFile(filepath.Join(l.repo, "metadata", "1.root.json"))
	l.state = filepath.Join(l.dir, "state")
	if _, err := client.Init(l.state, srv.URL, root); err != nil {
		t.Fatal(err)
	}
	if err := l.update(); err != nil {
		t.Fatalf("first update: %v", err)
	}
	return l
}

func (l *logged) publish(ws *repo.Workspace) {
	l.t.Helper()
	l.fill++
	if _, err := ws.Publish(context.Background(), repo.PublishRequest{Measurements: measurementsWith("v1.0.0", l.fill), Replace: true}); err != nil {
		l.t.Fatal(err)
	}
}

func (l *logged) update() error {
	cl, err := client.Open(l.state)
	if err != nil {
		return err
	}
	_, err = cl.Update(context.Background(), "v1.0.0", "qemu-vtpm")
	return err
}

// attacker is a workspace on the same repository whose writes to the log
// are lost: it holds the online and measurements keys, and signs
// snapshots that never reach the log.
func (l *logged) attacker() *repo.Workspace {
	l.t.Helper()
	ws, err := repo.OpenWorkspace(filepath.Join(l.dir, "ws"))
	if err != nil {
		l.t.Fatal(err)
	}
	ws.Keys = l.signers
	ws.Storage = skipLog{ws.Storage}
	return ws
}

type skipLog struct{ repo.Storage }

func (s skipLog) PutOnce(ctx context.Context, name string, data []byte) error {
	if strings.HasPrefix(name, translog.Dir) {
		return nil
	}
	return s.Storage.PutOnce(ctx, name, data)
}

func (s skipLog) Replace(ctx context.Context, name string, data []byte) error {
	if strings.HasPrefix(name, translog.Dir) {
		return nil
	}
	return s.Storage.Replace(ctx, name, data)
}

func wantRefused(t *testing.T, err, cause error) {
	t.Helper()
	if !errors.Is(err, client.ErrUntrusted) || !errors.Is(err, client.ErrNotLogged) || !errors.Is(err, cause) {
		t.Fatalf("update: got %v, want a refusal for %v", err, cause)
	}
}

// A no-op refresh costs what it cost without the log: the root probe and
// timestamp.json.
func TestLogNoOpRefreshRequests(t *testing.T) {
	t.Parallel()
	l := newLogged(t)
	l.requests.Store(0)
	if err := l.update(); err != nil {
		t.Fatal(err)
	}
	if n := l.requests.Load(); n != 2 {
		t.Fatalf("no-op refresh made %d requests, want 2", n)
	}
	l.publish(l.ws)
	if err := l.update(); err != nil {
		t.Fatalf("update after a logged publish: %v", err)
	}
}

// Stolen online and measurements keys sign a snapshot the log does not
// hold: the client refuses it, and keeps refusing it.
func TestLogRefusesSplitView(t *testing.T) {
	t.Parallel()
	l := newLogged(t)
	l.publish(l.attacker())
	for range 2 {
		wantRefused(t, l.update(), translog.ErrNotLogged)
	}
	// The honest publisher's next logged version is accepted again.
	l.publish(l.ws)
	if err := l.update(); err != nil {
		t.Fatalf("update after an honest publish: %v", err)
	}
}

// A log shown to one client that does not extend the one it saw (a fork)
// is refused, and so is a log that shrank.
func TestLogRefusesForkAndShrink(t *testing.T) {
	t.Parallel()
	l := newLogged(t)
	saved := copyDir(t, l.repo, filepath.Join(l.dir, "saved"))
	l.publish(l.ws)
	if err := l.update(); err != nil {
		t.Fatal(err)
	}
	// Shrink: the log of before, with a new snapshot on top of it
	// published by the attacker, who holds the log key too.
	logBefore := filepath.Join(saved, "log")
	l.publish(l.attacker())
	replaceDir(t, filepath.Join(l.repo, "log"), logBefore)
	wantRefused(t, l.update(), translog.ErrShrunk)

	// Fork: the old log extended by two other entries.
	l.publish(l.ws)
	l.publish(l.ws)
	wantRefused(t, l.update(), translog.ErrFork)
}

// Tiles rewritten on the server are refused.
func TestLogRefusesTamperedTiles(t *testing.T) {
	t.Parallel()
	l := newLogged(t)
	l.publish(l.ws)
	tiles, _ := filepath.Glob(filepath.Join(l.repo, "log", "tile", "0", "*.p", "*"))
	if len(tiles) == 0 {
		t.Fatal("no partial tiles")
	}
	for _, p := range tiles {
		data, _ := os.ReadFile(p)
		data[len(data)-1] ^= 1
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantRefused(t, l.update(), translog.ErrTampered)
}

func copyDir(t *testing.T, from, to string) string {
	t.Helper()
	err := filepath.Walk(from, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		if fi.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return to
}

func replaceDir(t *testing.T, dir, with string) {
	t.Helper()
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	copyDir(t, with, dir)
}

// The log key is rotated through root: clients follow to the new key
// and keep checking the log's consistency across the rotation.
func TestLogKeyRotation(t *testing.T) {
	t.Parallel()
	l := newLogged(t)
	ctx := context.Background()
	newKey := newTestKey(t, l.signers, "log2-test")
	p, err := l.ws.Stage(ctx, repo.StageRequest{Role: "root", Log: &repo.LogSettings{Origin: "example.com/mtuf-client-test", Key: newKey}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := repo.Sign(ctx, p, "root-test", l.signers); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ws.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	l.publish(l.ws)
	if err := l.update(); err != nil {
		t.Fatalf("update after the log key's rotation: %v", err)
	}
	// The old key no longer makes checkpoints clients accept.
	l.publish(l.attacker())
	old := repoWithLogKey(t, l, "log-test")
	l.publish(old)
	wantRefused(t, l.update(), translog.ErrCheckpoint)
}

// repoWithLogKey is a workspace on l's repository that signs checkpoints
// with the key named, whatever the root says, as a thief of a retired
// log key would.
func repoWithLogKey(t *testing.T, l *logged, key string) *repo.Workspace {
	t.Helper()
	ws, err := repo.OpenWorkspace(filepath.Join(l.dir, "ws"))
	if err != nil {
		t.Fatal(err)
	}
	ws.Keys = retiredLogKey{Memory: l.signers, ref: key}
	return ws
}

// retiredLogKey answers for the log key in force with another key's
// private half but the right public half, so the workspace's check of
// key ids passes and the checkpoint is signed by the wrong key.
type retiredLogKey struct {
	keys.Memory
	ref string
}

func (r retiredLogKey) Private(ctx context.Context, ref string) (crypto.Signer, error) {
	if ref != "log2-test" {
		return r.Memory.Private(ctx, ref)
	}
	priv, err := r.Memory.Private(ctx, r.ref)
	if err != nil {
		return nil, err
	}
	good, err := r.Memory.Private(ctx, ref)
	if err != nil {
		return nil, err
	}
	return lyingSigner{Signer: priv, pub: good.Public()}, nil
}

type lyingSigner struct {
	crypto.Signer
	pub crypto.PublicKey
}

func (s lyingSigner) Public() crypto.PublicKey { return s.pub }
