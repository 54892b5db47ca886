package repo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/internal/s3test"
	"github.com/mtuf/mtuf/internal/tuftest"
	"github.com/mtuf/mtuf/keys"
)

// mirrorSourceRepo is a published repository to mirror from.
func mirrorSourceRepo(t *testing.T) (*testRepo, []byte) {
	t.Helper()
	r := newTestRepo(t)
	if _, err := r.ws.Publish(context.Background(), PublishRequest{
		Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1),
		Release:      &Release{Binary: []byte("mtuf binary v1"), Version: "v1.0.0", OS: "linux", Arch: "amd64"},
	}); err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(r.storage, "metadata", "1.root.json"))
	if err != nil {
		t.Fatal(err)
	}
	return r, root
}

// listFiles returns every file under dir (but dot files) with its content.
func listFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".") {
			return err
		}
		data, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		out[filepath.ToSlash(rel)] = string(data)
		return err
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	return out
}

func TestMirrorFileToFile(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, root := mirrorSourceRepo(t)
	dstDir := filepath.Join(t.TempDir(), "mirror")
	dst, err := NewFileStorage(dstDir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Mirror(ctx, r.storage, dst, MirrorOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	// 1 root, targets, 2 delegated roles, 16+4 bins, snapshot, timestamp;
	// measurements, binary and its signature.
	if res.Roles != 1+2+16+4 || res.Targets != 3 || res.TargetsCopied != 3 || res.MetadataCopied != 1+23+2 || res.Present != 0 {
		t.Errorf("first mirror: %+v", res)
	}
	if res.TimestampVersion != 2 || res.SnapshotVersion != 2 || res.BytesCopied == 0 {
		t.Errorf("first mirror: %+v", res)
	}
	// The mirror holds what clients need of the source: its current
	// state, not the superseded versions of bins and snapshots.
	src, got := listFiles(t, r.storage), listFiles(t, dstDir)
	for name, data := range got {
		if src[name] != data {
			t.Errorf("mirror's %s differs from the source's", name)
		}
	}
	for _, name := range []string{"metadata/timestamp.json", "metadata/2.snapshot.json", "metadata/1.root.json", "metadata/1.targets.json"} {
		if _, ok := got[name]; !ok {
			t.Errorf("mirror lacks %s", name)
		}
	}
	if _, ok := got["metadata/1.snapshot.json"]; ok {
		t.Error("mirror copied a superseded snapshot")
	}
	if m := fetch(t, dstDir, "measurements/v1.0.0/qemu-vtpm/measurements.json"); m == nil {
		t.Error("a client of the mirror does not get the measurements")
	}
	if b := fetch(t, dstDir, "cli/v1.0.0/linux-amd64/mtuf"); string(b) != "mtuf binary v1" {
		t.Errorf("a client of the mirror gets binary %q", b)
	}

	// Again: nothing to copy.
	res, err = Mirror(ctx, r.storage, dst, MirrorOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.MetadataCopied != 0 || res.TargetsCopied != 0 || res.BytesCopied != 0 || res.Present != len(got) {
		t.Errorf("second mirror copied something: %+v (mirror holds %d files)", res, len(got))
	}

	// After a publish, only what changed: the target, its bin, snapshot
	// and timestamp.
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v2.0.0", "qemu-vtpm", 2)}); err != nil {
		t.Fatal(err)
	}
	res, err = Mirror(ctx, r.storage, dst, MirrorOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.TargetsCopied != 1 || res.MetadataCopied != 3 || res.TimestampVersion != 3 {
		t.Errorf("mirror after a publish: %+v, want 1 target and 3 metadata files", res)
	}
	if fetch(t, dstDir, "measurements/v2.0.0/qemu-vtpm/measurements.json") == nil {
		t.Error("a client of the mirror does not get the new measurements")
	}
}

// A CDN origin in a bucket, filled from the repository's HTTP endpoint.
func TestMirrorHTTPToS3(t *testing.T) {
	ctx := context.Background()
	r, root := mirrorSourceRepo(t)
	src := httptest.NewServer(Handler(r.storage))
	defer src.Close()
	srv := s3test.Start(t)
	dst := openS3(t, srv, "cdn/origin")
	if err := srv.SetReadPolicy(ctx, "cdn/origin", []string{s3test.Anyone}); err != nil {
		t.Fatal(err)
	}
	res, err := Mirror(ctx, src.URL, dst, MirrorOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.TargetsCopied != 3 || res.MetadataCopied != 26 {
		t.Errorf("mirror to a bucket: %+v", res)
	}
	if b := fetchFrom(t, srv.HTTPURL("cdn/origin"), root, "cli/v1.0.0/linux-amd64/mtuf"); string(b) != "mtuf binary v1" {
		t.Errorf("a client of the bucket gets binary %q", b)
	}
	res, err = Mirror(ctx, src.URL, dst, MirrorOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if res.MetadataCopied != 0 || res.TargetsCopied != 0 || res.Present != 29 {
		t.Errorf("second mirror to a bucket: %+v", res)
	}
	// The bucket mirrored on to a directory, read with the S3 API.
	dir := filepath.Join(t.TempDir(), "air-gapped")
	dst2, err := NewFileStorage(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Mirror(ctx, srv.URL("cdn/origin"), dst2, MirrorOptions{Root: root}); err != nil {
		t.Fatalf("mirror from the bucket: %v", err)
	}
	if fetch(t, dir, "measurements/v1.0.0/qemu-vtpm/measurements.json") == nil {
		t.Error("a client of the second mirror does not get the measurements")
	}
}

// foreignRoot is a valid root of some other repository.
func foreignRoot(t *testing.T) []byte {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := keys.Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	key, err := keys.TUFKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	root := tuf.Root(time.Now().Add(24 * time.Hour))
	root.Signed.ConsistentSnapshot = true
	for _, r := range []string{tuf.ROOT, tuf.TARGETS, tuf.SNAPSHOT, tuf.TIMESTAMP} {
		if err := root.Signed.AddKey(key, r); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := root.Sign(signer); err != nil {
		t.Fatal(err)
	}
	data, err := root.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// A source that fails any client check is refused, and the destination is
// left as it was.
func TestMirrorRefusesBadSource(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, root := mirrorSourceRepo(t)
	for _, tc := range []struct {
		name      string
		tamper    func(t *testing.T, dir string) (anchor []byte, now time.Time)
		untrusted bool
		want      string
	}{
		{
			name: "tampered target",
			tamper: func(t *testing.T, dir string) ([]byte, time.Time) {
				m, _ := filepath.Glob(filepath.Join(dir, "targets/cli/v1.0.0/linux-amd64/*.mtuf"))
				if len(m) != 1 {
					t.Fatalf("binary files: %v", m)
				}
				os.WriteFile(m[0], []byte("mtuf binary v6"), 0o644) // same length
				return root, time.Time{}
			},
			untrusted: true, want: "hash verification failed",
		},
		{
			name: "tampered bin",
			tamper: func(t *testing.T, dir string) ([]byte, time.Time) {
				// A bin changed without its key no longer has the hash
				// the snapshot signs for it.
				snap := readMeta[tuf.SnapshotType](t, r.ws.Storage, "metadata/2.snapshot.json")
				for file, meta := range snap.Signed.Meta {
					if meta.Version == 2 && strings.HasPrefix(file, "measurements-bin-") {
						p := filepath.Join(dir, "metadata", "2."+file)
						data, _ := os.ReadFile(p)
						os.WriteFile(p, bytes.Replace(data, []byte(`"version":2`), []byte(`"version":2,"x":1`), 1), 0o644)
						return root, time.Time{}
					}
				}
				t.Fatal("no bin at version 2")
				return nil, time.Time{}
			},
			untrusted: true, want: "measurements-bin-",
		},
		{
			name: "expired timestamp (freeze)",
			tamper: func(t *testing.T, dir string) ([]byte, time.Time) {
				return root, time.Now().Add(48 * time.Hour)
			},
			untrusted: true, want: "timestamp",
		},
		{
			name: "another repository's root",
			tamper: func(t *testing.T, dir string) ([]byte, time.Time) {
				return foreignRoot(t), time.Time{}
			},
			untrusted: true, want: "metadata/timestamp.json",
		},
		{
			name: "missing snapshot",
			tamper: func(t *testing.T, dir string) ([]byte, time.Time) {
				os.Remove(filepath.Join(dir, "metadata", "2.snapshot.json"))
				return root, time.Time{}
			},
			want: "lacks metadata/2.snapshot.json",
		},
		{
			name: "not a root",
			tamper: func(t *testing.T, dir string) ([]byte, time.Time) {
				return []byte(`{"signed":{}}`), time.Time{}
			},
			want: "not root metadata signed by its own keys",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "source")
			if err := os.CopyFS(src, os.DirFS(r.storage)); err != nil {
				t.Fatal(err)
			}
			anchor, now := tc.tamper(t, src)
			dstDir := filepath.Join(t.TempDir(), "mirror")
			dst, err := NewFileStorage(dstDir)
			if err != nil {
				t.Fatal(err)
			}
			opts := MirrorOptions{Root: anchor}
			if !now.IsZero() {
				opts.Now = func() time.Time { return now }
			}
			_, err = Mirror(ctx, src, dst, opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to say %q", err, tc.want)
			}
			if errors.Is(err, ErrUntrustedSource) != tc.untrusted {
				t.Errorf("errors.Is(err, ErrUntrustedSource) = %v, want %v: %v", !tc.untrusted, tc.untrusted, err)
			}
			if files := listFiles(t, dstDir); len(files) != 0 {
				t.Errorf("a refused mirror wrote %d files", len(files))
			}
		})
	}
}

// A destination that holds another state than the source's is refused:
// a newer one is not rolled back, and a different file under a write-once
// name is not overwritten.
func TestMirrorRefusesDestination(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, root := mirrorSourceRepo(t)
	old := filepath.Join(t.TempDir(), "old-source")
	if err := os.CopyFS(old, os.DirFS(r.storage)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v2.0.0", "qemu-vtpm", 2)}); err != nil {
		t.Fatal(err)
	}
	dstDir := filepath.Join(t.TempDir(), "mirror")
	dst, _ := NewFileStorage(dstDir)
	if _, err := Mirror(ctx, r.storage, dst, MirrorOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	before := listFiles(t, dstDir)
	_, err := Mirror(ctx, old, dst, MirrorOptions{Root: root})
	if err == nil || !strings.Contains(err.Error(), "timestamp.json is version 3, newer than the source's version 2") {
		t.Fatalf("mirror from a stale source: %v", err)
	}
	if after := listFiles(t, dstDir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("a refused mirror changed the destination")
	}

	other, otherRoot := mirrorSourceRepo(t)
	_, err = Mirror(ctx, other.storage, dst, MirrorOptions{Root: otherRoot})
	if err == nil || !strings.Contains(err.Error(), "holds a different metadata/1.root.json") {
		t.Fatalf("mirror of another repository over this one: %v", err)
	}
	if after := listFiles(t, dstDir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Error("a refused mirror changed the destination")
	}
}

// recordingStorage records the order of writes.
type recordingStorage struct {
	Storage
	mu     sync.Mutex
	writes []string
}

func (s *recordingStorage) PutOnce(ctx context.Context, name string, data []byte) error {
	s.mu.Lock()
	s.writes = append(s.writes, name)
	s.mu.Unlock()
	return s.Storage.PutOnce(ctx, name, data)
}

func (s *recordingStorage) Replace(ctx context.Context, name string, data []byte) error {
	s.mu.Lock()
	s.writes = append(s.writes, name)
	s.mu.Unlock()
	return s.Storage.Replace(ctx, name, data)
}

// The mirror writes as a publish does: target files, then bins before the
// roles that delegate to them, snapshot, and timestamp.json last.
func TestMirrorWriteOrder(t *testing.T) {
	t.Parallel()
	r, root := mirrorSourceRepo(t)
	dst, _ := NewFileStorage(filepath.Join(t.TempDir(), "mirror"))
	rec := &recordingStorage{Storage: dst}
	if _, err := Mirror(context.Background(), r.storage, rec, MirrorOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, w := range rec.writes {
		pos[w] = i
	}
	last := len(rec.writes) - 1
	if rec.writes[last] != "metadata/timestamp.json" {
		t.Errorf("last write %s, want metadata/timestamp.json", rec.writes[last])
	}
	for i, w := range rec.writes[:3] {
		if !strings.HasPrefix(w, "targets/") {
			t.Errorf("write %d is %s, want target files first", i, w)
		}
	}
	order := []string{"metadata/1.measurements-bin-0.json", "metadata/1.measurements.json", "metadata/1.targets.json", "metadata/2.snapshot.json", "metadata/1.root.json", "metadata/timestamp.json"}
	for i := 1; i < len(order); i++ {
		a, aok := pos[order[i-1]]
		b, bok := pos[order[i]]
		if !aok || !bok || a > b {
			t.Errorf("%s (write %d) must come before %s (write %d)", order[i-1], a, order[i], b)
		}
	}
}

// A mirror that fails at any one of its writes leaves a destination that
// clients see in its old state; the next run completes it.
func TestMirrorInterruptedAtEveryWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, root := mirrorSourceRepo(t)
	dstDir := filepath.Join(t.TempDir(), "mirror")
	dst, _ := NewFileStorage(dstDir)
	if _, err := Mirror(ctx, r.storage, dst, MirrorOptions{Root: root}); err != nil {
		t.Fatal(err)
	}
	for k := 1; ; k++ {
		image := fmt.Sprintf("v2.%d.0", k)
		if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements(image, "qemu-vtpm", byte(k))}); err != nil {
			t.Fatal(err)
		}
		_, err := Mirror(ctx, r.storage, &failingStorage{Storage: dst, failAt: k}, MirrorOptions{Root: root})
		if err == nil {
			if k == 1 {
				t.Fatal("no write failed")
			}
			break
		}
		if !errors.Is(err, errInjected) {
			t.Fatalf("write %d: %v", k, err)
		}
		if fetch(t, dstDir, "measurements/v1.0.0/qemu-vtpm/measurements.json") == nil {
			t.Fatalf("after a failure at write %d clients of the mirror lost a target", k)
		}
		if fetch(t, dstDir, "measurements/"+image+"/qemu-vtpm/measurements.json") != nil {
			t.Fatalf("after a failure at write %d clients of the mirror see part of the new state", k)
		}
		if _, err := Mirror(ctx, r.storage, dst, MirrorOptions{Root: root}); err != nil {
			t.Fatalf("mirror again after a failure at write %d: %v", k, err)
		}
		if fetch(t, dstDir, "measurements/"+image+"/qemu-vtpm/measurements.json") == nil {
			t.Fatalf("mirror again after write %d: the new target is missing", k)
		}
	}
}

// A client embedding an old root walks the root chain at the mirror too:
// the mirror copies the roots before its trust anchor, checking that they
// lead to it, and the roots after it.
func TestMirrorRootChain(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r, root1 := mirrorSourceRepo(t)
	// Rotate the root: version 2, signed by the same root key.
	md := readMeta[tuf.RootType](t, r.ws.Storage, "metadata/1.root.json")
	md.Signed.Version = 2
	signer, _, err := loadSigner(ctx, r.keys["root"], r.signers)
	if err != nil {
		t.Fatal(err)
	}
	md.ClearSignatures()
	if _, err := md.Sign(signer); err != nil {
		t.Fatal(err)
	}
	root2, err := md.ToBytes(true)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.ws.Storage.PutOnce(ctx, "metadata/2.root.json", root2); err != nil {
		t.Fatal(err)
	}
	for name, anchor := range map[string][]byte{"anchor 1": root1, "anchor 2": root2} {
		t.Run(name, func(t *testing.T) {
			dstDir := filepath.Join(t.TempDir(), "mirror")
			dst, _ := NewFileStorage(dstDir)
			if _, err := Mirror(ctx, r.storage, dst, MirrorOptions{Root: anchor}); err != nil {
				t.Fatal(err)
			}
			got := listFiles(t, dstDir)
			if got["metadata/1.root.json"] != string(root1) || got["metadata/2.root.json"] != string(root2) {
				t.Error("the mirror lacks a root of the chain")
			}
			if fetch(t, dstDir, "measurements/v1.0.0/qemu-vtpm/measurements.json") == nil {
				t.Error("a client starting from root 1 fails at the mirror")
			}
		})
	}
	// An older root that does not lead to the anchor is refused.
	if err := os.WriteFile(filepath.Join(r.storage, "metadata", "1.root.json"), foreignRoot(t), 0o644); err != nil {
		t.Fatal(err)
	}
	dstDir := filepath.Join(t.TempDir(), "mirror")
	dst, _ := NewFileStorage(dstDir)
	_, err = Mirror(ctx, r.storage, dst, MirrorOptions{Root: root2})
	if !errors.Is(err, ErrUntrustedSource) || !strings.Contains(err.Error(), "do not lead to the trusted root") {
		t.Errorf("forged older root: %v", err)
	}
	if files := listFiles(t, dstDir); len(files) != 0 {
		t.Errorf("a refused mirror wrote %d files", len(files))
	}
}

func TestMirrorSourceErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dst, _ := NewFileStorage(t.TempDir())
	for _, tc := range []struct{ from, want string }{
		{"", "no source"},
		{filepath.Join(t.TempDir(), "none"), "no such file or directory"},
		{"ftp://example.com/repo", `unsupported scheme "ftp"`},
		{"s3:///x?region=r", "no bucket"},
	} {
		_, err := Mirror(ctx, tc.from, dst, MirrorOptions{Root: []byte("{}")})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("from %q: %v, want %q", tc.from, err, tc.want)
		}
	}
	// A missing trust anchor is refused before anything is read.
	if _, err := Mirror(ctx, t.TempDir(), dst, MirrorOptions{}); err == nil || !strings.Contains(err.Error(), "--root FILE") {
		t.Errorf("no root: %v", err)
	}
}

// A role that two roles delegate to, signed for one of them only, is
// refused: a client's lookup through the other delegator refuses it, so
// the source is not what it serves.
func TestMirrorRefusesRoleUnsignedByOneDelegator(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	root := tuftest.SharedRoleRepo(t, src, map[string][]byte{
		"measurements/v1.0.0/qemu-vtpm/measurements.json": []byte("through a"),
		"measurements/v2.0.0/qemu-vtpm/measurements.json": []byte("through b"),
	})
	dstDir := filepath.Join(t.TempDir(), "mirror")
	dst, err := NewFileStorage(dstDir)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Mirror(context.Background(), src, dst, MirrorOptions{Root: root})
	if !errors.Is(err, ErrUntrustedSource) || !errors.Is(err, &tuf.ErrUnsignedMetadata{}) || !strings.Contains(err.Error(), "role shared as delegated by b") {
		t.Fatalf("%v: want the source refused for role shared, unsigned by b's keys", err)
	}
	if got := listFiles(t, dstDir); len(got) != 0 {
		t.Errorf("the refused mirror wrote %d files", len(got))
	}
}
