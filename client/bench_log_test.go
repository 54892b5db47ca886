package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/internal/cputime"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/repo"
)

// memStore keeps a benchmark repository in memory while it is built:
// 100,000 target files with an fsync each would measure the disk.
type memStore struct {
	mu    sync.Mutex
	files map[string][]byte
}

func (m *memStore) Get(_ context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.files[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, repo.ErrNotFound)
	}
	return d, nil
}

func (m *memStore) PutOnce(_ context.Context, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[name]; ok {
		return fmt.Errorf("%s: %w", name, repo.ErrExists)
	}
	m.files[name] = data
	return nil
}

func (m *memStore) Replace(_ context.Context, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[name] = data
	return nil
}

func benchMeasurements(i int) repo.Target {
	m := &metadata.Measurements{Image: fmt.Sprintf("v%d.%d.%d", i/10000, i/100%100, i%100), Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{}}
	for _, idx := range []uint32{4, 8, 9, 11, 12, 13} {
		sum := sha256.Sum256(fmt.Appendf(nil, "%d/%d", i, idx))
		m.PCRs[idx] = metadata.PCR{Expected: sum[:]}
	}
	data, _ := m.Marshal()
	name, _ := metadata.MeasurementsTarget(m.Image, m.Platform)
	return repo.Target{Name: name, Data: data, Custom: metadata.TargetCustom{Image: m.Image, Platform: m.Platform}}
}

// logBenchRepo builds, in memory, a logged repository of n measurement
// targets followed by entries more publishes, and writes it to dir.
func logBenchRepo(b *testing.B, dir string, n, entries int) {
	b.Helper()
	ctx := context.Background()
	m := keys.Memory{}
	k := map[string]string{}
	for _, r := range []string{"root", "targets", "online", "ci", "log"} {
		k[r] = newTestKey(b, m, r+"-test")
	}
	one := func(r string) repo.RoleKeys { return repo.RoleKeys{Keys: []string{k[r]}, Threshold: 1} }
	ws, err := repo.Init(ctx, filepath.Join(dir, "ws"), repo.InitConfig{
		Storage: filepath.Join(dir, "init"), Root: one("root"), Targets: one("targets"),
		Snapshot: one("online"), Timestamp: one("online"), Measurements: one("ci"),
		Log: &repo.LogSettings{Origin: "example.com/bench", Key: k["log"]},
	}, m, nil)
	if err != nil {
		b.Fatal(err)
	}
	mem := &memStore{files: map[string][]byte{}}
	initDir := filepath.Join(dir, "init")
	filepath.WalkDir(initDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, _ := filepath.Rel(initDir, p)
		data, _ := os.ReadFile(p)
		mem.files[filepath.ToSlash(rel)] = data
		return nil
	})
	ws.Storage = mem
	targets := make([]repo.Target, n)
	for i := range n {
		targets[i] = benchMeasurements(i)
	}
	if _, err := ws.PublishTargets(ctx, targets, false); err != nil {
		b.Fatal(err)
	}
	for i := range entries {
		if _, err := ws.PublishTargets(ctx, []repo.Target{benchMeasurements(n + i)}, false); err != nil {
			b.Fatal(err)
		}
	}
	for name, data := range mem.files {
		p := filepath.Join(dir, "repo", filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFreshClientLog is what a new client fetches, metadata and log
// proofs, to get one measurements document from a logged repository of
// 100,000 targets.
func BenchmarkFreshClientLog(b *testing.B) {
	const n = 100000
	dir := b.TempDir()
	logBenchRepo(b, dir, n, 0)
	var requests, bytes atomic.Int64
	files := repo.Handler(filepath.Join(dir, "repo"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		files.ServeHTTP(countingWriter{w, &bytes}, r)
	}))
	defer srv.Close()
	root, _ := os.ReadFile(filepath.Join(dir, "repo", "metadata", "1.root.json"))
	want := benchMeasurements(n / 2)
	tc, _ := metadata.ParseTarget(want.Name)
	for b.Loop() {
		requests.Store(0)
		bytes.Store(0)
		state := filepath.Join(b.TempDir(), "state")
		cl, err := client.Init(state, srv.URL, root)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cl.Update(context.Background(), tc.Image, tc.Platform); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(requests.Load()), "requests")
	b.ReportMetric(float64(bytes.Load()), "bytes-fetched")
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	c.n.Add(int64(len(p)))
	return c.ResponseWriter.Write(p)
}

// BenchmarkAudit replays a log of publishes: 1,000 on a repository of
// 10,000 targets, read from files and over HTTP (the server on the same
// cores), and 300 on one of 100,000 targets, whose bins are ten times
// larger, from files. Its baseline, floor, is the least any audit of the
// same log does (auditFloor), on the same files in the same run.
func BenchmarkAudit(b *testing.B) {
	for _, c := range []struct {
		targets, entries int
		over             []string
	}{{10000, 1000, []string{"file", "http"}}, {100000, 300, []string{"file"}}} {
		b.Run(fmt.Sprintf("targets=%d", c.targets), func(b *testing.B) {
			dir := b.TempDir()
			logBenchRepo(b, dir, c.targets, c.entries)
			repoDir := filepath.Join(dir, "repo")
			root, _ := os.ReadFile(filepath.Join(repoDir, "metadata", "1.root.json"))
			audit := func(b *testing.B, url string) {
				cl, err := client.Init(b.TempDir(), url, root)
				if err != nil {
					b.Fatal(err)
				}
				var total int64
				cpu0 := cputime.Self()
				for b.Loop() {
					rep, err := cl.Audit(context.Background(), false)
					if err != nil || len(rep.Problems) != 0 {
						b.Fatalf("audit: %v %v", err, rep.Problems)
					}
					total += rep.Size
				}
				b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "entries/s")
				b.ReportMetric(float64(cputime.Self()-cpu0)/1e3/float64(total), "cpu-µs/entry")
			}
			for _, over := range c.over {
				b.Run("over="+over, func(b *testing.B) {
					if over == "http" {
						srv := httptest.NewServer(repo.Handler(repoDir))
						defer srv.Close()
						audit(b, srv.URL)
						return
					}
					audit(b, repoDir)
				})
			}
			b.Run("floor", func(b *testing.B) {
				cl, err := client.Init(b.TempDir(), repoDir, root)
				if err != nil {
					b.Fatal(err)
				}
				rep, err := cl.Audit(context.Background(), false)
				if err != nil {
					b.Fatal(err)
				}
				files := floorFiles(b, filepath.Join(repoDir, "metadata"))
				cpu0 := cputime.Self()
				for b.Loop() {
					auditFloor(b, files)
				}
				cpu := cputime.Self() - cpu0
				total := float64(rep.Size) * float64(b.N)
				size := 0
				for _, f := range files {
					size += f.size
				}
				// What every audit of this log reads and hashes twice
				// (SHA-256, and SHA-512 within Ed25519) per entry.
				b.ReportMetric(float64(size)/1e3/float64(rep.Size), "KB/entry")
				b.ReportMetric(total/b.Elapsed().Seconds(), "entries/s")
				b.ReportMetric(float64(cpu)/1e3/total, "cpu-µs/entry")
			})
		})
	}
}

// floorFile is a versioned metadata file and what checking its
// signatures needs: where its signed part is, or its canonical form when
// the file is not canonical JSON (roots), each signature and key.
type floorFile struct {
	path        string
	size        int
	signed, end int
	canonical   []byte
	sigs, pubs  [][]byte
}

// floorFiles reads every versioned metadata file of a repository, which
// the audit of its log reads once each.
func floorFiles(b *testing.B, dir string) []floorFile {
	type key struct {
		KeyVal struct {
			Public string `json:"public"`
		} `json:"keyval"`
	}
	type envelope struct {
		Signed     json.RawMessage `json:"signed"`
		Signatures []struct {
			KeyID string `json:"keyid"`
			Sig   string `json:"sig"`
		} `json:"signatures"`
	}
	names, err := filepath.Glob(filepath.Join(dir, "[0-9]*.json"))
	if err != nil || len(names) == 0 {
		b.Fatalf("no versioned metadata in %s: %v", dir, err)
	}
	pubs := map[string][]byte{}
	var envs []envelope
	var data [][]byte
	for _, name := range names {
		d, err := os.ReadFile(name)
		if err != nil {
			b.Fatal(err)
		}
		var env envelope
		var signed struct {
			Keys        map[string]key `json:"keys"`
			Delegations struct {
				Keys map[string]key `json:"keys"`
			} `json:"delegations"`
		}
		if err := json.Unmarshal(d, &env); err != nil {
			b.Fatal(err)
		}
		if err := json.Unmarshal(env.Signed, &signed); err != nil {
			b.Fatal(err)
		}
		for _, ks := range []map[string]key{signed.Keys, signed.Delegations.Keys} {
			for id, k := range ks {
				pubs[id], _ = hex.DecodeString(k.KeyVal.Public)
			}
		}
		envs, data = append(envs, env), append(data, d)
	}
	files := make([]floorFile, len(names))
	for i, env := range envs {
		files[i] = floorFile{path: names[i], size: len(data[i])}
		if c, err := cjson.EncodeCanonical(json.RawMessage(env.Signed)); err != nil {
			b.Fatal(err)
		} else if at := bytes.Index(data[i], c); at >= 0 {
			files[i].signed, files[i].end = at, at+len(c)
		} else {
			files[i].canonical = c
		}
		for _, s := range env.Signatures {
			sig, _ := hex.DecodeString(s.Sig)
			pub, ok := pubs[s.KeyID]
			if !ok || len(pub) != ed25519.PublicKeySize {
				b.Fatalf("%s: no Ed25519 key %s", names[i], s.KeyID)
			}
			files[i].sigs, files[i].pubs = append(files[i].sigs, sig), append(files[i].pubs, pub)
		}
	}
	return files
}

// auditFloor does the least any audit must do with each file: read it,
// hash it with SHA-256 to compare with the log, check its JSON and its
// Ed25519 signatures, on every core. It reads no field, compares nothing
// and lists nothing.
func auditFloor(b *testing.B, files []floorFile) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(len(files)); i = next.Add(1) - 1 {
				f := files[i]
				data, err := os.ReadFile(f.path)
				if err != nil {
					b.Error(err)
					return
				}
				sum := sha256.Sum256(data)
				if sum == ([32]byte{}) || !json.Valid(data) {
					b.Errorf("%s: not valid JSON", f.path)
				}
				msg := data[f.signed:f.end]
				if f.canonical != nil {
					msg = f.canonical
				}
				for k := range f.sigs {
					if !ed25519.Verify(f.pubs[k], msg, f.sigs[k]) {
						b.Errorf("%s: signature %d does not verify", f.path, k)
					}
				}
			}
		})
	}
	wg.Wait()
}
