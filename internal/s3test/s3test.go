// Package s3test runs a real S3-compatible server, versitygw, on loopback
// for tests of code that keeps a repository in object storage.
//
// The server is the versitygw binary, installed by make tools
// into .tools/bin at the module root. Tests skip when it is missing, and fail
// when CI=true, where a missing server means a broken CI setup.
//
// Start changes nothing global. Storage URLs carry no credentials (they end
// up in workspace files), so code under test finds them in the standard AWS
// environment variables: a test calls Server.Setenv (a script, Environ) to
// point them at the server, which also rules out the developer's own AWS
// configuration.
package s3test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/mtuf/mtuf/internal/testtool"
)

// Version is the versitygw release the tests are written against.
const Version = "v1.8.0"

const installHint = "install it with make tools (go install github.com/versity/versitygw/cmd/versitygw@" + Version + ")"

// Server is a running versitygw with one empty bucket.
type Server struct {
	Endpoint  string // base URL, e.g. http://127.0.0.1:41234
	Region    string
	Bucket    string
	AccessKey string
	SecretKey string

	work    string // temporary directory of the server's files
	logPath string
	stop    func()
}

// URL returns the storage URL of a repository under prefix in the
// server's bucket ("" for the bucket's root).
func (s *Server) URL(prefix string) string {
	q := url.Values{}
	q.Set("endpoint", s.Endpoint)
	q.Set("region", s.Region)
	q.Set("path-style", "true")
	u := url.URL{Scheme: "s3", Host: s.Bucket, Path: "/" + strings.Trim(prefix, "/"), RawQuery: q.Encode()}
	return u.String()
}

// Environ returns the standard AWS environment variables that give a
// process the server's credentials and hide any other AWS configuration
// (profiles, shared files, instance metadata), so that the process sees
// only this server. dir names the (missing) shared configuration files.
func (s *Server) Environ(dir string) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_DEFAULT_PROFILE=",
		"AWS_REGION=",
		"AWS_DEFAULT_REGION=",
		"AWS_ENDPOINT_URL=",
		"AWS_ENDPOINT_URL_S3=",
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "no-aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true",
	}
}

// Setenv sets Environ in the process for the rest of the test. Like
// t.Setenv, it rules out t.Parallel.
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	for _, kv := range s.Environ(t.TempDir()) {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// HTTPURL is the plain HTTP address of the repository under prefix, as
// an anonymous reader (a client, a CDN) fetches it once AllowAnonymousRead
// has opened it.
func (s *Server) HTTPURL(prefix string) string {
	u := s.Endpoint + "/" + s.Bucket
	if p := strings.Trim(prefix, "/"); p != "" {
		u += "/" + p
	}
	return u
}

// Anyone is the principal of SetReadPolicy for anonymous readers.
const Anyone = "*"

// SetReadPolicy replaces the bucket policy: the principals (access keys of
// users made by CreateUser, or Anyone) may read, but not list, the objects
// under prefix, except the keys under prefix named in deny, which they are
// refused with 403 AccessDenied. The root credentials are never bound by
// the policy.
//
// This is how a bucket behind a CDN or a public website endpoint is set
// up. AWS answers 403 rather than 404 for a missing key to a reader who may
// not list the bucket; versitygw v1.8.0 answers 404, so a test that needs
// the 403 of a missing key names the key in deny.
func (s *Server) SetReadPolicy(ctx context.Context, prefix string, principals []string, deny ...string) error {
	base := s.Bucket + "/"
	if p := strings.Trim(prefix, "/"); p != "" {
		base += p + "/"
	}
	type statement struct {
		Effect    string   `json:"Effect"`
		Principal []string `json:"Principal"`
		Action    string   `json:"Action"`
		Resource  []string `json:"Resource"`
	}
	policy := struct {
		Version   string      `json:"Version"`
		Statement []statement `json:"Statement"`
	}{Version: "2012-10-17"}
	var denied []string
	for _, k := range deny {
		denied = append(denied, "arn:aws:s3:::"+base+strings.TrimPrefix(k, "/"))
	}
	// One statement per principal: versitygw refuses "*" beside others.
	for _, p := range principals {
		policy.Statement = append(policy.Statement, statement{"Allow", []string{p}, "s3:GetObject", []string{"arn:aws:s3:::" + base + "*"}})
		if len(denied) > 0 {
			policy.Statement = append(policy.Statement, statement{"Deny", []string{p}, "s3:GetObject", denied})
		}
	}
	doc, err := json.Marshal(policy)
	if err != nil {
		return err
	}
	if _, err := s.Client().PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(s.Bucket), Policy: aws.String(string(doc))}); err != nil {
		return fmt.Errorf("versitygw: bucket policy for readers of %s: %w", base, err)
	}
	return nil
}

// CreateUser adds a user with no rights of its own: what it may do comes
// from the bucket policy (SetReadPolicy).
func (s *Server) CreateUser(ctx context.Context) (accessKey, secretKey string, err error) {
	a, err := randomHex(4)
	if err != nil {
		return "", "", err
	}
	if secretKey, err = randomHex(20); err != nil {
		return "", "", err
	}
	accessKey = "mtuf-reader-" + a
	// The admin API of versitygw: an account as XML, signed by root.
	body := fmt.Sprintf("<Account><Access>%s</Access><Secret>%s</Secret><Role>user</Role></Account>", accessKey, secretKey)
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, s.Endpoint+"/create-user", strings.NewReader(body))
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256([]byte(body))
	payload := hex.EncodeToString(sum[:])
	req.Header.Set("X-Amz-Content-Sha256", payload)
	creds := aws.Credentials{AccessKeyID: s.AccessKey, SecretAccessKey: s.SecretKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, payload, "s3", s.Region, time.Now()); err != nil {
		return "", "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", fmt.Errorf("versitygw: create user: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return "", "", fmt.Errorf("versitygw: create user: %s: %s", resp.Status, msg)
	}
	return accessKey, secretKey, nil
}

// Client returns an S3 client for the server with its root credentials,
// for a test to look at objects behind the back of the code under test.
func (s *Server) Client() *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint: aws.String(s.Endpoint),
		Region:       s.Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
	})
}

// ErrNotInstalled is returned by Run when there is no versitygw binary.
var ErrNotInstalled = errors.New("versitygw not found in $MTUF_TOOLS_BIN, .tools/bin or PATH; " + installHint)

// Start runs a server for the rest of the test (see Run). The test skips
// when versitygw is not installed, and fails under CI=true, where a missing
// server means a broken CI setup.
func Start(t testing.TB) *Server {
	t.Helper()
	return testtool.StartServer(t, "versitygw", Run, ErrNotInstalled)
}

// Run starts versitygw with a POSIX backend in a temporary directory, on a
// free loopback port, and creates an empty bucket; Close stops it and
// removes the directory. It is for callers without a testing.TB, such as
// testscript commands; tests use Start.
//
// The server supports bucket versioning, which a test can turn on through
// Client; the bucket starts without it because versitygw v1.8.0 lets
// If-Match succeed on a key whose current version is a delete marker.
func Run(ctx context.Context) (*Server, error) {
	bin, err := find()
	if err != nil {
		return nil, err
	}
	access, err := randomHex(4)
	if err != nil {
		return nil, err
	}
	secret, err := randomHex(20)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "mtuf-versitygw-")
	if err != nil {
		return nil, err
	}
	s := &Server{
		Region:    "us-east-1",
		Bucket:    "mtuf-test",
		AccessKey: "mtuf-test-" + access,
		SecretKey: secret,
		work:      work,
	}
	// A free port can be taken by someone else between the probe and the
	// server's own listen: try a few.
	for range 3 {
		if err = s.run(ctx, bin); err == nil {
			break
		}
	}
	if err != nil {
		os.RemoveAll(work)
		return nil, fmt.Errorf("start versitygw: %w", err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.Client().CreateBucket(cctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		s.Close()
		return nil, fmt.Errorf("versitygw: create bucket %s: %w", s.Bucket, err)
	}
	return s, nil
}

// Close stops the server and removes its files.
func (s *Server) Close() error {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
	return os.RemoveAll(s.work)
}

// Log returns the end of the server's log, to show when a test fails.
func (s *Server) Log() string { return logTail(s.logPath) }

// run starts one versitygw process and waits until it answers its health
// check.
func (s *Server) run(ctx context.Context, bin string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	root, err := os.MkdirTemp(s.work, "root-")
	if err != nil {
		return err
	}
	versions, err := os.MkdirTemp(s.work, "versions-")
	if err != nil {
		return err
	}
	s.logPath = filepath.Join(s.work, "versitygw.log")
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()

	iam, err := os.MkdirTemp(s.work, "iam-")
	if err != nil {
		return err
	}
	cmd := exec.Command(bin,
		"--port", addr,
		"--health", "/health",
		"--quiet",
		"--iam-dir", iam,
		"posix", "--versioning-dir", versions, root)
	// Keys on the environment, not the command line, where other users of
	// the machine could read them.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.SysProcAttr = procAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}

	endpoint := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("versitygw exited at start (%v): %s", err, logTail(s.logPath))
		case <-ctx.Done():
			stop()
			return ctx.Err()
		default:
		}
		resp, err := client.Get(endpoint + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("versitygw did not answer on %s within 30s: %s", addr, logTail(s.logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Endpoint = endpoint
	s.stop = stop
	return nil
}

// Installed tells whether Run can find versitygw.
func Installed() bool {
	_, err := find()
	return err == nil
}

func find() (string, error) {
	p, err := testtool.Lookup("versitygw")
	if err != nil {
		return "", ErrNotInstalled
	}
	return p, nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	const max = 4000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	if len(data) == 0 {
		return "(empty log)"
	}
	return string(data)
}
