package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/internal/s3opts"
)

// A repository read straight from a bucket has the URL
//
//	s3://BUCKET/PREFIX?endpoint=URL&region=REGION&path-style=true
//
// with the options of 'mtuf repo init --storage' (all optional: endpoint
// and path-style are for stores other than AWS). The credentials come from
// the standard AWS chain (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
// AWS_PROFILE, web identity, the instance role), never from the URL.

// s3Location is a repository file in a bucket.
type s3Location struct {
	bucket, key string
	opts        s3opts.Options
}

func (l *s3Location) String() string { return "s3://" + l.bucket + "/" + l.key }

// parseS3URL splits the URL of a repository file into the bucket, the
// object key and the store options. The updater appends "/metadata/NAME"
// or "/targets/PATH" to the repository URL as a string, so when the URL
// has options that path comes after them, and the options end where it
// begins.
func parseS3URL(raw string) (*s3Location, error) {
	base, query, hasQuery := strings.Cut(raw, "?")
	if hasQuery {
		i := -1
		for _, dir := range []string{"/metadata/", "/targets/"} {
			if j := strings.Index(query, dir); j >= 0 && (i < 0 || j < i) {
				i = j
			}
		}
		if i < 0 {
			return nil, fmt.Errorf("repository URL %q names no metadata or targets file", raw)
		}
		base = strings.TrimSuffix(base, "/") + query[i:]
		query = query[:i]
	}
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("repository URL %q: %w", raw, err)
	}
	if u.User != nil {
		return nil, fmt.Errorf("repository URL %s: credentials do not belong in the URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE", u.Redacted())
	}
	if u.Host == "" {
		return nil, fmt.Errorf("repository URL %q has no bucket: use s3://BUCKET/PREFIX", raw)
	}
	key := strings.TrimPrefix(u.Path, "/")
	if key == "" || path.Clean(key) != key || strings.HasPrefix(key, "/") || strings.HasPrefix(key, "../") {
		return nil, fmt.Errorf("repository URL %q: %q is not a clean object key", raw, key)
	}
	values, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("repository URL %q: options: %w", raw, err)
	}
	opts, err := s3opts.Parse(values)
	if err != nil {
		return nil, fmt.Errorf("repository URL %q: %w", raw, err)
	}
	return &s3Location{bucket: u.Host, key: key, opts: opts}, nil
}

// checkS3RepositoryURL tells whether raw is a usable s3:// repository URL,
// so that a mistake in it shows at init rather than at the first update.
func checkS3RepositoryURL(raw string) error {
	_, err := parseS3URL(strings.TrimSuffix(raw, "/") + "/metadata/1.root.json")
	return err
}

// s3Get reads a repository file from a bucket with the S3 API. Errors
// follow the HTTP fetcher's: a missing object is a 404 to the updater, and
// so is a 403 on the probe for the next root version, because a store
// that does not let the reader list the bucket answers 403 for a key that
// does not exist. Any other 403 fails the update.
func (f *fetcher) s3Get(rawURL string, maxLength int64) ([]byte, error) {
	ctx := f.ctx
	// The SDK's own HTTP client honours the AWS settings (AWS_CA_BUNDLE
	// among them) that a user of s3:// expects; it gets the HTTP client's
	// time limit.
	if f.http != nil && f.http.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.http.Timeout)
		defer cancel()
	}
	body, n, loc, err := s3Open(ctx, &f.s3, rawURL)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	if n > maxLength {
		return nil, &tuf.ErrDownloadLengthMismatch{Msg: fmt.Sprintf("%s is %d bytes, more than the %d expected", loc, n, maxLength)}
	}
	return readLimited(body, n, maxLength, loc.String())
}

// s3Clients keeps the S3 clients of one operation (an update, a replay
// of the log) by store options: making one loads the AWS configuration,
// which takes milliseconds, and a new client opens new connections. A
// later operation makes its own, with the credentials of its time.
type s3Clients struct {
	mu sync.Mutex
	m  map[s3opts.Options]*s3.Client
}

func (c *s3Clients) get(ctx context.Context, o s3opts.Options) (*s3.Client, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if client, ok := c.m[o]; ok {
		return client, nil
	}
	client, err := o.Client(ctx)
	if err != nil {
		return nil, err
	}
	if c.m == nil {
		c.m = map[s3opts.Options]*s3.Client{}
	}
	c.m[o] = client
	return client, nil
}

// s3Open starts reading a repository file from a bucket, for a caller
// that streams it (a CLI release, too large to hold in memory). It
// returns the body, which the caller closes, and its length (-1 when the
// store does not say).
func s3Open(ctx context.Context, clients *s3Clients, rawURL string) (io.ReadCloser, int64, *s3Location, error) {
	loc, err := parseS3URL(rawURL)
	if err != nil {
		return nil, 0, nil, err
	}
	client, err := clients.get(ctx, loc.opts)
	if err != nil {
		return nil, 0, loc, fmt.Errorf("%s: %w", loc, err)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(loc.bucket), Key: aws.String(loc.key)})
	if err != nil {
		return nil, 0, loc, s3Error(loc, rawURL, err)
	}
	n := int64(-1)
	if out.ContentLength != nil {
		n = *out.ContentLength
	}
	return out.Body, n, loc, nil
}

func s3Error(loc *s3Location, rawURL string, err error) error {
	var apiErr smithy.APIError
	code := ""
	if errors.As(err, &apiErr) {
		code = apiErr.ErrorCode()
	}
	status := 0
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		status = respErr.HTTPStatusCode()
	}
	switch {
	case code == "NoSuchKey" || (status == http.StatusNotFound && (code == "NotFound" || code == "")):
		return &tuf.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: rawURL}
	case code == "NoSuchBucket":
		return fmt.Errorf("%s: bucket %q does not exist: check the repository URL: %w", loc, loc.bucket, err)
	case (status == http.StatusForbidden || code == "AccessDenied") && isRootProbe(rawURL):
		return &tuf.ErrDownloadHTTP{StatusCode: http.StatusNotFound, URL: rawURL}
	case status == http.StatusForbidden || code == "AccessDenied" || code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" || code == "ExpiredToken":
		return fmt.Errorf("access denied to %s: check the AWS credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and that they may read the bucket: %w",
			loc, &tuf.ErrDownloadHTTP{StatusCode: http.StatusForbidden, URL: rawURL})
	case status == 0 && strings.Contains(err.Error(), "get identity"):
		// The SDK has no error type for an empty credential chain; its
		// signing step wraps every failure to find credentials this way.
		return fmt.Errorf("%s: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE, or read the repository over the bucket's HTTP endpoint instead: %w", loc, err)
	case status != 0:
		return fmt.Errorf("download %s: %v: %w", loc, err, &tuf.ErrDownloadHTTP{StatusCode: status, URL: rawURL})
	default:
		return fmt.Errorf("download %s: %w", loc, err)
	}
}
