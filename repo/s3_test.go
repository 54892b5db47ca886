package repo

import (
	"context"
	"errors"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mtuf/mtuf/internal/s3test"
)

// openS3 opens storage under prefix on srv, with srv's credentials in the
// environment as a user would give them.
func openS3(t *testing.T, srv *s3test.Server, prefix string) *S3Storage {
	t.Helper()
	srv.Setenv(t)
	u, err := url.Parse(srv.URL(prefix))
	if err != nil {
		t.Fatal(err)
	}
	st, err := NewS3Storage(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestS3Storage(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	st := openS3(t, srv, "repos/prod")

	_, err := st.Get(ctx, "metadata/1.root.json")
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing object: %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "s3://mtuf-test/repos/prod/metadata/1.root.json") {
		t.Errorf("missing object error %q does not name the object", err)
	}
	if err := st.PutOnce(ctx, "metadata/1.root.json", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := st.PutOnce(ctx, "metadata/1.root.json", []byte("a")); err != nil {
		t.Errorf("same bytes again: %v", err)
	}
	err = st.PutOnce(ctx, "metadata/1.root.json", []byte("b"))
	if !errors.Is(err, ErrExists) {
		t.Errorf("different bytes: %v, want ErrExists", err)
	} else if !strings.Contains(err.Error(), "s3://mtuf-test/repos/prod/metadata/1.root.json") {
		t.Errorf("ErrExists %q does not name the object", err)
	}
	if got, err := st.Get(ctx, "metadata/1.root.json"); err != nil || string(got) != "a" {
		t.Errorf("write-once object = %q, %v; want \"a\"", got, err)
	}
	if err := st.Replace(ctx, "metadata/timestamp.json", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := st.Replace(ctx, "metadata/timestamp.json", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Get(ctx, "metadata/timestamp.json"); err != nil || string(got) != "2" {
		t.Errorf("replaced object = %q, %v; want \"2\"", got, err)
	}
	for _, bad := range []string{"../x", "/etc/passwd", "a/../../b", "", "a//b", "metadata/./x"} {
		if err := st.PutOnce(ctx, bad, []byte("x")); err == nil {
			t.Errorf("PutOnce(%q) accepted", bad)
		}
		if _, err := st.Get(ctx, bad); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) = %v, want a bad-name error", bad, err)
		}
	}

	// Everything lives under the prefix, and nothing else was written.
	out, err := srv.Client().ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(srv.Bucket)})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key))
	}
	want := []string{"repos/prod/metadata/1.root.json", "repos/prod/metadata/timestamp.json"}
	if strings.Join(keys, " ") != strings.Join(want, " ") {
		t.Errorf("bucket holds %q, want %q", keys, want)
	}

	// A second repository in the same bucket does not see the first.
	other := openS3(t, srv, "")
	if _, err := other.Get(ctx, "metadata/1.root.json"); !errors.Is(err, ErrNotFound) {
		t.Errorf("repository at the bucket root sees another prefix's file: %v", err)
	}
}

// A CDN in front of the bucket caches by the objects' own headers.
func TestS3StorageHeaders(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	st := openS3(t, srv, "r")
	for _, tc := range []struct {
		name, contentType, cacheControl string
		put                             func(context.Context, string, []byte) error
	}{
		{"metadata/timestamp.json", "application/json", "public, max-age=60, must-revalidate", st.Replace},
		{"metadata/3.snapshot.json", "application/json", "public, max-age=31536000, immutable", st.PutOnce},
		{"metadata/1.root.json", "application/json", "public, max-age=31536000, immutable", st.PutOnce},
		{"targets/measurements/ab12.image.bin", "application/octet-stream", "public, max-age=31536000, immutable", st.PutOnce},
	} {
		if err := tc.put(ctx, tc.name, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
		head, err := srv.Client().HeadObject(ctx, &s3.HeadObjectInput{
			Bucket: aws.String(srv.Bucket),
			Key:    aws.String("r/" + tc.name),
		})
		if err != nil {
			t.Fatalf("head %s: %v", tc.name, err)
		}
		if got := aws.ToString(head.ContentType); got != tc.contentType {
			t.Errorf("%s: Content-Type %q, want %q", tc.name, got, tc.contentType)
		}
		if got := aws.ToString(head.CacheControl); got != tc.cacheControl {
			t.Errorf("%s: Cache-Control %q, want %q", tc.name, got, tc.cacheControl)
		}
	}
}

// Eight writers creating one write-once name: exactly one wins, the others
// learn that different content exists.
func TestS3StoragePutOnceRace(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	st := openS3(t, srv, "")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = st.PutOnce(ctx, "metadata/2.targets.json", []byte{byte('a' + i)})
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("writers %d and %d both succeeded", winner, i)
			}
			winner = i
		case !errors.Is(err, ErrExists):
			t.Errorf("writer %d: unexpected error %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer succeeded")
	}
	got, err := st.Get(ctx, "metadata/2.targets.json")
	if err != nil || string(got) != string(rune('a'+winner)) {
		t.Errorf("object = %q, %v; want the winner's %q", got, err, string(rune('a'+winner)))
	}
}

func TestS3StorageReplaceIf(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	st := openS3(t, srv, "r")
	const name = "metadata/timestamp.json"

	if _, _, err := st.GetWithETag(ctx, name); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing object: %v, want ErrNotFound", err)
	}
	// "" creates only if nobody else did.
	if err := st.ReplaceIf(ctx, name, []byte("1"), ""); err != nil {
		t.Fatal(err)
	}
	if err := st.ReplaceIf(ctx, name, []byte("1"), ""); !errors.Is(err, ErrConflict) {
		t.Errorf("create over an existing object: %v, want ErrConflict", err)
	}
	data, tag1, err := st.GetWithETag(ctx, name)
	if err != nil || string(data) != "1" || tag1 == "" {
		t.Fatalf("GetWithETag = %q, %q, %v", data, tag1, err)
	}
	if err := st.ReplaceIf(ctx, name, []byte("2"), tag1); err != nil {
		t.Fatalf("replace with the current etag: %v", err)
	}
	_, tag2, err := st.GetWithETag(ctx, name)
	if err != nil || tag2 == tag1 {
		t.Fatalf("etag after replace = %q (was %q), %v", tag2, tag1, err)
	}

	// A publisher that read version 1 must not overwrite version 2.
	err = st.ReplaceIf(ctx, name, []byte("3"), tag1)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("replace with a stale etag: %v, want ErrConflict", err)
	}
	if !strings.Contains(err.Error(), "s3://mtuf-test/r/metadata/timestamp.json") {
		t.Errorf("conflict error %q does not name the object", err)
	}
	if got, _ := st.Get(ctx, name); string(got) != "2" {
		t.Errorf("after a refused replace the object = %q, want \"2\"", got)
	}

	// Deleted behind the publisher's back: also a conflict, not a create.
	if _, err := srv.Client().DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(srv.Bucket), Key: aws.String("r/" + name)}); err != nil {
		t.Fatal(err)
	}
	if err := st.ReplaceIf(ctx, name, []byte("4"), tag2); !errors.Is(err, ErrConflict) {
		t.Errorf("replace of a deleted object: %v, want ErrConflict", err)
	}
}

// Publishers that all read the same version race to replace it: exactly
// one update lands, none is silently lost.
func TestS3StorageReplaceIfRace(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	st := openS3(t, srv, "")
	const name = "metadata/timestamp.json"
	if err := st.Replace(ctx, name, []byte("0")); err != nil {
		t.Fatal(err)
	}
	_, tag, err := st.GetWithETag(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = st.ReplaceIf(ctx, name, []byte{byte('a' + i)}, tag)
		})
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil:
			if winner >= 0 {
				t.Errorf("publishers %d and %d both replaced version %s", winner, i, tag)
			}
			winner = i
		case !errors.Is(err, ErrConflict):
			t.Errorf("publisher %d: unexpected error %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no publisher succeeded")
	}
	if got, _ := st.Get(ctx, name); string(got) != string(rune('a'+winner)) {
		t.Errorf("object = %q, want the winner's %q", got, string(rune('a'+winner)))
	}
}

func TestS3StorageAccessErrors(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	st := openS3(t, srv, "r")
	if err := st.PutOnce(ctx, "metadata/1.root.json", []byte("a")); err != nil {
		t.Fatal(err)
	}

	t.Run("wrong secret", func(t *testing.T) {
		t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
		u, _ := url.Parse(srv.URL("r"))
		bad, err := NewS3Storage(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"metadata/1.root.json", "metadata/2.root.json"} {
			_, err := bad.Get(ctx, name)
			if err == nil || errors.Is(err, ErrNotFound) {
				t.Fatalf("Get %s with a wrong secret: %v, want an access error (a denied read is not a missing file)", name, err)
			}
			for _, want := range []string{"access denied to s3://mtuf-test/r/" + name, "AWS_SECRET_ACCESS_KEY"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("Get %s error %q does not say %q", name, err, want)
				}
			}
		}
		err = bad.PutOnce(ctx, "metadata/2.root.json", []byte("b"))
		if err == nil || !strings.Contains(err.Error(), "access denied to s3://mtuf-test/r/metadata/2.root.json") {
			t.Errorf("PutOnce with a wrong secret: %v, want an access error naming the object", err)
		}
		if err := bad.Replace(ctx, "metadata/timestamp.json", []byte("b")); err == nil || !strings.Contains(err.Error(), "access denied") {
			t.Errorf("Replace with a wrong secret: %v, want an access error", err)
		}
	})

	t.Run("unknown access key", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "nobody")
		u, _ := url.Parse(srv.URL("r"))
		bad, err := NewS3Storage(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.Get(ctx, "metadata/1.root.json")
		if err == nil || !strings.Contains(err.Error(), "access denied to s3://mtuf-test/r/metadata/1.root.json") {
			t.Errorf("Get with an unknown access key: %v, want an access error naming the object", err)
		}
	})

	t.Run("no credentials", func(t *testing.T) {
		t.Setenv("AWS_ACCESS_KEY_ID", "")
		t.Setenv("AWS_SECRET_ACCESS_KEY", "")
		u, _ := url.Parse(srv.URL("r"))
		bad, err := NewS3Storage(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		_, err = bad.Get(ctx, "metadata/1.root.json")
		if err == nil || !strings.Contains(err.Error(), "read s3://mtuf-test/r/metadata/1.root.json: no AWS credentials found") {
			t.Errorf("Get without credentials: %v, want an error saying how to give them", err)
		}
	})

	t.Run("missing bucket", func(t *testing.T) {
		u, _ := url.Parse(strings.Replace(srv.URL("r"), "s3://mtuf-test/", "s3://no-such-bucket/", 1))
		bad, err := NewS3Storage(ctx, u)
		if err != nil {
			t.Fatal(err)
		}
		err = bad.PutOnce(ctx, "metadata/1.root.json", []byte("a"))
		if err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) {
			t.Errorf("PutOnce into a missing bucket: %v, want an error naming the bucket", err)
		}
	})
}

// Mistakes in a storage URL are refused before any request, with a message
// saying what to fix.
func TestNewS3StorageURL(t *testing.T) {
	dir := t.TempDir()
	for _, kv := range [][2]string{
		{"AWS_REGION", ""}, {"AWS_DEFAULT_REGION", ""}, {"AWS_PROFILE", ""},
		{"AWS_CONFIG_FILE", filepath.Join(dir, "none")},
		{"AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "none")},
		{"AWS_EC2_METADATA_DISABLED", "true"},
	} {
		t.Setenv(kv[0], kv[1])
	}
	ctx := context.Background()
	for _, tc := range []struct {
		url, want string
	}{
		{"s3://user:hunter2@bucket/p?region=x", "credentials do not belong in the storage URL"},
		{"s3:///prefix?region=x", "no bucket"},
		{"s3://bucket/p?endpoint=127.0.0.1:7070", "is not an http:// or https:// URL"},
		{"s3://bucket/p?endpoint=ftp://h", "is not an http:// or https:// URL"},
		{"s3://bucket/p?region=x&path-style=yes please", `path-style="yes please" is not true or false`},
		{"s3://bucket/p?region=x&pathstyle=true", `unknown option "pathstyle"`},
		{"s3://bucket/p?region=x&region=y", "option region given 2 times"},
		{"s3://bucket/p?region=", "empty region"},
		{"s3://bucket/a/../../b?region=x", "is not a clean folder path"},
		{"s3://bucket/p", "no region: add ?region=REGION"},
		{"file:///tmp/x", "not an s3:// URL"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		_, err = NewS3Storage(ctx, u)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error %q shows the password", tc.url, err)
		}
	}

	for _, tc := range []struct {
		url, bucket, prefix string
	}{
		{"s3://b?region=x", "b", ""},
		{"s3://b/?region=x", "b", ""},
		{"s3://b/repo/prod/?endpoint=http://127.0.0.1:7070&path-style=true", "b", "repo/prod/"},
		{"s3://b/repo?endpoint=https://s3.example.com", "b", "repo/"},
	} {
		u, _ := url.Parse(tc.url)
		st, err := NewS3Storage(ctx, u)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if st.Bucket() != tc.bucket || st.Prefix() != tc.prefix {
			t.Errorf("%s: bucket %q prefix %q, want %q %q", tc.url, st.Bucket(), st.Prefix(), tc.bucket, tc.prefix)
		}
	}
}
