package repo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/mtuf/mtuf/translog"
)

// Cache lifetimes for served files. Everything but timestamp.json is
// write-once under a versioned or hash-prefixed name, so a cache may keep
// it forever; timestamp.json must reach clients within its refresh period.
const (
	immutableCacheControl = "public, max-age=31536000, immutable"
	timestampCacheControl = "public, max-age=60, must-revalidate"
)

const timestampName = "metadata/timestamp.json"

// Handler serves a repository kept in a directory the way an object store
// serves a bucket, so that a CDN or mirror in front of it behaves as it
// would in front of S3: Cache-Control and Content-Type per file, a strong
// ETag, conditional requests (If-None-Match, If-Modified-Since) and byte
// ranges. Dot files (temporary files of an ongoing publish, the publish
// lock) and directory listings are never served.
func Handler(dir string) http.Handler {
	return handler(func(_ context.Context, name string) (io.ReadSeeker, string, time.Time, func(), error) {
		f, err := os.Open(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			return nil, "", time.Time{}, nil, err
		}
		fi, err := f.Stat()
		if err == nil && !fi.Mode().IsRegular() {
			err = fs.ErrNotExist
		}
		var etag string
		if err == nil {
			etag, err = fileETag(name, f)
		}
		if err != nil {
			f.Close()
			return nil, "", time.Time{}, nil, err
		}
		return f, etag, fi.ModTime(), func() { f.Close() }, nil
	})
}

// StorageHandler serves a repository from any Storage, such as a bucket,
// with the same headers as Handler. Each file is read whole from the
// storage, so it suits metadata and modest targets; a repository with
// large targets is better served by the object store or a CDN itself.
func StorageHandler(st Storage) http.Handler {
	return handler(func(ctx context.Context, name string) (io.ReadSeeker, string, time.Time, func(), error) {
		data, err := st.Get(ctx, name)
		if errors.Is(err, ErrNotFound) {
			err = fs.ErrNotExist
		}
		if err != nil {
			return nil, "", time.Time{}, nil, err
		}
		etag, err := fileETag(name, bytes.NewReader(data))
		if err != nil {
			return nil, "", time.Time{}, nil, err
		}
		return bytes.NewReader(data), etag, time.Time{}, func() {}, nil
	})
}

// opener opens a repository file for serving: its content, strong ETag,
// modification time (zero if unknown) and a function to release it.
type opener func(ctx context.Context, name string) (content io.ReadSeeker, etag string, modtime time.Time, done func(), err error)

func handler(open opener) http.Handler {
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			rw.Header().Set("Allow", "GET, HEAD")
			http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		name, ok := servedName(r.URL.Path)
		if !ok {
			http.NotFound(rw, r)
			return
		}
		content, etag, modtime, done, err := open(r.Context(), name)
		if errors.Is(err, fs.ErrNotExist) {
			http.NotFound(rw, r)
			return
		}
		if err != nil {
			http.Error(rw, "cannot read "+name, http.StatusInternalServerError)
			return
		}
		defer done()
		h := rw.Header()
		h.Set("Cache-Control", cacheControl(name))
		h.Set("Content-Type", contentType(name))
		h.Set("ETag", etag)
		if name == timestampName || name == translog.CheckpointPath {
			// Last-Modified has a resolution of one second, and
			// timestamp.json can be replaced twice within one: a cache
			// that revalidated by date could keep a stale one. It
			// revalidates by ETag instead.
			modtime = time.Time{}
		}
		// ServeContent answers If-None-Match with 304, Range with 206,
		// and an unsatisfiable range with 416.
		http.ServeContent(rw, r, path.Base(name), modtime, content)
	})
}

// servedName turns a request path into a repository file name, refusing
// dot files, directories and anything outside the repository.
func servedName(urlPath string) (string, bool) {
	p := path.Clean("/" + urlPath)
	if strings.HasSuffix(urlPath, "/") || p == "/" {
		return "", false
	}
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, ".") {
			return "", false
		}
	}
	name := strings.TrimPrefix(p, "/")
	// Clients only ever fetch metadata/*.json, targets/... and the
	// transparency log's checkpoint and tiles (names without dots);
	// anything else (the workspace file of a careless setup, say) is not
	// served.
	if strings.HasPrefix(name, translog.Dir) {
		return name, true
	}
	if !strings.HasPrefix(name, "metadata/") && !strings.HasPrefix(name, "targets/") {
		return "", false
	}
	if !strings.Contains(path.Base(name), ".") {
		return "", false
	}
	return name, true
}

// fileETag is a strong ETag for a repository file: for a hash-prefixed
// target file the SHA-256 in its name (so a large binary is not read to
// serve a 304), else the SHA-256 of its content.
func fileETag(name string, content io.ReadSeeker) (string, error) {
	if h, ok := targetNameHash(name); ok {
		return `"` + h + `"`, nil
	}
	sum := sha256.New()
	if _, err := io.Copy(sum, content); err != nil {
		return "", err
	}
	if _, err := content.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	return `"` + hex.EncodeToString(sum.Sum(nil)) + `"`, nil
}

// targetNameHash returns the SHA-256 prefix of a target file's name,
// targets/<dir>/<sha256>.<name>.
func targetNameHash(name string) (string, bool) {
	if !strings.HasPrefix(name, "targets/") {
		return "", false
	}
	h, _, ok := strings.Cut(path.Base(name), ".")
	if !ok || len(h) != sha256.Size*2 {
		return "", false
	}
	if _, err := hex.DecodeString(h); err != nil || strings.ToLower(h) != h {
		return "", false
	}
	return h, true
}
