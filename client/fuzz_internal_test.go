package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// FuzzNormalizeRepositoryURL checks that a repository URL the client
// accepts at init is stable when normalized again, that a directory
// becomes a file URL of that same directory, has a scheme the
// fetcher reads, and, for s3://, names a usable object for every file the
// updater appends to it.
func FuzzNormalizeRepositoryURL(f *testing.F) {
	for _, s := range []string{
		"https://example.com/repo/",
		"http://127.0.0.1:8080",
		"file:///srv/repo",
		"relative/dir",
		"s3://bucket/prefix?endpoint=http://127.0.0.1:7070&region=us-east-1&path-style=true",
		"s3://bucket",
		"s3://user:pw@bucket/p",
		"s3://bucket/../x",
		"ftp://x/y",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		out, err := NormalizeRepositoryURL(raw)
		if err != nil {
			if out != "" {
				t.Fatalf("URL %q returned with an error: %v", out, err)
			}
			return
		}
		if !strings.Contains(raw, "://") {
			// A directory: the URL must lead the fetcher back to it.
			abs, _ := filepath.Abs(raw)
			u, err := url.Parse(out)
			if err != nil || u.Scheme != "file" || u.Path != filepath.ToSlash(abs) {
				t.Fatalf("directory %q became %q, which names another (%v)", raw, out, err)
			}
		}
		again, err := NormalizeRepositoryURL(out)
		if err != nil || again != out {
			t.Fatalf("NormalizeRepositoryURL(%q) = %q, then %q (%v)", raw, out, again, err)
		}
		scheme, _, _ := strings.Cut(out, "://")
		switch scheme {
		case "http", "https", "file":
		case "s3":
			for _, file := range []string{"metadata/timestamp.json", "metadata/2.root.json", "targets/measurements/v1/p/measurements.json"} {
				loc, err := parseS3URL(out + "/" + file)
				if err != nil {
					t.Fatalf("accepted %q, but its %s is not reachable: %v", out, file, err)
				}
				if !strings.HasSuffix(loc.key, file) {
					t.Fatalf("accepted %q, but its %s is object %q", out, file, loc.key)
				}
			}
		default:
			t.Fatalf("accepted %q of scheme %q", out, scheme)
		}
	})
}

// FuzzParseS3URL checks that an s3:// file URL the fetcher accepts names a
// bucket and a clean object key, never one that climbs out of the bucket.
func FuzzParseS3URL(f *testing.F) {
	for _, s := range []string{
		"s3://b/metadata/1.root.json",
		"s3://b/repo/prod/metadata/timestamp.json",
		"s3://b/repo?endpoint=http://127.0.0.1:7070&path-style=true/metadata/1.root.json",
		"s3://b/repo?region=eu/targets/x/y",
		"s3://b/a/../../metadata/1.root.json",
		"s3://b?endpoint=ftp://x/metadata/1.root.json",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		loc, err := parseS3URL(raw)
		if err != nil {
			if loc != nil {
				t.Fatalf("location returned with an error: %v", err)
			}
			return
		}
		if loc.bucket == "" {
			t.Fatalf("accepted %q without a bucket", raw)
		}
		if loc.key == "" || loc.key == ".." || strings.HasPrefix(loc.key, "/") || strings.HasPrefix(loc.key, "../") ||
			filepath.ToSlash(filepath.Clean(loc.key)) != loc.key {
			t.Fatalf("accepted %q with object key %q", raw, loc.key)
		}
	})
}

// fuzzMetadataSeeds returns metadata files of every top-level role, signed
// with a throwaway key, as a repository serves them.
func fuzzMetadataSeeds(f *testing.F) map[string][]byte {
	f.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		f.Fatal(err)
	}
	key, err := tuf.KeyFromPublicKey(priv.Public())
	if err != nil {
		f.Fatal(err)
	}
	expires := time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
	root := tuf.Root(expires)
	for _, role := range []string{tuf.ROOT, tuf.TIMESTAMP, tuf.SNAPSHOT, tuf.TARGETS} {
		if err := root.Signed.AddKey(key, role); err != nil {
			f.Fatal(err)
		}
	}
	targets := tuf.Targets(expires)
	targets.Signed.Targets["measurements/v1/p/measurements.json"] = &tuf.TargetFiles{Length: 3, Hashes: tuf.Hashes{"sha256": make([]byte, 32)}}
	out := map[string][]byte{}
	for name, ToBytes := range map[string]func(bool) ([]byte, error){
		"1.root.json":     root.ToBytes,
		"timestamp.json":  tuf.Timestamp(expires).ToBytes,
		"2.snapshot.json": tuf.Snapshot(expires).ToBytes,
		"3.targets.json":  targets.ToBytes,
	} {
		data, err := ToBytes(false)
		if err != nil {
			f.Fatal(err)
		}
		out[name] = data
	}
	return out
}

// FuzzFetchMetadata serves arbitrary bytes as a repository metadata file
// through the fetcher: it must never panic, must refuse exactly what
// go-tuf's parser refuses, as a MalformedMetadataError naming the role and
// the file, and must hand go-tuf the bytes unchanged otherwise; what
// go-tuf accepts must survive its own ToBytes and FromBytes.
func FuzzFetchMetadata(f *testing.F) {
	names := []string{"1.root.json", "timestamp.json", "2.snapshot.json", "3.targets.json", "4.bins-0a.json"}
	seeds := fuzzMetadataSeeds(f)
	for i, name := range names[:4] {
		f.Add(uint8(i), seeds[name])
	}
	f.Add(uint8(4), seeds["3.targets.json"])
	f.Add(uint8(1), []byte(`{"signed":null,"signatures":[]}`))
	f.Add(uint8(1), []byte("null"))
	f.Add(uint8(2), []byte("\xa3"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, which uint8, data []byte) {
		name := names[int(which)%len(names)]
		role, ok := metadataRole(name)
		if !ok {
			t.Fatalf("metadataRole(%q) is not a role", name)
		}
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		fe := &fetcher{ctx: context.Background(), http: http.DefaultClient, metadataURL: "file://" + filepath.ToSlash(dir)}
		got, err := fe.DownloadFile(fe.metadataURL+"/"+name, 1<<20, time.Minute)
		perr := parseMetadata(role, data)
		if (err == nil) != (perr == nil) {
			t.Fatalf("fetcher error %v, go-tuf parse error %v", err, perr)
		}
		if err != nil {
			var me *MalformedMetadataError
			if !errors.As(err, &me) || me.Role != role || me.File != name {
				t.Fatalf("refused %s with %v, want a MalformedMetadataError naming role %s", name, err, role)
			}
			if got != nil {
				t.Fatal("data returned with an error")
			}
			return
		}
		if string(got) != string(data) {
			t.Fatal("the fetcher changed the file")
		}
		checkMetadataRoundTrip(t, role, data)
	})
}

// checkMetadataRoundTrip re-encodes metadata go-tuf accepted and checks
// that it parses back to the same signed content.
func checkMetadataRoundTrip(t *testing.T, role string, data []byte) {
	t.Helper()
	roundTrip := func(from func([]byte) (any, error), to func(any) ([]byte, error)) {
		m, err := from(data)
		if err != nil {
			t.Fatalf("go-tuf refuses on the second read: %v", err)
		}
		out, err := to(m)
		if err != nil {
			t.Fatalf("accepted %s metadata does not encode: %v", role, err)
		}
		back, err := from(out)
		if err != nil {
			t.Fatalf("re-encoded %s metadata does not parse: %v\n%s", role, err, out)
		}
		if !reflect.DeepEqual(m, back) {
			t.Fatalf("%s metadata changed in the round trip:\n%s", role, out)
		}
	}
	switch role {
	case tuf.ROOT:
		roundTrip(func(b []byte) (any, error) { m, err := tuf.Root().FromBytes(b); return m.Signed, err },
			func(s any) ([]byte, error) { m := tuf.Root(); m.Signed = s.(tuf.RootType); return m.ToBytes(false) })
	case tuf.TIMESTAMP:
		roundTrip(func(b []byte) (any, error) { m, err := tuf.Timestamp().FromBytes(b); return m.Signed, err },
			func(s any) ([]byte, error) {
				m := tuf.Timestamp()
				m.Signed = s.(tuf.TimestampType)
				return m.ToBytes(false)
			})
	case tuf.SNAPSHOT:
		roundTrip(func(b []byte) (any, error) { m, err := tuf.Snapshot().FromBytes(b); return m.Signed, err },
			func(s any) ([]byte, error) {
				m := tuf.Snapshot()
				m.Signed = s.(tuf.SnapshotType)
				return m.ToBytes(false)
			})
	default:
		roundTrip(func(b []byte) (any, error) { m, err := tuf.Targets().FromBytes(b); return m.Signed, err },
			func(s any) ([]byte, error) {
				m := tuf.Targets()
				m.Signed = s.(tuf.TargetsType)
				return m.ToBytes(false)
			})
	}
}
