package agentcmd

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/tpm"
	"github.com/mtuf/mtuf/internal/tpm/tpmtest"
)

var bootDir = filepath.Join("..", "..", "testdata", "boot")

// syncBuffer is a bytes.Buffer safe for the agent's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type runningAgent struct {
	addr   string
	ready  string
	stderr *syncBuffer
	stop   context.CancelFunc
	done   chan int
}

// startAgent runs the command in the background and waits for its ready file.
func startAgent(t *testing.T, args ...string) *runningAgent {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "agent.addr")
	ctx, cancel := context.WithCancel(context.Background())
	a := &runningAgent{ready: ready, stderr: &syncBuffer{}, stop: cancel, done: make(chan int, 1)}
	args = append([]string{"--listen", "127.0.0.1:0", "--ready-file", ready}, args...)
	go func() { a.done <- run(ctx, args, &bytes.Buffer{}, a.stderr) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-a.done:
		case <-time.After(30 * time.Second):
			t.Error("agent did not stop")
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		if b, err := os.ReadFile(ready); err == nil {
			a.addr = strings.TrimSpace(string(b))
			if _, _, err := net.SplitHostPort(a.addr); err != nil {
				t.Fatalf("ready file holds %q, not HOST:PORT", b)
			}
			return a
		}
		select {
		case code := <-a.done:
			t.Fatalf("agent exited with %d before it was ready: %s", code, a.stderr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent not ready after 60s: %s", a.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// shutdown stops the agent as SIGTERM would and returns its exit status.
func (a *runningAgent) shutdown(t *testing.T) int {
	t.Helper()
	a.stop()
	select {
	case code := <-a.done:
		a.done <- code // for the cleanup
		return code
	case <-time.After(30 * time.Second):
		t.Fatal("agent did not stop")
		return -1
	}
}

func verify(t *testing.T, addr string, ak crypto.PublicKey) {
	t.Helper()
	n := make([]byte, 32)
	if _, err := rand.Read(n); err != nil {
		t.Fatal(err)
	}
	att, err := agentapi.Fetch(context.Background(), http.DefaultClient, "http://"+addr, n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.VerifyAttestation(att, server.VerifyOpts{Nonce: n, TrustedAKs: []crypto.PublicKey{ak}, HashAlgo: tpm2.AlgSHA256}); err != nil {
		t.Fatalf("VerifyAttestation: %v", err)
	}
}

func TestServeSimulator(t *testing.T) {
	dir := t.TempDir()
	akOut := filepath.Join(dir, "ak.pem")
	a := startAgent(t, "--tpm", "sim:5", "--boot-log", filepath.Join(bootDir, "image-v1.0.0.yaml"), "--ak-pub-out", akOut)

	pemBytes, err := os.ReadFile(akOut)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := agentapi.ParsePublicKeyPEM(pemBytes)
	if err != nil {
		t.Fatalf("--ak-pub-out: %v", err)
	}
	served, err := agentapi.FetchAK(context.Background(), http.DefaultClient, "http://"+a.addr)
	if err != nil {
		t.Fatal(err)
	}
	if !served.(interface{ Equal(crypto.PublicKey) bool }).Equal(pinned) {
		t.Fatal("the served AK differs from the one written to --ak-pub-out")
	}
	verify(t, a.addr, pinned)

	if code := a.shutdown(t); code != 0 {
		t.Fatalf("exit status %d after shutdown, want 0: %s", code, a.stderr)
	}
	logs := a.stderr.String()
	for _, want := range []string{
		`msg="booted TPM"`, `boot="mtuf-image v1.0.0"`,
		"msg=request", "method=GET path=/v1/ak status=200",
		"method=POST path=/v1/attestation status=200",
		`msg="shutting down"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if n := strings.Count(logs, "msg=request"); n != 2 {
		t.Errorf("%d request lines for 2 requests:\n%s", n, logs)
	}
	// The ready file is gone, and the simulator was closed: a new one opens.
	if _, err := os.Stat(a.ready); !os.IsNotExist(err) {
		t.Errorf("ready file left behind: %v", err)
	}
	rw, err := tpm.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	rw.Close()
}

func TestSameSeedSameAK(t *testing.T) {
	ak := func() string {
		out := filepath.Join(t.TempDir(), "ak.pem")
		a := startAgent(t, "--tpm", "sim:9", "--ak-pub-out", out)
		if code := a.shutdown(t); code != 0 {
			t.Fatalf("exit %d: %s", code, a.stderr)
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	if a, b := ak(), ak(); a != b {
		t.Fatalf("two runs on sim:9 wrote different AKs:\n%s\n%s", a, b)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	badBoot := filepath.Join(dir, "bad-boot.yaml")
	if err := os.WriteFile(badBoot, []byte("name: x\nevents:\n  - {pcr: 4, type: EV_KERNEL, description: kernel, data: k}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()

	tests := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"unknown flag", []string{"--bogus"}, cli.ExitUsage, []string{"unknown flag: --bogus", "--help"}},
		{"argument", []string{"serve"}, cli.ExitUsage, []string{`unexpected argument "serve"`}},
		{"ak type", []string{"--tpm", "sim", "--ak-type", "dsa"}, cli.ExitUsage, []string{"--ak-type", `"dsa"`, "ecc or rsa"}},
		{"empty listen", []string{"--tpm", "sim", "--listen", ""}, cli.ExitUsage, []string{"--listen"}},
		{"boot log on a device", []string{"--tpm", "/dev/tpmrm0", "--boot-log", filepath.Join(bootDir, "image-v1.0.0.yaml")}, cli.ExitUsage,
			[]string{"--boot-log", "test TPM", `"/dev/tpmrm0"`}},
		{"no TPM device", []string{"--tpm", filepath.Join(dir, "tpm0"), "--listen", "127.0.0.1:0"}, cli.ExitFailed,
			[]string{"tpm0", "no such device", "sim"}},
		{"bad seed", []string{"--tpm", "sim:x", "--listen", "127.0.0.1:0"}, cli.ExitFailed, []string{`"sim:x"`, "integer"}},
		{"missing boot log", []string{"--tpm", "sim", "--boot-log", filepath.Join(dir, "none.yaml")}, cli.ExitFailed,
			[]string{"none.yaml", "no such file"}},
		{"bad boot log", []string{"--tpm", "sim", "--boot-log", badBoot}, cli.ExitFailed,
			[]string{"bad-boot.yaml", "events[0] (line 3)", `"EV_KERNEL"`}},
		{"busy port", []string{"--tpm", "sim", "--listen", busy.Addr().String()}, cli.ExitFailed,
			[]string{"listen on " + busy.Addr().String(), "address already in use", "--listen"}},
		{"bad listen", []string{"--tpm", "sim", "--listen", "nohost"}, cli.ExitFailed, []string{"listen on nohost"}},
		{"ak out unwritable", []string{"--tpm", "sim", "--listen", "127.0.0.1:0", "--ak-pub-out", filepath.Join(dir, "no", "ak.pem")}, cli.ExitFailed,
			[]string{"--ak-pub-out", "no such file"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			code := run(ctx, tc.args, &bytes.Buffer{}, &stderr)
			if code != tc.code {
				t.Fatalf("exit status %d, want %d: %s", code, tc.code, stderr.String())
			}
			if !strings.HasPrefix(stderr.String(), "mtuf-agent: ") {
				t.Errorf("stderr %q does not start with the command name", stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not mention %q", stderr.String(), w)
				}
			}
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 {
		t.Fatalf("--help exit %d: %s", code, stderr.String())
	}
	for _, want := range []string{"Examples:", "mtuf-agent --tpm sim:1 --boot-log", "--ready-file", "--ak-pub-out", "/dev/tpmrm0", "127.0.0.1:8733"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("--help lacks %q", want)
		}
	}
}

func TestServeSwtpm(t *testing.T) {
	// No simulator: this runs beside the tests that hold the process-wide one.
	t.Parallel()
	tpmtest.RequireTools(t, "swtpm")
	sw := tpmtest.StartSwtpm(t)
	chain := filepath.Join(bootDir, "image-v1.1.0.yaml")
	akOut := filepath.Join(t.TempDir(), "ak.pem")

	a := startAgent(t, "--tpm", sw.Spec, "--boot-log", chain, "--ak-pub-out", akOut)
	pemBytes, err := os.ReadFile(akOut)
	if err != nil {
		t.Fatal(err)
	}
	ak, err := agentapi.ParsePublicKeyPEM(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	verify(t, a.addr, ak)
	if code := a.shutdown(t); code != 0 {
		t.Fatalf("exit %d: %s", code, a.stderr)
	}

	// swtpm keeps its PCRs: booting it again would make a log that does
	// not replay, and is refused.
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--tpm", sw.Spec, "--listen", "127.0.0.1:0", "--boot-log", chain}, &bytes.Buffer{}, &stderr)
	if code != cli.ExitFailed || !strings.Contains(stderr.String(), "not in its reset state") {
		t.Fatalf("second boot of swtpm: exit %d, %s", code, stderr.String())
	}

	// Without --boot-log the agent serves the same TPM and the same AK.
	b := startAgent(t, "--tpm", sw.Spec)
	verify(t, b.addr, ak)
}
