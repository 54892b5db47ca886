// Package kmstest runs a real AWS KMS emulator, local-kms, for tests of
// code that signs with keys held in a KMS.
//
// The server is the local-kms binary, installed by make tools into
// .tools/bin at the module root. Tests skip when it is missing, and fail
// when CI=true, where a missing server means a broken CI setup.
//
// local-kms listens on every interface and has no authentication, so
// everything here reaches it at 127.0.0.1 only: the endpoint that Environ
// gives code under test, and the client that CreateKey uses. One server
// keeps one data folder, its own temporary one.
package kmstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"

	"github.com/mtuf/mtuf/internal/testtool"
)

// Version is the local-kms commit the tests are written against.
const Version = "v0.0.0-20260228092603-2a5e92d09ab6"

const installHint = "install it with make tools (go install github.com/nsmithuk/local-kms@" + Version + ")"

// ErrNotInstalled is returned by Run when local-kms is not found.
var ErrNotInstalled = errors.New("local-kms not found in $MTUF_TOOLS_BIN, .tools/bin or PATH: " + installHint)

// Server is a running local-kms with no keys.
type Server struct {
	Endpoint string // http://127.0.0.1:PORT
	Region   string

	work    string
	logPath string
	stop    func()
}

// Dummy credentials: local-kms checks none, but the AWS SDK signs every
// request and needs some.
const (
	accessKey = "AKIAMTUFTEST"
	secretKey = "mtuf-test-secret"
)

// Start runs a server for the test and stops it when the test ends; it
// skips the test without local-kms (fails it under CI=true).
func Start(t testing.TB) *Server {
	t.Helper()
	return testtool.StartServer(t, "local-kms", Run, ErrNotInstalled)
}

// startedRE is the log line that names the port the server listens on.
var startedRE = regexp.MustCompile(`Local KMS started on [0-9.]*:(\d+)`)

// Run starts a server with a fresh data folder on a port of the kernel's
// choosing.
func Run(ctx context.Context) (*Server, error) {
	bin, err := find()
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "mtuf-local-kms-")
	if err != nil {
		return nil, err
	}
	s := &Server{Region: "eu-west-1", work: work, logPath: filepath.Join(work, "local-kms.log")}
	if err := s.run(ctx, bin); err != nil {
		os.RemoveAll(work)
		return nil, fmt.Errorf("start local-kms: %w", err)
	}
	return s, nil
}

func (s *Server) run(ctx context.Context, bin string) error {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"PORT=0",
		"KMS_DATA_PATH="+filepath.Join(s.work, "data"),
		"KMS_REGION="+s.Region,
		"KMS_SEED_PATH="+filepath.Join(s.work, "no-seed.yaml"))
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
	deadline := time.Now().Add(30 * time.Second)
	for {
		if port := s.port(); port != "" {
			s.Endpoint = "http://127.0.0.1:" + port
			s.stop = stop
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("local-kms exited at start (%v): %s", err, s.Log())
		case <-ctx.Done():
			stop()
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("local-kms did not say its port within 30s: %s", s.Log())
		}
	}
}

// port reads the listening port from the log, "" until it is there.
func (s *Server) port() string {
	f, err := os.Open(s.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := startedRE.FindStringSubmatch(sc.Text()); m != nil {
			return m[1]
		}
	}
	return ""
}

// Close stops the server and removes its data.
func (s *Server) Close() error {
	if s.stop != nil {
		s.stop()
		s.stop = nil
	}
	return os.RemoveAll(s.work)
}

// Log returns the end of the server's log, to show when a test fails.
func (s *Server) Log() string {
	data, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 4000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return string(data)
}

// Environ returns the AWS environment that points a process's KMS client,
// and nothing else, at the server, with dummy credentials and no shared
// configuration files (dir names missing ones), so that neither the
// developer's AWS account nor instance metadata is ever reached.
func (s *Server) Environ(dir string) []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + accessKey,
		"AWS_SECRET_ACCESS_KEY=" + secretKey,
		"AWS_SESSION_TOKEN=",
		"AWS_PROFILE=",
		"AWS_DEFAULT_PROFILE=",
		"AWS_REGION=" + s.Region,
		"AWS_DEFAULT_REGION=",
		"AWS_ENDPOINT_URL=",
		"AWS_ENDPOINT_URL_KMS=" + s.Endpoint,
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

// Client is a KMS client of the server, for a test's own setup.
func (s *Server) Client() *kms.Client {
	return kms.New(kms.Options{
		Region:       s.Region,
		BaseEndpoint: aws.String(s.Endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
	})
}

// CreateKey makes a new ECDSA P-256 signing key under alias (such as
// "alias/mtuf-online") and returns its reference, awskms:///alias/....
func (s *Server) CreateKey(ctx context.Context, alias string) (string, error) {
	if !strings.HasPrefix(alias, "alias/") {
		return "", fmt.Errorf("alias %q must start with alias/", alias)
	}
	c := s.Client()
	out, err := c.CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec:  types.KeySpecEccNistP256,
		KeyUsage: types.KeyUsageTypeSignVerify,
	})
	if err != nil {
		return "", fmt.Errorf("local-kms: create key: %w", err)
	}
	if err := s.SetAlias(ctx, alias, *out.KeyMetadata.KeyId); err != nil {
		return "", err
	}
	return "awskms:///" + alias, nil
}

// SetAlias points alias at the key keyID, creating the alias or moving it
// from the key it named (as an operator rotating a key does).
func (s *Server) SetAlias(ctx context.Context, alias, keyID string) error {
	c := s.Client()
	_, err := c.CreateAlias(ctx, &kms.CreateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(keyID)})
	var exists *types.AlreadyExistsException
	if errors.As(err, &exists) {
		_, err = c.UpdateAlias(ctx, &kms.UpdateAliasInput{AliasName: aws.String(alias), TargetKeyId: aws.String(keyID)})
	}
	if err != nil {
		return fmt.Errorf("local-kms: alias %s: %w", alias, err)
	}
	return nil
}

// Installed tells whether Run can find local-kms.
func Installed() bool {
	_, err := find()
	return err == nil
}

func find() (string, error) {
	p, err := testtool.Lookup("local-kms")
	if err != nil {
		return "", ErrNotInstalled
	}
	return p, nil
}
