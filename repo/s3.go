package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/mtuf/mtuf/internal/s3opts"
	"github.com/mtuf/mtuf/translog"
)

// ErrConflict is returned by ConditionalStorage.ReplaceIf when the file
// changed after it was read: another publisher got there first, and
// writing anyway would silently drop its update.
var ErrConflict = errors.New("changed by another publisher")

// ConditionalStorage is a Storage that can replace a file only if nobody
// else changed it since it was read, which lets two publishers run at once
// without a lock: the loser gets ErrConflict and publishes again on top of
// the winner's state.
type ConditionalStorage interface {
	// GetWithETag returns the content of name and an opaque version tag for
	// it, or an error wrapping ErrNotFound.
	GetWithETag(ctx context.Context, name string) (data []byte, etag string, err error)
	// ReplaceIf replaces name with data only if its current version tag is
	// still etag; an empty etag means that name must not exist yet. If the
	// file changed (or appeared, or went away) it fails with ErrConflict.
	ReplaceIf(ctx context.Context, name string, data []byte, etag string) error
}

// S3Storage keeps a repository in an S3-compatible object store: AWS S3,
// or any store that honours conditional writes (If-None-Match and If-Match
// on PutObject), such as MinIO, Cloudflare R2 or versitygw. Write-once
// files rely on If-None-Match, so two publishers can never both create one.
//
// It is opened from a URL:
//
//	s3://BUCKET/PREFIX?endpoint=URL&region=REGION&path-style=true
//
// PREFIX (optional) is the folder of the repository inside the bucket. The
// query options are for stores other than AWS:
//
//	endpoint    base URL of the store, e.g. http://127.0.0.1:7070
//	region      signing region (default: from the AWS configuration, or
//	            us-east-1 when an endpoint is given)
//	path-style  true to address the bucket as a path (endpoint/BUCKET/key)
//	            rather than as a host name (BUCKET.endpoint/key)
//
// Credentials are never part of the URL, which ends up in workspace files
// and logs: they come from the standard AWS chain (AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY, AWS_PROFILE and the shared configuration files,
// web identity, or the instance role).
type S3Storage struct {
	client *s3.Client
	bucket string
	prefix string // "" or a folder ending in "/"
}

var _ ConditionalStorage = (*S3Storage)(nil)

// NewS3Storage opens the S3 storage named by u (see S3Storage for the URL
// form). It does no network I/O: a wrong bucket or missing credentials
// show up on the first read or write, naming the object.
func NewS3Storage(ctx context.Context, u *url.URL) (*S3Storage, error) {
	loc, err := parseS3URL(u)
	if err != nil {
		return nil, err
	}
	client, err := loc.opts.Client(ctx)
	if err != nil {
		return nil, fmt.Errorf("storage %s: %w", u.Redacted(), err)
	}
	return &S3Storage{client: client, bucket: loc.bucket, prefix: loc.prefix}, nil
}

// s3Location is what an s3:// storage URL says: where the repository is
// and how to reach the store.
type s3Location struct {
	bucket string
	prefix string // "" or a folder ending in "/"
	opts   s3opts.Options
}

// parseS3URL checks an s3:// storage URL and its options.
func parseS3URL(u *url.URL) (s3Location, error) {
	// Never echo a password that was put in the URL by mistake.
	shown := u.Redacted()
	var loc s3Location
	if u.Scheme != "s3" {
		return loc, fmt.Errorf("storage %s: not an s3:// URL", shown)
	}
	if u.User != nil {
		return loc, fmt.Errorf("storage %s: credentials do not belong in the storage URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or AWS_PROFILE", shown)
	}
	if u.Host == "" || u.Opaque != "" {
		return loc, fmt.Errorf("storage %s: no bucket: use s3://BUCKET/PREFIX", shown)
	}
	loc.bucket = u.Host
	if prefix := strings.Trim(u.Path, "/"); prefix != "" {
		if path.Clean(prefix) != prefix || prefix == "." || prefix == ".." || strings.HasPrefix(prefix, "../") {
			return loc, fmt.Errorf("storage %s: prefix %q is not a clean folder path", shown, prefix)
		}
		loc.prefix = prefix + "/"
	}
	opts, err := s3opts.Parse(u.Query())
	if err != nil {
		return loc, fmt.Errorf("storage %s: %w", shown, err)
	}
	loc.opts = opts
	return loc, nil
}

// Bucket is the bucket the repository lives in.
func (s *S3Storage) Bucket() string { return s.bucket }

// Prefix is the folder of the repository inside the bucket: "" or a path
// ending in "/".
func (s *S3Storage) Prefix() string { return s.prefix }

func (s *S3Storage) key(name string) (string, error) {
	clean := path.Clean(name)
	if name == "" || clean != name || path.IsAbs(name) || strings.HasPrefix(clean, "../") || clean == ".." {
		return "", fmt.Errorf("storage name %q is not a clean relative path", name)
	}
	return s.prefix + name, nil
}

func (s *S3Storage) uri(key string) string {
	return "s3://" + s.bucket + "/" + key
}

// Get implements Storage.
func (s *S3Storage) Get(ctx context.Context, name string) ([]byte, error) {
	data, _, err := s.GetWithETag(ctx, name)
	return data, err
}

// GetWithETag implements ConditionalStorage; the tag is the object's ETag.
func (s *S3Storage) GetWithETag(ctx context.Context, name string) ([]byte, string, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, "", err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		if isNoSuchKey(err) {
			return nil, "", fmt.Errorf("%s: %w", s.uri(key), ErrNotFound)
		}
		return nil, "", s.fail("read", key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", s.uri(key), err)
	}
	return data, aws.ToString(out.ETag), nil
}

// getLimited reads name like Get, but fails without reading further when
// it holds more than maxLength bytes: for reading a repository that is
// not trusted yet.
func (s *S3Storage) getLimited(ctx context.Context, name string, maxLength int64) ([]byte, error) {
	key, err := s.key(name)
	if err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		if isNoSuchKey(err) {
			return nil, fmt.Errorf("%s: %w", s.uri(key), ErrNotFound)
		}
		return nil, s.fail("read", key, err)
	}
	defer out.Body.Close()
	if n := aws.ToInt64(out.ContentLength); n > maxLength {
		return nil, fmt.Errorf("%w: %s is %d bytes, more than the %d allowed", ErrUntrustedSource, s.uri(key), n, maxLength)
	}
	return readAtMost(out.Body, maxLength, s.uri(key))
}

// PutOnce implements Storage with a conditional PutObject
// (If-None-Match: *), which the store refuses if the key exists, so that
// two publishers can never both create a write-once file.
func (s *S3Storage) PutOnce(ctx context.Context, name string, data []byte) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	// A few rounds at most: only writers that keep colliding in flight
	// (AWS answers 409 to simultaneous conditional writes) come back here.
	const attempts = 3
	for range attempts {
		err = s.put(ctx, name, key, data, func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
		if err == nil {
			return nil
		}
		if isConditionalConflict(err) {
			continue
		}
		if !isPreconditionFailed(err) {
			return s.fail("write", key, err)
		}
		// The key exists: either a retried publish wrote these very bytes
		// before, or someone else won the race with different ones.
		existing, gerr := s.Get(ctx, name)
		if errors.Is(gerr, ErrNotFound) {
			continue
		}
		if gerr != nil {
			return fmt.Errorf("write %s: it exists, and reading it back failed: %w", s.uri(key), gerr)
		}
		if !bytes.Equal(existing, data) {
			return fmt.Errorf("write %s: %w", s.uri(key), ErrExists)
		}
		return nil
	}
	return fmt.Errorf("write %s: other writers kept creating it at the same time: publish again: %w", s.uri(key), err)
}

// Replace implements Storage: a PutObject is atomic, readers get either
// the old or the new object.
func (s *S3Storage) Replace(ctx context.Context, name string, data []byte) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	if err := s.put(ctx, name, key, data, nil); err != nil {
		return s.fail("write", key, err)
	}
	return nil
}

// ReplaceIf implements ConditionalStorage with If-Match: etag, or
// If-None-Match: * for an empty etag.
func (s *S3Storage) ReplaceIf(ctx context.Context, name string, data []byte, etag string) error {
	key, err := s.key(name)
	if err != nil {
		return err
	}
	cond := func(in *s3.PutObjectInput) { in.IfMatch = aws.String(etag) }
	if etag == "" {
		cond = func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }
	}
	err = s.put(ctx, name, key, data, cond)
	if err == nil {
		return nil
	}
	// If-Match on a key that was deleted meanwhile answers 404.
	if isPreconditionFailed(err) || isConditionalConflict(err) || (etag != "" && isNoSuchKey(err)) {
		return fmt.Errorf("write %s: %w since it was read: publish again: %w", s.uri(key), ErrConflict, err)
	}
	return s.fail("write", key, err)
}

// put uploads data to key with the headers a CDN in front of the bucket
// needs: the same cache lifetimes that Handler serves a directory with.
func (s *S3Storage) put(ctx context.Context, name, key string, data []byte, cond func(*s3.PutObjectInput)) error {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key),
		Body:          bytes.NewReader(data),
		ContentLength: aws.Int64(int64(len(data))),
		ContentType:   aws.String(contentType(name)),
		CacheControl:  aws.String(cacheControl(name)),
	}
	if cond != nil {
		cond(in)
	}
	_, err := s.client.PutObject(ctx, in)
	return err
}

func contentType(name string) string {
	if strings.HasSuffix(name, ".json") {
		return "application/json"
	}
	return "application/octet-stream"
}

func cacheControl(name string) string {
	// The log's checkpoint is replaced like timestamp.json; its tiles
	// and bundles are not.
	if name == "metadata/timestamp.json" || name == translog.CheckpointPath {
		return timestampCacheControl
	}
	return immutableCacheControl
}

// fail turns an S3 error into one that says which object failed and what
// to do about it.
func (s *S3Storage) fail(op, key string, err error) error {
	target := s.uri(key)
	code, status := errorCode(err), httpStatus(err)
	switch {
	case code == "NoSuchBucket":
		return fmt.Errorf("%s %s: bucket %q does not exist: create it or fix the storage URL: %w", op, target, s.bucket, err)
	case status == http.StatusForbidden || code == "AccessDenied" || code == "InvalidAccessKeyId" ||
		code == "SignatureDoesNotMatch" || code == "ExpiredToken" || code == "InvalidToken" ||
		code == "XAdminUserNotFound": // versitygw's 404 for an unknown access key
		return fmt.Errorf("access denied to %s: check the credentials (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE) and that they may %s objects in bucket %q: %w", target, op, s.bucket, err)
	case status == http.StatusNotImplemented || code == "NotImplemented":
		return fmt.Errorf("%s %s: the object store does not implement this request; a repository needs a store with conditional writes (If-None-Match, If-Match): %w", op, target, err)
	case status == 0 && strings.Contains(err.Error(), "get identity"):
		// The SDK has no error type for an empty credential chain; its
		// signing step wraps every failure to find credentials this way.
		return fmt.Errorf("%s %s: no AWS credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE: %w", op, target, err)
	default:
		return fmt.Errorf("%s %s: %w", op, target, err)
	}
}

func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

func httpStatus(err error) int {
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		return respErr.HTTPStatusCode()
	}
	return 0
}

// isNoSuchKey reports a missing object. Other 404s (no such bucket, and
// versitygw's unknown access key) are not a missing file: they must not
// read as "this repository has no such metadata".
func isNoSuchKey(err error) bool {
	code := errorCode(err)
	return code == "NoSuchKey" || (httpStatus(err) == http.StatusNotFound && (code == "NotFound" || code == ""))
}

// isAccessDenied reports a 403: missing rights, or, from a store that
// does not let the reader list the bucket, a key that does not exist.
func isAccessDenied(err error) bool {
	return err != nil && (httpStatus(err) == http.StatusForbidden || errorCode(err) == "AccessDenied")
}

func isPreconditionFailed(err error) bool {
	return httpStatus(err) == http.StatusPreconditionFailed || errorCode(err) == "PreconditionFailed"
}

// isConditionalConflict reports AWS S3's answer to two conditional writes
// of one key at the same moment: 409 ConditionalRequestConflict.
func isConditionalConflict(err error) bool {
	return errorCode(err) == "ConditionalRequestConflict"
}
