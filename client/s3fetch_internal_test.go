package client

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

func TestParseS3URL(t *testing.T) {
	for _, tc := range []struct {
		raw                           string
		bucket, key, endpoint, region string
		pathStyle                     bool
	}{
		{"s3://b/metadata/1.root.json", "b", "metadata/1.root.json", "", "", false},
		{"s3://b/repo/prod/metadata/timestamp.json", "b", "repo/prod/metadata/timestamp.json", "", "", false},
		// The updater appends the file after the options.
		{"s3://b/repo?region=eu-west-1/metadata/2.root.json", "b", "repo/metadata/2.root.json", "", "eu-west-1", false},
		{"s3://b/repo?endpoint=http%3A%2F%2F127.0.0.1%3A7070&path-style=true&region=us-east-1/targets/measurements/v1/p/ab.measurements.json",
			"b", "repo/targets/measurements/v1/p/ab.measurements.json", "http://127.0.0.1:7070", "us-east-1", true},
		// Options typed by hand, with the endpoint's slashes unescaped.
		{"s3://b?endpoint=http://127.0.0.1:7070&path-style=true/metadata/timestamp.json", "b", "metadata/timestamp.json", "http://127.0.0.1:7070", "", true},
	} {
		loc, err := parseS3URL(tc.raw)
		if err != nil {
			t.Errorf("%s: %v", tc.raw, err)
			continue
		}
		if loc.bucket != tc.bucket || loc.key != tc.key || loc.opts.Endpoint != tc.endpoint || loc.opts.Region != tc.region || loc.opts.PathStyle != tc.pathStyle {
			t.Errorf("%s: got %+v", tc.raw, *loc)
		}
	}
	for _, tc := range []struct{ raw, want string }{
		{"s3://user:hunter2@b/metadata/1.root.json", "credentials do not belong in the URL"},
		{"s3:///metadata/1.root.json", "has no bucket"},
		{"s3://b/repo?region=x", "names no metadata or targets file"},
		{"s3://b/repo?regoin=x/metadata/1.root.json", `unknown option "regoin"`},
		{"s3://b/repo?endpoint=127.0.0.1:7070/metadata/1.root.json", "is not an http:// or https:// URL"},
		{"s3://b/repo?path-style=yes/metadata/1.root.json", `path-style="yes" is not true or false`},
		{"s3://b/repo?region=a&region=b/metadata/1.root.json", "option region given 2 times"},
		{"s3://b/repo?region=/metadata/1.root.json", "empty region"},
		{"s3://b/a/../../metadata/1.root.json", "is not a clean object key"},
	} {
		_, err := parseS3URL(tc.raw)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.raw, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: error %q shows the password", tc.raw, err)
		}
	}
}

// Without a region from the URL or the AWS configuration, and no endpoint
// of a store that takes any, the fetcher says how to give one, before any
// request.
func TestS3GetNeedsRegion(t *testing.T) {
	dir := t.TempDir()
	for k, v := range map[string]string{
		"AWS_REGION": "", "AWS_DEFAULT_REGION": "", "AWS_PROFILE": "",
		"AWS_CONFIG_FILE": dir + "/none", "AWS_SHARED_CREDENTIALS_FILE": dir + "/none",
	} {
		t.Setenv(k, v)
	}
	f := &fetcher{ctx: context.Background(), http: http.DefaultClient}
	_, err := f.DownloadFile("s3://b/repo/metadata/timestamp.json", 1000, 0)
	if err == nil || !strings.Contains(err.Error(), "no region: add ?region=REGION") {
		t.Fatalf("err = %v", err)
	}
	var httpErr *tuf.ErrDownloadHTTP
	if errors.As(err, &httpErr) {
		t.Errorf("a configuration error reads as HTTP status %d", httpErr.StatusCode)
	}
}

// One operation's fetcher makes one S3 client per store, whatever the
// number of files it reads, and another for another store.
func TestS3ClientPerStore(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "test-access-key")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	f := &fetcher{ctx: context.Background(), http: &http.Client{Timeout: 100 * time.Millisecond}}
	// Nothing listens there: each read fails, after making its client.
	store := "s3://b/repo?endpoint=http://127.0.0.1:1&region=us-east-1"
	for _, name := range []string{"/metadata/timestamp.json", "/metadata/1.root.json", "/targets/a"} {
		if _, err := f.DownloadFile(store+name, 1000, 0); err == nil {
			t.Fatalf("%s: read from a store that is not there", name)
		}
	}
	if len(f.s3.m) != 1 {
		t.Errorf("%d clients for one store", len(f.s3.m))
	}
	f.DownloadFile("s3://b/repo?endpoint=http://127.0.0.1:2&region=us-east-1/metadata/timestamp.json", 1000, 0)
	if len(f.s3.m) != 2 {
		t.Errorf("%d clients for two stores", len(f.s3.m))
	}
}
