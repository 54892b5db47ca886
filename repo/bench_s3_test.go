package repo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/fetcher"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/internal/s3test"
)

// BenchmarkS3 measures the repository on S3-compatible object storage
// (versitygw on loopback) beside the same repository in a directory, at
// 10,000 measurement targets:
//
//	publish-one/backend=file|s3   the time to publish one more target
//	fresh/backend=file            a new client fetching one target over HTTP from 'repo serve'
//	fresh/backend=s3-http         the same over plain HTTP from the bucket (a website endpoint or CDN origin)
//	fresh/backend=s3-api          the same with the S3 API (GetObject), as 'mtuf client' does for s3:// URLs
//
// with the requests and bytes each fetch takes. It skips when versitygw is
// not installed (and fails under CI=true); run it with
//
//	go test -run '^$' -bench BenchmarkS3 -benchtime 10x ./repo/
func BenchmarkS3(b *testing.B) {
	const n = 10000
	srv := s3test.Start(b)
	srv.Setenv(b)
	ctx := context.Background()
	name := benchTarget(n / 2).Name

	// The bucket gets a copy of the directory repository, built once.
	var once sync.Once
	var s3st *S3Storage
	var root []byte
	s3repo := func(b *testing.B) (*S3Storage, []byte) {
		once.Do(func() {
			dir := strings.TrimPrefix(mtufRepo(b, n).Config.Storage, "file://")
			st, err := OpenStorage(ctx, srv.URL("bench"))
			if err != nil {
				b.Fatal(err)
			}
			s3st = st.(*S3Storage)
			start := time.Now()
			if err := uploadDir(ctx, dir, s3st); err != nil {
				b.Fatal(err)
			}
			b.Logf("uploaded the %d-target repository to the bucket in %v", n, time.Since(start).Round(time.Millisecond))
			if err := srv.SetReadPolicy(ctx, "bench", []string{s3test.Anyone}); err != nil {
				b.Fatal(err)
			}
			if root, err = s3st.Get(ctx, "metadata/1.root.json"); err != nil {
				b.Fatal(err)
			}
		})
		if s3st == nil {
			b.Fatal("the bucket repository could not be built")
		}
		return s3st, root
	}

	for _, backend := range []string{"file", "s3"} {
		b.Run(fmt.Sprintf("publish-one/backend=%s/targets=%d", backend, n), func(b *testing.B) {
			ws := mtufRepo(b, n)
			if backend == "s3" {
				ws.Storage, _ = s3repo(b)
			}
			// Unlock the keys first, as BenchmarkPublishOne does.
			if _, err := ws.Publish(ctx, PublishRequest{Targets: []Target{benchTarget(n + 3000000)}}); err != nil {
				b.Fatal(err)
			}
			i := 0
			for b.Loop() {
				i++
				if _, err := ws.Publish(ctx, PublishRequest{Targets: []Target{benchTarget(n + 4000000 + i)}}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}

	b.Run(fmt.Sprintf("fresh/backend=file/targets=%d", n), func(b *testing.B) {
		dir := strings.TrimPrefix(mtufRepo(b, n).Config.Storage, "file://")
		rootFile, err := os.ReadFile(filepath.Join(dir, "metadata", "1.root.json"))
		if err != nil {
			b.Fatal(err)
		}
		hs := httptest.NewServer(Handler(dir))
		defer hs.Close()
		benchFresh(b, rootFile, name, hs.URL, nil)
	})
	b.Run(fmt.Sprintf("fresh/backend=s3-http/targets=%d", n), func(b *testing.B) {
		_, root := s3repo(b)
		benchFresh(b, root, name, srv.HTTPURL("bench"), nil)
	})
	b.Run(fmt.Sprintf("fresh/backend=s3-api/targets=%d", n), func(b *testing.B) {
		st, root := s3repo(b)
		benchFresh(b, root, name, "", st)
	})
}

// benchFresh fetches one target with a new go-tuf updater per iteration,
// over HTTP from base, or with the S3 API from st, and reports the
// requests and bytes of the last fetch.
func benchFresh(b *testing.B, root []byte, name, base string, st *S3Storage) {
	var reqs, bytes atomic.Int64
	var f fetcher.Fetcher
	if st != nil {
		base = "s3api://repo"
		f = &storageFetcher{ctx: context.Background(), st: st, base: base, reqs: &reqs, bytes: &bytes}
	} else {
		df := fetcher.NewDefaultFetcher()
		df.SetHTTPClient(&http.Client{Transport: &countingTransport{next: http.DefaultTransport, reqs: &reqs, bytes: &bytes}})
		f = df
	}
	var lastReqs, lastBytes int64
	for b.Loop() {
		reqs.Store(0)
		bytes.Store(0)
		cfg, err := config.New(base+"/metadata", root)
		if err != nil {
			b.Fatal(err)
		}
		cfg.RemoteTargetsURL = base + "/targets"
		cfg.DisableLocalCache = true
		cfg.Fetcher = f
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
		if _, _, err := up.DownloadTarget(ti, "", ""); err != nil {
			b.Fatal(err)
		}
		lastReqs, lastBytes = reqs.Load(), bytes.Load()
	}
	b.ReportMetric(float64(lastReqs), "requests")
	b.ReportMetric(float64(lastBytes), "bytes-fetched")
}

// countingTransport counts requests and the response bytes read.
type countingTransport struct {
	next        http.RoundTripper
	reqs, bytes *atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.reqs.Add(1)
	resp, err := c.next.RoundTrip(r)
	if err == nil {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: c.bytes}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// storageFetcher is a go-tuf fetcher that reads with S3 GetObject, as a
// client given an s3:// repository URL does.
type storageFetcher struct {
	ctx         context.Context
	st          *S3Storage
	base        string
	reqs, bytes *atomic.Int64
}

func (s *storageFetcher) DownloadFile(u string, maxLength int64, _ time.Duration) ([]byte, error) {
	s.reqs.Add(1)
	name := strings.TrimPrefix(u, s.base+"/")
	data, err := s.st.getLimited(s.ctx, name, maxLength)
	if errors.Is(err, ErrNotFound) {
		return nil, &tuf.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: u}
	}
	s.bytes.Add(int64(len(data)))
	return data, err
}

// uploadDir copies a repository directory into st, eight objects at a
// time.
func uploadDir(ctx context.Context, dir string, st Storage) error {
	names := make(chan string)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for name := range names {
				data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
				if err == nil {
					err = st.PutOnce(ctx, name, data)
				}
				if err != nil {
					errs <- err
					for range names {
					}
					return
				}
			}
		})
	}
	walkErr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		names <- filepath.ToSlash(rel)
		return nil
	})
	close(names)
	wg.Wait()
	close(errs)
	if walkErr != nil {
		return walkErr
	}
	return <-errs
}
