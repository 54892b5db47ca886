// Package s3test runs a real S3-compatible server, versitygw, on loopback
// for tests of code that keeps a repository in object storage.
//
// The server is the versitygw binary, installed by make tools
// into .tools/bin at the module root. Tests skip when it is missing, and fail
// when CI=true, where a missing server means a broken CI setup.
//
// Start changes nothing global. Storage URLs carry no credentials (they end
// up in workspace files), so code under test finds them in the standard AWS
// environment variables: a test calls Server.Setenv to point them at the
// server, which also rules out the developer's own AWS configuration.
package s3test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
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
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
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

// Setenv gives the process the server's credentials through the standard
// AWS environment variables for the rest of the test, and hides any other
// AWS configuration (profiles, shared files, instance metadata) so that
// the test sees only this server. Like t.Setenv, it rules out t.Parallel.
func (s *Server) Setenv(t testing.TB) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_DEFAULT_PROFILE", "")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_ENDPOINT_URL", "")
	t.Setenv("AWS_ENDPOINT_URL_S3", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "no-aws-config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "no-aws-credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
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

// Start runs versitygw with a POSIX backend in a temporary directory, on a
// free loopback port, and creates an empty bucket. The server supports
// bucket versioning, which a test can turn on through Client; the bucket
// starts without it because versitygw v1.8.0 lets If-Match succeed on a
// key whose current version is a delete marker. The server stops when the
// test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := find(t)
	root := t.TempDir()
	s := &Server{
		Region:    "us-east-1",
		Bucket:    "mtuf-test",
		AccessKey: "mtuf-test-" + randomHex(t, 4),
		SecretKey: randomHex(t, 20),
	}
	// A free port can be taken by someone else between the probe and the
	// server's own listen: try a few.
	var err error
	for range 3 {
		if err = s.run(t, bin, root); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("start versitygw: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := s.Client()
	if _, err := client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(s.Bucket)}); err != nil {
		t.Fatalf("versitygw: create bucket %s: %v", s.Bucket, err)
	}
	return s
}

// run starts one versitygw process and waits until it answers its health
// check; the process is stopped when the test ends.
func (s *Server) run(t testing.TB, bin, root string) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	work := t.TempDir()
	versions := filepath.Join(work, "versions")
	if err := os.Mkdir(versions, 0o755); err != nil {
		return err
	}
	logPath := filepath.Join(work, "versitygw.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()

	cmd := exec.Command(bin,
		"--port", addr,
		"--health", "/health",
		"--quiet",
		"posix", "--versioning-dir", versions, root)
	// Keys on the environment, not the command line, where other users of
	// the machine could read them.
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
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
			return fmt.Errorf("versitygw exited at start (%v): %s", err, logTail(logPath))
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
			return fmt.Errorf("versitygw did not answer on %s within 30s: %s", addr, logTail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Endpoint = endpoint
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("versitygw log: %s", logTail(logPath))
		}
	})
	return nil
}

func find(t testing.TB) string {
	t.Helper()
	var candidates []string
	if dir := os.Getenv("MTUF_TOOLS_BIN"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, "versitygw"))
	}
	if root, err := moduleRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, ".tools", "bin", "versitygw"))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return c
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("versitygw not found in $MTUF_TOOLS_BIN, .tools/bin or PATH; CI must %s", installHint)
	}
	t.Skipf("versitygw not found in $MTUF_TOOLS_BIN, .tools/bin or PATH; %s", installHint)
	return ""
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
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
