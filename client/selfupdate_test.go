package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/internal/testtool"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/repo"
)

// releaseFixture is a repository with a releases role.
func releaseFixture(t testing.TB) (*fixture, *repo.Workspace) {
	t.Helper()
	dir := t.TempDir()
	k, m := map[string]string{}, keys.Memory{}
	for _, n := range []string{"root", "targets", "online", "ci", "releases"} {
		k[n] = newTestKey(t, m, n+"-test")
	}
	one := func(n string) repo.RoleKeys { return repo.RoleKeys{Keys: []string{k[n]}, Threshold: 1} }
	repoDir := filepath.Join(dir, "repo")
	ws, err := repo.Init(context.Background(), filepath.Join(dir, "ws"), repo.InitConfig{
		Storage: repoDir, Root: one("root"), Targets: one("targets"), Snapshot: one("online"), Timestamp: one("online"),
		Measurements: one("ci"), Releases: one("releases"), MeasurementsBins: 2, ReleasesBins: 2,
	}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := os.ReadFile(filepath.Join(repoDir, "metadata", "1.root.json"))
	return &fixture{dir: dir, repoDir: repoDir, ws: ws, root: root}, ws
}

func publishRelease(t testing.TB, ws *repo.Workspace, version string, bin []byte) {
	t.Helper()
	if _, err := ws.Publish(context.Background(), repo.PublishRequest{Release: &repo.Release{Binary: bin, Version: version, OS: runtime.GOOS, Arch: runtime.GOARCH}}); err != nil {
		t.Fatal(err)
	}
}

func TestSelfUpdate(t *testing.T) {
	t.Parallel()
	f, ws := releaseFixture(t)
	publishRelease(t, ws, "v1.0.0", []byte("release 1.0.0"))
	publishRelease(t, ws, "v1.1.0", []byte("release 1.1.0"))
	srv := httptest.NewServer(repo.Handler(f.repoDir))
	defer srv.Close()
	c, _ := f.client(t, srv.URL)
	bin := filepath.Join(t.TempDir(), "mtuf")
	os.WriteFile(bin, []byte("running 1.0.0"), 0o750)

	for _, running := range []string{"v1.1.0", "v2.0.0"} {
		if _, err := c.SelfUpdate(context.Background(), client.SelfUpdateOptions{Running: running, Binary: bin}); !errors.Is(err, client.ErrNotNewer) {
			t.Errorf("running %s: %v, want ErrNotNewer", running, err)
		}
	}
	if _, err := c.SelfUpdate(context.Background(), client.SelfUpdateOptions{Running: "dev", Binary: bin}); err == nil || !strings.Contains(err.Error(), "development build") {
		t.Errorf("dev build: %v", err)
	}
	var last int64
	rel, err := c.SelfUpdate(context.Background(), client.SelfUpdateOptions{Running: "v1.0.0", Binary: bin, Progress: func(done, total int64) { last = done }})
	if err != nil {
		t.Fatal(err)
	}
	if rel.Version != "v1.1.0" || last != int64(len("release 1.1.0")) {
		t.Errorf("release %+v, progress %d", rel, last)
	}
	if got, _ := os.ReadFile(bin); string(got) != "release 1.1.0" {
		t.Errorf("binary = %q", got)
	}
	if got, _ := os.ReadFile(bin + ".old"); string(got) != "running 1.0.0" {
		t.Errorf("previous binary = %q", got)
	}
	if fi, _ := os.Stat(bin); fi.Mode().Perm() != 0o750 {
		t.Errorf("mode %v", fi.Mode())
	}
}

func TestSelfUpdateRefusesTamperedRelease(t *testing.T) {
	t.Parallel()
	f, ws := releaseFixture(t)
	publishRelease(t, ws, "v1.1.0", []byte("release 1.1.0"))
	srv := httptest.NewServer(repo.Handler(f.repoDir))
	defer srv.Close()
	files, _ := filepath.Glob(filepath.Join(f.repoDir, "targets", "cli", "v1.1.0", "*", "*.mtuf"))
	if len(files) != 1 {
		t.Fatalf("release files %v", files)
	}
	for name, content := range map[string][]byte{"same length": []byte("RELEASE 1.1.0"), "longer": []byte("release 1.1.0 and more")} {
		t.Run(name, func(t *testing.T) {
			os.WriteFile(files[0], content, 0o644)
			c, _ := f.client(t, srv.URL)
			dir := t.TempDir()
			bin := filepath.Join(dir, "mtuf")
			os.WriteFile(bin, []byte("running"), 0o755)
			_, err := c.SelfUpdate(context.Background(), client.SelfUpdateOptions{Running: "v1.0.0", Binary: bin})
			if !errors.Is(err, client.ErrUntrusted) {
				t.Fatalf("err = %v, want ErrUntrusted", err)
			}
			if got, _ := os.ReadFile(bin); string(got) != "running" {
				t.Errorf("binary replaced by a tampered release: %q", got)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("left behind: %v", entries)
			}
		})
	}
}

// benchReleaseSize is the size of the release BenchmarkSelfUpdateRSS
// downloads: 1 GiB, or $MTUF_RSS_SIZE_MB.
var benchReleaseSize = func() int {
	if mb, err := strconv.Atoi(os.Getenv("MTUF_RSS_SIZE_MB")); err == nil && mb > 0 {
		return mb << 20
	}
	return 1 << 30
}()

// BenchmarkSelfUpdateRSS measures the peak memory of a process that
// downloads a 1 GB release: mtuf's streaming self-update against go-tuf's
// DownloadTarget, which holds the whole target in memory. Each runs in a
// child process so that its peak RSS is its own.
func BenchmarkSelfUpdateRSS(b *testing.B) {
	f, ws := releaseFixture(b)
	big := bytes.Repeat([]byte("0123456789abcdef"), benchReleaseSize/16)
	publishRelease(b, ws, "v9.0.0", big)
	big = nil
	runtime.GC()
	srv := httptest.NewServer(repo.Handler(f.repoDir))
	defer srv.Close()
	rootFile := filepath.Join(f.dir, "root.json")
	os.WriteFile(rootFile, f.root, 0o644)
	for _, mode := range []string{"mtuf-stream", "go-tuf-DownloadTarget"} {
		b.Run(mode, func(b *testing.B) {
			var rss int64
			for b.Loop() {
				cmd := exec.Command(os.Args[0], "-test.run=^TestSelfUpdateRSSChild$", "-test.v")
				cmd.Env = append(os.Environ(), "MTUF_RSS_CHILD="+mode, "MTUF_RSS_REPO="+srv.URL, "MTUF_RSS_ROOT="+rootFile, "MTUF_RSS_DIR="+b.TempDir())
				out, err := cmd.CombinedOutput()
				if err != nil {
					b.Fatalf("%s: %v\n%s", mode, err, out)
				}
				i := bytes.Index(out, []byte("maxrss-kb "))
				if i < 0 {
					b.Fatalf("no maxrss in\n%s", out)
				}
				fields := strings.Fields(string(out[i:]))
				kb, _ := strconv.ParseInt(fields[1], 10, 64)
				rss = kb * 1024
			}
			b.ReportMetric(float64(rss)/(1<<20), "peak-RSS-MiB")
		})
	}
}

// TestSelfUpdateRSSChild is the child of BenchmarkSelfUpdateRSS; it does
// nothing in a normal test run.
func TestSelfUpdateRSSChild(t *testing.T) {
	mode := os.Getenv("MTUF_RSS_CHILD")
	if mode == "" {
		return
	}
	repoURL, dir := os.Getenv("MTUF_RSS_REPO"), os.Getenv("MTUF_RSS_DIR")
	root, err := os.ReadFile(os.Getenv("MTUF_RSS_ROOT"))
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("cli/v9.0.0/%s-%s/mtuf", runtime.GOOS, runtime.GOARCH)
	switch mode {
	case "mtuf-stream":
		c, err := client.Init(filepath.Join(dir, "state"), repoURL, root)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.SelfUpdate(context.Background(), client.SelfUpdateOptions{Running: "v1.0.0", Binary: filepath.Join(dir, "mtuf")}); err != nil {
			t.Fatal(err)
		}
	default:
		cfg, _ := config.New(repoURL+"/metadata", root)
		cfg.RemoteTargetsURL = repoURL + "/targets"
		cfg.LocalMetadataDir = filepath.Join(dir, "md")
		cfg.LocalTargetsDir = filepath.Join(dir, "t")
		up, err := updater.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ti, err := up.GetTargetInfo(name)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := up.DownloadTarget(ti, filepath.Join(dir, "mtuf"), ""); err != nil {
			t.Fatal(err)
		}
	}
	// VmHWM is this process's own peak; getrusage's maxrss would carry
	// over the parent's peak from before the fork.
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			fmt.Printf("maxrss-kb %s\n", strings.TrimSuffix(strings.TrimSpace(v), " kB"))
		}
	}
}

// BenchmarkSelfUpdateVsCurl times 'mtuf client update --self' of a
// release (1 GiB, or $MTUF_RSS_SIZE_MB) served over loopback HTTP against
// what a user without mtuf would do with the same file from the same
// server in the same run: curl -o FILE, then sha256sum FILE. Both run as
// real programs under /usr/bin/time, which reports each one's peak RSS.
// Each iteration runs both; the metrics are those of the last one.
func BenchmarkSelfUpdateVsCurl(b *testing.B) {
	timeBin := testtool.Find(b, "time", "apt-get install time")
	curl := testtool.Find(b, "curl", "apt-get install curl")
	sha256sum := testtool.Find(b, "sha256sum", "apt-get install coreutils")
	goBin := testtool.Find(b, "go", "the Go toolchain")
	root, err := testtool.ModuleRoot()
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	// The mtuf that updates: a release build of v1.0.0.
	mtuf := filepath.Join(dir, "mtuf-v1.0.0")
	build := exec.Command(goBin, "build", "-ldflags", "-X github.com/mtuf/mtuf/internal/mtufcmd.Version=v1.0.0", "-o", mtuf, "./cmd/mtuf")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}

	f, ws := releaseFixture(b)
	big := bytes.Repeat([]byte("0123456789abcdef"), benchReleaseSize/16)
	publishRelease(b, ws, "v9.0.0", big)
	sum := sha256.Sum256(big)
	want := hex.EncodeToString(sum[:])
	big = nil
	runtime.GC()
	srv := httptest.NewServer(repo.Handler(f.repoDir))
	defer srv.Close()
	file := fmt.Sprintf("%s.mtuf", want)
	url := fmt.Sprintf("%s/targets/cli/v9.0.0/%s-%s/%s", srv.URL, runtime.GOOS, runtime.GOARCH, file)

	// timed runs a program under /usr/bin/time and returns its wall
	// time, CPU time (user and system; the steadier figure on a shared
	// machine) and peak RSS.
	type usage struct {
		wall, cpu time.Duration
		rss       int64
	}
	timed := func(args ...string) usage {
		b.Helper()
		report := filepath.Join(dir, "usage")
		cmd := exec.Command(timeBin, append([]string{"-o", report, "-f", "%M %U %S"}, args...)...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		elapsed := time.Since(start)
		if err != nil {
			b.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		data, err := os.ReadFile(report)
		if err != nil {
			b.Fatal(err)
		}
		var kb int64
		var user, sys float64
		if _, err := fmt.Sscanf(string(data), "%d %f %f", &kb, &user, &sys); err != nil {
			b.Fatalf("/usr/bin/time: %q: %v", data, err)
		}
		if args[0] == sha256sum && !strings.HasPrefix(string(out), want) {
			b.Fatalf("sha256sum: %s, want %s", out, want)
		}
		return usage{wall: elapsed, cpu: time.Duration((user + sys) * float64(time.Second)), rss: kb << 10}
	}
	var base, self usage
	for b.Loop() {
		out := filepath.Join(dir, "curl-out")
		dl := timed(curl, "-sSfo", out, url)
		hash := timed(sha256sum, out)
		os.Remove(out)
		base = usage{wall: dl.wall + hash.wall, cpu: dl.cpu + hash.cpu, rss: max(dl.rss, hash.rss)}

		state, bin := filepath.Join(dir, "state"), filepath.Join(dir, "bin", "mtuf")
		os.RemoveAll(state)
		os.RemoveAll(filepath.Dir(bin))
		os.MkdirAll(filepath.Dir(bin), 0o755)
		if _, err := client.Init(state, srv.URL, f.root); err != nil {
			b.Fatal(err)
		}
		if err := copyFile(mtuf, bin); err != nil {
			b.Fatal(err)
		}
		self = timed(bin, "client", "update", "--self", "--state", state)
		if fi, err := os.Stat(bin); err != nil || fi.Size() != int64(benchReleaseSize) {
			b.Fatalf("after the update: %v, %v", fi, err)
		}
		b.Logf("curl %v + sha256sum %v (CPU %v + %v); update --self %v (CPU %v)", dl.wall, hash.wall, dl.cpu, hash.cpu, self.wall, self.cpu)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(base.wall.Seconds(), "curl+sha256sum-s")
	b.ReportMetric(self.wall.Seconds(), "update-self-s")
	b.ReportMetric(self.wall.Seconds()/base.wall.Seconds(), "time-ratio")
	b.ReportMetric(base.cpu.Seconds(), "curl+sha256sum-cpu-s")
	b.ReportMetric(self.cpu.Seconds(), "update-self-cpu-s")
	b.ReportMetric(float64(base.rss)/(1<<20), "curl+sha256sum-peak-RSS-MiB")
	b.ReportMetric(float64(self.rss)/(1<<20), "update-self-peak-RSS-MiB")
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o755)
}
