package repo

import (
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzStorageURL checks the storage URL readers without touching a store:
// an s3:// URL parseS3URL accepts names a bucket and a clean folder, and
// the URL built back from what it read parses to the same location;
// a refused URL's error never shows its password; normalizeStorage is
// stable when applied again and keeps a directory's name.
func FuzzStorageURL(f *testing.F) {
	for _, s := range []string{
		"s3://bucket/prefix",
		"s3://bucket/a/b/?endpoint=http://127.0.0.1:7070&region=us-east-1&path-style=true",
		"s3://bucket",
		"s3://user:secret@bucket/p",
		"s3://bucket/../p",
		"s3://bucket/p?region=&x=1",
		"s3:opaque",
		"file:///srv/repo",
		"relative/dir",
		"file://relative",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if norm, err := normalizeStorage(raw); err == nil {
			again, err := normalizeStorage(norm)
			if err != nil || again != norm {
				t.Fatalf("normalizeStorage(%q) = %q, then %q (%v)", raw, norm, again, err)
			}
			if !strings.Contains(raw, "://") {
				// A directory: OpenStorage must open that same one.
				abs, _ := filepath.Abs(raw)
				u, err := url.Parse(norm)
				if err != nil || u.Scheme != "file" || u.Path != filepath.ToSlash(abs) {
					t.Fatalf("directory %q became %q, which names another (%v)", raw, norm, err)
				}
			}
		}
		u, err := url.Parse(raw)
		if err != nil {
			return
		}
		loc, err := parseS3URL(u)
		if err != nil {
			// A password put in the URL by mistake is never echoed.
			if p, ok := u.User.Password(); ok && p != "" && strings.Contains(err.Error(), p) && !strings.Contains(u.Redacted(), p) {
				t.Fatalf("error shows the password: %v", err)
			}
			return
		}
		if loc.bucket == "" {
			t.Fatalf("accepted %q without a bucket", raw)
		}
		if p := loc.prefix; p != "" {
			folder := strings.TrimSuffix(p, "/")
			if !strings.HasSuffix(p, "/") || path.Clean(folder) != folder || folder == ".." || strings.HasPrefix(folder, "../") || strings.HasPrefix(folder, "/") {
				t.Fatalf("accepted %q with prefix %q", raw, p)
			}
		}
		q := url.Values{}
		if loc.opts.Endpoint != "" {
			q.Set("endpoint", loc.opts.Endpoint)
		}
		if loc.opts.Region != "" {
			q.Set("region", loc.opts.Region)
		}
		if loc.opts.PathStyle {
			q.Set("path-style", "true")
		}
		back := &url.URL{Scheme: "s3", Host: loc.bucket, Path: "/" + loc.prefix, RawQuery: q.Encode()}
		again, err := parseS3URL(back)
		if err != nil || again != loc {
			t.Fatalf("%q read as %+v, rebuilt as %s, read as %+v (%v)", raw, loc, back, again, err)
		}
	})
}
