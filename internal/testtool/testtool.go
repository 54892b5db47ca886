// Package testtool finds the real programs that tests run as peers
// (cosign, versitygw, in-toto, swtpm): in $MTUF_TOOLS_BIN, then in
// .tools/bin at the module root where 'make tools' installs Go tools, then
// on PATH. A test on a machine without one skips; under CI=true, where
// 'make test' has installed everything, it fails instead.
package testtool

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Find returns the path of the program name, or ends the test: a skip on a
// developer's machine, a failure under CI=true. hint says how to get it.
func Find(t testing.TB, name, hint string) string {
	t.Helper()
	if p, err := Lookup(name); err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found in $MTUF_TOOLS_BIN, .tools/bin or PATH; CI must have it: %s", name, hint)
	}
	t.Skipf("%s not found in $MTUF_TOOLS_BIN, .tools/bin or PATH (%s)", name, hint)
	return ""
}

// ErrNotFound reports a program that is in none of the places Lookup looks.
var ErrNotFound = errors.New("not found in $MTUF_TOOLS_BIN, .tools/bin or PATH")

// Lookup returns the path of the program name, looked up where Find looks,
// for helpers that start a server outside a test's lifetime.
func Lookup(name string) (string, error) {
	var candidates []string
	if dir := os.Getenv("MTUF_TOOLS_BIN"); dir != "" {
		candidates = append(candidates, filepath.Join(dir, name))
	}
	if root, err := ModuleRoot(); err == nil {
		candidates = append(candidates, filepath.Join(root, ".tools", "bin", name))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return c, nil
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	return "", fmt.Errorf("%s: %w", name, ErrNotFound)
}

// ModuleRoot is the directory of the go.mod above the working directory.
func ModuleRoot() (string, error) {
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
			return "", errors.New("no go.mod above " + dir)
		}
		dir = parent
	}
}

// CosignHint says how cosign is installed.
const CosignHint = "make tools (go install github.com/sigstore/cosign/v2/cmd/cosign@v2.6.5)"

// Cosign runs stock cosign offline: a scratch home so that it reads no
// user configuration, and no trust root fetched from the network.
type Cosign struct {
	Bin string
	Dir string
	Env []string
}

// NewCosign finds cosign and prepares a scratch directory to run it in.
func NewCosign(t testing.TB) *Cosign {
	t.Helper()
	bin := Find(t, "cosign", CosignHint)
	home := t.TempDir()
	return &Cosign{Bin: bin, Dir: t.TempDir(), Env: append(os.Environ(), "HOME="+home, "TUF_ROOT="+filepath.Join(home, "tuf"))}
}

// Run runs cosign with args in c.Dir and returns its combined output.
func (c *Cosign) Run(t testing.TB, extraEnv []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Bin, args...)
	cmd.Dir = c.Dir
	cmd.Env = append(append([]string{}, c.Env...), extraEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// VerifyBlob runs 'cosign verify-blob' with a public key, offline. cosign
// still looks for a transparency log key even with --insecure-ignore-tlog;
// pointing SIGSTORE_CT_LOG_PUBLIC_KEY_FILE at the key keeps it from
// fetching the public Sigstore trust root.
func (c *Cosign) VerifyBlob(t testing.TB, pubFile, sigFile, blobFile string) (string, error) {
	t.Helper()
	return c.Run(t, []string{"SIGSTORE_CT_LOG_PUBLIC_KEY_FILE=" + pubFile},
		"verify-blob", "--key", pubFile, "--signature", sigFile, "--insecure-ignore-tlog=true", blobFile)
}

// fuzzMinimizeLimit bounds how many runs the fuzzing engine spends
// minimizing an input, unless -fuzzminimizetime says otherwise. The
// engine minimizes every input that finds new coverage, for 60 seconds by
// default, by trying to remove every subset of its bytes: quadratic in
// the input's length. On the inputs of hundreds of bytes that parsers of
// JSON and YAML grow from their seeds, that takes the whole minute each
// time, and fuzzing stalls at a few executions. scripts/fuzz.sh passes
// the same bound to every target.
const fuzzMinimizeLimit = "1000x"

// MainWithFuzzMinimizeLimit is a TestMain that runs m with the fuzzing
// engine's minimization bounded (see fuzzMinimizeLimit), so that a plain
// 'go test -fuzz' does not stall.
func MainWithFuzzMinimizeLimit(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.fuzzminimizetime" })
	if !given {
		if err := flag.Set("test.fuzzminimizetime", fuzzMinimizeLimit); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}

// Server is a real server a test helper started (versitygw, local-kms).
type Server interface {
	Close() error
	// Log is the tail of the server's log, shown when a test fails.
	Log() string
}

// StartServer starts a server with run for the rest of the test: it skips
// the test when run reports notInstalled (fails it under CI=true, where a
// missing server means a broken CI setup), shows the server's log when the
// test fails, and stops the server when the test ends.
func StartServer[S Server](t testing.TB, name string, run func(context.Context) (S, error), notInstalled error) S {
	t.Helper()
	s, err := run(context.Background())
	if errors.Is(err, notInstalled) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: %v", err)
		}
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log: %s", name, s.Log())
		}
		if err := s.Close(); err != nil {
			t.Errorf("stop %s: %v", name, err)
		}
	})
	return s
}
