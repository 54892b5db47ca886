package repo

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// The repository benchmarks compare mtuf's layout (delegated roles, 256
// measurement bins) with the baseline of one flat targets.json, for
// repositories of 1,000, 10,000 and 100,000 measurement targets:
//
//	publish-one   the time to publish one more target
//	fresh         requests and bytes a new client needs for one target
//	warm          requests, bytes and time of a refresh when nothing changed
//
// Run them with 'make bench'.
var benchSizes = []int{1000, 10000, 100000}

// memStorage keeps a repository in memory while a benchmark builds it;
// writing 100,000 files with an fsync each would measure the disk, not
// the repository layout.
type memStorage struct {
	mu    sync.Mutex
	files map[string][]byte
}

func (m *memStorage) Get(_ context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.files[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	return d, nil
}

func (m *memStorage) PutOnce(_ context.Context, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; ok {
		return fmt.Errorf("%s: %w", name, ErrExists)
	}
	m.files[name] = data
	return nil
}

func (m *memStorage) Replace(_ context.Context, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[name] = data
	return nil
}

// dump writes the files to dir without syncing them.
func (m *memStorage) dump(b *testing.B, dir string) {
	for name, data := range m.files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

func benchTarget(i int) Target {
	m := &metadata.Measurements{Image: fmt.Sprintf("v%d.%d.%d", i/10000, i/100%100, i%100), Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{}}
	for _, idx := range []uint32{4, 8, 9, 11, 12, 13} {
		sum := sha256.Sum256(fmt.Appendf(nil, "%d/%d", i, idx))
		m.PCRs[idx] = metadata.PCR{Expected: sum[:]}
	}
	data, err := m.Marshal()
	if err != nil {
		panic(err)
	}
	name, _ := metadata.MeasurementsTarget(m.Image, m.Platform)
	return Target{Name: name, Data: data, Custom: metadata.TargetCustom{Image: m.Image, Platform: m.Platform}}
}

// benchRepos caches built repositories across benchmarks of one run, in
// benchDir, which outlives any one benchmark; benchKeys holds the keys of
// each.
var (
	benchRepos = map[string]string{}
	benchKeys  = map[string]keys.Memory{}
	benchDir   string
)

func TestMain(m *testing.M) {
	var err error
	if benchDir, err = os.MkdirTemp("", "mtuf-bench-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(benchDir)
	os.Exit(code)
}

// benchTempDir is a fresh directory that lives as long as the test binary.
func benchTempDir(b *testing.B) string {
	d, err := os.MkdirTemp(benchDir, "repo-")
	if err != nil {
		b.Fatal(err)
	}
	return d
}

// mtufRepo builds an mtuf repository with n measurement targets on disk
// and returns its workspace.
func mtufRepo(b *testing.B, n int) *Workspace {
	return mtufRepoWith(b, fmt.Sprintf("mtuf-%d", n), n, nil)
}

// mtufRepoWith is mtufRepo for a repository whose configuration
// configure changes, cached under key.
func mtufRepoWith(b *testing.B, key string, n int, configure func(*InitConfig, keys.Memory)) *Workspace {
	b.Helper()
	dir, ok := benchRepos[key]
	if !ok {
		dir = benchTempDir(b)
		kdir := filepath.Join(dir, "keys")
		os.MkdirAll(kdir, 0o700)
		cfg, _, m := testInitConfig(b, kdir)
		if configure != nil {
			configure(&cfg, m)
		}
		benchKeys[key] = m
		cfg.MeasurementsBins, cfg.ReleasesBins = 0, 0
		mem := &memStorage{files: map[string][]byte{}}
		cfg.Storage = filepath.Join(dir, "unused")
		ws, err := initOn(b, filepath.Join(dir, "ws"), cfg, m, mem)
		if err != nil {
			b.Fatal(err)
		}
		targets := make([]Target, 0, n)
		for i := range n {
			targets = append(targets, benchTarget(i))
		}
		if _, err := ws.PublishTargets(context.Background(), targets, false); err != nil {
			b.Fatal(err)
		}
		repoDir := filepath.Join(dir, "repo")
		mem.dump(b, repoDir)
		ws.Config.Storage = "file://" + repoDir
		if err := ws.save(); err != nil {
			b.Fatal(err)
		}
		benchRepos[key] = dir
	}
	ws, err := OpenWorkspace(filepath.Join(dir, "ws"))
	if err != nil {
		b.Fatal(err)
	}
	ws.Keys = benchKeys[key]
	return ws
}

// initOn runs Init with the repository on st instead of the storage the
// config names.
func initOn(b *testing.B, dir string, cfg InitConfig, kr keys.Resolver, st Storage) (*Workspace, error) {
	b.Helper()
	ws, err := Init(context.Background(), dir, cfg, kr, nil)
	if err != nil {
		return nil, err
	}
	// Copy the fresh repository into st, then work on st.
	fsSt := ws.Storage.(*FileStorage)
	err = filepath.Walk(fsSt.Dir(), func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() || strings.HasPrefix(info.Name(), ".") {
			return err
		}
		rel, _ := filepath.Rel(fsSt.Dir(), p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return st.Replace(context.Background(), filepath.ToSlash(rel), data)
	})
	ws.Storage = st
	return ws, err
}

func BenchmarkPublishOne(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("layout=bins/targets=%d", n), func(b *testing.B) {
			ws := mtufRepo(b, n)
			ctx := context.Background()
			// Unlock the keys first: a publish from the CLI pays scrypt
			// once per key on top of what is measured here.
			if _, err := ws.Publish(ctx, PublishRequest{Targets: []Target{benchTarget(n + 1000000)}}); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				if _, err := ws.Publish(ctx, PublishRequest{Targets: []Target{benchTarget(n + 2000000 + i)}}); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("layout=flat/targets=%d", n), func(b *testing.B) {
			f := flatRepo(b, n)
			i := 0
			for b.Loop() {
				i++
				f.publish(b, benchTarget(n+2000000+i))
			}
		})
	}
}

// countingServer serves a repository directory and counts what it sends.
type countingServer struct {
	*httptest.Server
	requests, bytes atomic.Int64
}

func serveCounting(dir string) *countingServer {
	c := &countingServer{}
	files := Handler(dir)
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.requests.Add(1)
		cw := &countingWriter{ResponseWriter: w, n: &c.bytes}
		files.ServeHTTP(cw, r)
	}))
	return c
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return c.ResponseWriter.Write(p)
}

func (c *countingServer) reset() { c.requests.Store(0); c.bytes.Store(0) }

// clientFetch makes a go-tuf updater with its cache in cache, and fetches
// one target through it.
func clientFetch(b *testing.B, srv *countingServer, root []byte, cache, name string, maxTargets int64) {
	cfg, err := config.New(srv.URL+"/metadata", root)
	if err != nil {
		b.Fatal(err)
	}
	cfg.RemoteTargetsURL = srv.URL + "/targets"
	cfg.LocalMetadataDir = filepath.Join(cache, "metadata")
	cfg.LocalTargetsDir = filepath.Join(cache, "targets")
	if maxTargets > 0 {
		cfg.TargetsMaxLength = maxTargets
	}
	up, err := updater.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		b.Fatal(err)
	}
	ti, err := up.GetTargetInfo(name)
	if err != nil {
		b.Fatal(err)
	}
	if _, data, err := up.FindCachedTarget(ti, ""); err == nil && data != nil {
		return
	}
	if _, _, err := up.DownloadTarget(ti, "", ""); err != nil {
		b.Fatal(err)
	}
}

func BenchmarkClientFetch(b *testing.B) {
	for _, n := range benchSizes {
		for _, layout := range []string{"bins", "flat"} {
			// repo builds (or reuses) the repository inside the
			// sub-benchmark, so that -bench filters skip the build too.
			repo := func(b *testing.B) (dir string, root []byte, maxTargets int64) {
				if layout == "bins" {
					dir = strings.TrimPrefix(mtufRepo(b, n).Config.Storage, "file://")
				} else {
					dir = flatRepo(b, n).dir
					// go-tuf refuses a targets.json over 5 MB by default;
					// the flat baseline at 100,000 targets is bigger, so
					// the baseline client is given room for it.
					maxTargets = 256 << 20
				}
				root, err := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
				if err != nil {
					b.Fatal(err)
				}
				return dir, root, maxTargets
			}
			name := benchTarget(n / 2).Name
			b.Run(fmt.Sprintf("fresh/layout=%s/targets=%d", layout, n), func(b *testing.B) {
				dir, root, maxTargets := repo(b)
				srv := serveCounting(dir)
				defer srv.Close()
				var reqs, bytes int64
				for b.Loop() {
					srv.reset()
					clientFetch(b, srv, root, b.TempDir(), name, maxTargets)
					reqs, bytes = srv.requests.Load(), srv.bytes.Load()
				}
				b.ReportMetric(float64(reqs), "requests")
				b.ReportMetric(float64(bytes), "bytes-fetched")
			})
			b.Run(fmt.Sprintf("warm/layout=%s/targets=%d", layout, n), func(b *testing.B) {
				dir, root, maxTargets := repo(b)
				srv := serveCounting(dir)
				defer srv.Close()
				cache := b.TempDir()
				clientFetch(b, srv, root, cache, name, maxTargets)
				var reqs, bytes int64
				for b.Loop() {
					srv.reset()
					clientFetch(b, srv, root, cache, name, maxTargets)
					reqs, bytes = srv.requests.Load(), srv.bytes.Load()
				}
				b.ReportMetric(float64(reqs), "requests")
				b.ReportMetric(float64(bytes), "bytes-fetched")
			})
		}
	}
}

// flat is the baseline: every target in one top-level targets.json, made
// and re-signed with go-tuf's metadata API, consistent snapshots on.
type flat struct {
	dir                     string
	signer                  signature.Signer
	root                    *tuf.Metadata[tuf.RootType]
	targets                 *tuf.Metadata[tuf.TargetsType]
	snapshot                *tuf.Metadata[tuf.SnapshotType]
	timestamp               *tuf.Metadata[tuf.TimestampType]
	targetsBytes, snapBytes []byte
}

var flatRepos = map[int]*flat{}

func flatRepo(b *testing.B, n int) *flat {
	b.Helper()
	if f, ok := flatRepos[n]; ok {
		return f
	}
	_, priv, _ := ed25519.GenerateKey(nil)
	signer, err := keys.Signer(priv)
	if err != nil {
		b.Fatal(err)
	}
	key, err := keys.TUFKey(priv.Public())
	if err != nil {
		b.Fatal(err)
	}
	expires := time.Now().Add(24 * time.Hour)
	f := &flat{dir: benchTempDir(b), signer: signer, root: tuf.Root(expires), targets: tuf.Targets(expires), snapshot: tuf.Snapshot(expires), timestamp: tuf.Timestamp(expires)}
	f.root.Signed.ConsistentSnapshot = true
	for _, r := range []string{tuf.ROOT, tuf.TARGETS, tuf.SNAPSHOT, tuf.TIMESTAMP} {
		f.root.Signed.AddKey(key, r)
	}
	f.root.Sign(signer)
	f.write(b, "metadata/1.root.json", mustBytes(b, f.root))
	for i := range n {
		t := benchTarget(i)
		f.add(b, t)
	}
	f.commit(b)
	flatRepos[n] = f
	return f
}

func mustBytes[T tuf.Roles](b *testing.B, md *tuf.Metadata[T]) []byte {
	data, err := md.ToBytes(false)
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func (f *flat) write(b *testing.B, name string, data []byte) {
	p := filepath.Join(f.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
}

func (f *flat) add(b *testing.B, t Target) {
	tf, err := tuf.TargetFile().FromBytes(t.Name, t.Data, "sha256")
	if err != nil {
		b.Fatal(err)
	}
	f.targets.Signed.Targets[t.Name] = tf
	f.write(b, targetFileName(t.Name, t.Data), t.Data)
}

func (f *flat) commit(b *testing.B) {
	for _, md := range []interface{ ClearSignatures() }{f.targets, f.snapshot, f.timestamp} {
		md.ClearSignatures()
	}
	f.targets.Sign(f.signer)
	f.targetsBytes = mustBytes(b, f.targets)
	f.write(b, fmt.Sprintf("metadata/%d.targets.json", f.targets.Signed.Version), f.targetsBytes)
	f.snapshot.Signed.Meta["targets.json"] = tuf.MetaFile(f.targets.Signed.Version)
	f.snapshot.Sign(f.signer)
	f.snapBytes = mustBytes(b, f.snapshot)
	f.write(b, fmt.Sprintf("metadata/%d.snapshot.json", f.snapshot.Signed.Version), f.snapBytes)
	f.timestamp.Signed.Meta["snapshot.json"] = tuf.MetaFile(f.snapshot.Signed.Version)
	f.timestamp.Sign(f.signer)
	f.write(b, "metadata/timestamp.json", mustBytes(b, f.timestamp))
}

// publish adds one target the way a flat repository must: re-sign and
// rewrite the whole targets.json, then snapshot and timestamp.
func (f *flat) publish(b *testing.B, t Target) {
	f.add(b, t)
	f.targets.Signed.Version++
	f.snapshot.Signed.Version++
	f.timestamp.Signed.Version++
	f.commit(b)
}
