package repo

import (
	"net/http"
	"path"
	"strings"
)

// Cache lifetimes for served files. Everything but timestamp.json is
// write-once under a versioned or hash-prefixed name, so a cache may keep
// it forever; timestamp.json must reach clients within its refresh period.
const (
	immutableCacheControl = "public, max-age=31536000, immutable"
	timestampCacheControl = "public, max-age=60, must-revalidate"
)

// Handler serves a repository kept in a directory, with the cache headers
// that a CDN or mirror in front of it needs. Dot files (temporary files of
// an ongoing publish) are never served.
func Handler(dir string) http.Handler {
	files := http.FileServer(http.Dir(dir))
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			rw.Header().Set("Allow", "GET, HEAD")
			http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		for _, part := range strings.Split(p, "/") {
			if strings.HasPrefix(part, ".") {
				http.NotFound(rw, r)
				return
			}
		}
		if strings.HasSuffix(p, "/") || !strings.Contains(path.Base(p), ".") {
			// No directory listings: clients never need one.
			http.NotFound(rw, r)
			return
		}
		if p == "/metadata/timestamp.json" {
			rw.Header().Set("Cache-Control", timestampCacheControl)
		} else {
			rw.Header().Set("Cache-Control", immutableCacheControl)
		}
		if strings.HasSuffix(p, ".json") {
			rw.Header().Set("Content-Type", "application/json")
		}
		files.ServeHTTP(rw, r)
	})
}
