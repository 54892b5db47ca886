package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// servedRepo is a published repository and the names of a few of its files.
type servedRepo struct {
	*testRepo
	target, targetFile, snapshot string
}

func newServedRepo(t *testing.T) *servedRepo {
	t.Helper()
	r := newTestRepo(t)
	res, err := r.ws.Publish(context.Background(), PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)})
	if err != nil {
		t.Fatal(err)
	}
	pt := res.Targets[0]
	return &servedRepo{
		testRepo:   r,
		target:     pt.Name,
		targetFile: "targets/measurements/v1.0.0/qemu-vtpm/" + pt.SHA256 + ".measurements.json",
		snapshot:   fmt.Sprintf("metadata/%d.snapshot.json", res.SnapshotVersion),
	}
}

func do(t *testing.T, h http.Handler, method, path string, header ...string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func sha(data []byte) string {
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// Handler and StorageHandler serve a repository as an object store
// would, for a CDN in front of them.
func TestHandler(t *testing.T) {
	t.Parallel()
	r := newServedRepo(t)
	t.Run("headers", func(t *testing.T) { testHandlerHeaders(t, r) })
	t.Run("refuses", func(t *testing.T) { testHandlerRefuses(t, r) })
	// Last: it publishes.
	t.Run("conditional and range", func(t *testing.T) { testHandlerConditionalAndRange(t, r) })
}

// Both handlers send what a CDN needs to cache the repository correctly,
// as S3 does for the objects a publish writes.
func testHandlerHeaders(t *testing.T, r *servedRepo) {
	st, err := NewFileStorage(r.storage)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutOnce(context.Background(), "targets/cli/v1/linux-amd64/"+sha([]byte("binary"))+".mtuf", []byte("binary")); err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]http.Handler{"Handler": Handler(r.storage), "StorageHandler": StorageHandler(st)} {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				file, contentType, cacheControl string
			}{
				{"metadata/timestamp.json", "application/json", timestampCacheControl},
				{r.snapshot, "application/json", immutableCacheControl},
				{"metadata/1.root.json", "application/json", immutableCacheControl},
				{r.targetFile, "application/json", immutableCacheControl},
				{"targets/cli/v1/linux-amd64/" + sha([]byte("binary")) + ".mtuf", "application/octet-stream", immutableCacheControl},
			} {
				want, err := os.ReadFile(filepath.Join(r.storage, filepath.FromSlash(tc.file)))
				if err != nil {
					t.Fatal(err)
				}
				resp := do(t, h, http.MethodGet, "/"+tc.file)
				if resp.StatusCode != http.StatusOK || body(t, resp) != string(want) {
					t.Fatalf("GET %s: %s", tc.file, resp.Status)
				}
				for k, v := range map[string]string{
					"Content-Type":   tc.contentType,
					"Cache-Control":  tc.cacheControl,
					"ETag":           `"` + sha(want) + `"`,
					"Accept-Ranges":  "bytes",
					"Content-Length": fmt.Sprint(len(want)),
				} {
					if got := resp.Header.Get(k); got != v {
						t.Errorf("%s: %s = %q, want %q", tc.file, k, got, v)
					}
				}
				head := do(t, h, http.MethodHead, "/"+tc.file)
				if head.StatusCode != http.StatusOK || head.Header.Get("ETag") != resp.Header.Get("ETag") || body(t, head) != "" {
					t.Errorf("HEAD %s: %s, ETag %q", tc.file, head.Status, head.Header.Get("ETag"))
				}
			}
			// timestamp.json is revalidated by ETag only: a date has a
			// resolution of a second, and it can change twice in one.
			if lm := do(t, h, http.MethodGet, "/metadata/timestamp.json").Header.Get("Last-Modified"); lm != "" {
				t.Errorf("timestamp.json has Last-Modified %q", lm)
			}
		})
	}
}

func testHandlerConditionalAndRange(t *testing.T, r *servedRepo) {
	st, err := NewFileStorage(r.storage)
	if err != nil {
		t.Fatal(err)
	}
	content, err := os.ReadFile(filepath.Join(r.storage, filepath.FromSlash(r.targetFile)))
	if err != nil {
		t.Fatal(err)
	}
	etag := `"` + sha(content) + `"`
	for name, h := range map[string]http.Handler{"Handler": Handler(r.storage), "StorageHandler": StorageHandler(st)} {
		t.Run(name, func(t *testing.T) {
			resp := do(t, h, http.MethodGet, "/"+r.targetFile, "If-None-Match", etag)
			if resp.StatusCode != http.StatusNotModified || body(t, resp) != "" {
				t.Errorf("If-None-Match with the current ETag: %s, want 304 and no body", resp.Status)
			}
			if got := resp.Header.Get("ETag"); got != etag {
				t.Errorf("304 ETag = %q, want %q", got, etag)
			}
			resp = do(t, h, http.MethodGet, "/"+r.targetFile, "If-None-Match", `"0000"`)
			if resp.StatusCode != http.StatusOK || body(t, resp) != string(content) {
				t.Errorf("If-None-Match with another ETag: %s, want 200 and the file", resp.Status)
			}

			resp = do(t, h, http.MethodGet, "/"+r.targetFile, "Range", "bytes=10-19")
			if resp.StatusCode != http.StatusPartialContent {
				t.Fatalf("Range: %s, want 206", resp.Status)
			}
			if got := body(t, resp); got != string(content[10:20]) {
				t.Errorf("Range bytes=10-19 = %q, want %q", got, content[10:20])
			}
			if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 10-19/%d", len(content)); got != want {
				t.Errorf("Content-Range = %q, want %q", got, want)
			}
			resp = do(t, h, http.MethodGet, "/"+r.targetFile, "Range", "bytes=-5")
			if got := body(t, resp); resp.StatusCode != http.StatusPartialContent || got != string(content[len(content)-5:]) {
				t.Errorf("Range bytes=-5: %s %q", resp.Status, got)
			}
			// A resumed download of a changed file must not splice two
			// versions: If-Range with an old ETag gets the whole file.
			resp = do(t, h, http.MethodGet, "/"+r.targetFile, "Range", "bytes=10-19", "If-Range", `"0000"`)
			if resp.StatusCode != http.StatusOK || body(t, resp) != string(content) {
				t.Errorf("If-Range with a stale ETag: %s, want 200 and the whole file", resp.Status)
			}
			resp = do(t, h, http.MethodGet, "/"+r.targetFile, "Range", fmt.Sprintf("bytes=%d-", len(content)+10))
			if resp.StatusCode != http.StatusRequestedRangeNotSatisfiable {
				t.Errorf("Range past the end: %s, want 416", resp.Status)
			}
		})
	}

	// timestamp.json's ETag follows its content: a cache revalidating an
	// old copy gets the new one.
	h := Handler(r.storage)
	old := do(t, h, http.MethodGet, "/metadata/timestamp.json").Header.Get("ETag")
	if resp := do(t, h, http.MethodGet, "/metadata/timestamp.json", "If-None-Match", old); resp.StatusCode != http.StatusNotModified {
		t.Fatalf("unchanged timestamp.json revalidated: %s, want 304", resp.Status)
	}
	if _, err := r.ws.Publish(context.Background(), PublishRequest{Measurements: testMeasurements("v2.0.0", "qemu-vtpm", 2)}); err != nil {
		t.Fatal(err)
	}
	resp := do(t, h, http.MethodGet, "/metadata/timestamp.json", "If-None-Match", old)
	now, _ := os.ReadFile(filepath.Join(r.storage, "metadata", "timestamp.json"))
	if resp.StatusCode != http.StatusOK || body(t, resp) != string(now) || resp.Header.Get("ETag") == old {
		t.Errorf("changed timestamp.json revalidated with the old ETag: %s, ETag %q", resp.Status, resp.Header.Get("ETag"))
	}
}

func testHandlerRefuses(t *testing.T, r *servedRepo) {
	// A publish in progress leaves dot files; the lock file is one too.
	if err := os.WriteFile(filepath.Join(r.storage, "metadata", ".tmp-123"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.storage, "notes.txt"), []byte("private"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(r.storage, "metadata", "dir.json"), 0o755); err != nil {
		t.Fatal(err)
	}
	st, err := NewFileStorage(r.storage)
	if err != nil {
		t.Fatal(err)
	}
	for name, h := range map[string]http.Handler{"Handler": Handler(r.storage), "StorageHandler": StorageHandler(st)} {
		t.Run(name, func(t *testing.T) {
			for _, tc := range []struct {
				method, path string
				code         int
			}{
				{http.MethodGet, "/metadata/.tmp-123", http.StatusNotFound},
				{http.MethodGet, "/" + lockFile, http.StatusNotFound},
				{http.MethodGet, "/notes.txt", http.StatusNotFound},
				{http.MethodGet, "/metadata/", http.StatusNotFound},
				{http.MethodGet, "/metadata", http.StatusNotFound},
				{http.MethodGet, "/", http.StatusNotFound},
				{http.MethodGet, "/metadata/9.root.json", http.StatusNotFound},
				{http.MethodGet, "/metadata/../../etc/passwd", http.StatusNotFound},
				{http.MethodPut, "/metadata/timestamp.json", http.StatusMethodNotAllowed},
				{http.MethodPost, "/metadata/timestamp.json", http.StatusMethodNotAllowed},
			} {
				resp := do(t, h, tc.method, tc.path)
				if resp.StatusCode != tc.code {
					t.Errorf("%s %s: %s, want %d", tc.method, tc.path, resp.Status, tc.code)
				}
				if tc.code == http.StatusMethodNotAllowed && resp.Header.Get("Allow") != "GET, HEAD" {
					t.Errorf("%s %s: Allow = %q", tc.method, tc.path, resp.Header.Get("Allow"))
				}
				if b := body(t, resp); strings.Contains(b, "partial") || strings.Contains(b, "private") {
					t.Errorf("%s %s served %q", tc.method, tc.path, b)
				}
			}
		})
	}
	if resp := do(t, Handler(r.storage), http.MethodGet, "/metadata/dir.json"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET of a directory: %s, want 404", resp.Status)
	}
}

func TestTargetNameHash(t *testing.T) {
	t.Parallel()
	h := sha([]byte("x"))
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"targets/measurements/v1/p/" + h + ".measurements.json", true},
		{"targets/" + h + ".x", true},
		{"metadata/" + h + ".x", false},
		{"targets/measurements/v1/p/" + strings.ToUpper(h) + ".m.json", false},
		{"targets/measurements/v1/p/" + h[:60] + ".m.json", false},
		{"targets/" + strings.Repeat("zz", 32) + ".x", false},
		{"targets/" + h, false},
	} {
		got, ok := targetNameHash(tc.name)
		if ok != tc.ok || (ok && got != h) {
			t.Errorf("targetNameHash(%q) = %q, %v; want ok=%v", tc.name, got, ok, tc.ok)
		}
	}
}
