// Package tpmtest starts real software TPMs for tests: swtpm on loopback,
// speaking to mtuf through its TCP server port and to tpm2-tools through the
// swtpm TCTI (server port N, control port N+1).
package tpmtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Swtpm is a running swtpm process.
type Swtpm struct {
	// Port is the server (command) port; the control port is Port+1, where
	// tpm2-tools' swtpm TCTI expects it.
	Port int
	// Spec opens it with tpm.Open: tcp://127.0.0.1:Port.
	Spec string
	// TCTI selects it in tpm2-tools: -T swtpm:port=Port.
	TCTI string
}

// RequireTools skips the test when one of the named programs is missing, or
// fails it when CI=true, where every tool is expected to be installed.
func RequireTools(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			msg := fmt.Sprintf("%s is not installed (Debian packages swtpm, swtpm-tools, tpm2-tools)", n)
			if os.Getenv("CI") == "true" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// StartSwtpm starts a fresh swtpm, already started (TPM2_Startup(CLEAR)), with
// its state in a temporary directory, and stops it when the test ends.
func StartSwtpm(t testing.TB) *Swtpm {
	t.Helper()
	RequireTools(t, "swtpm")
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePortPair()
		if err != nil {
			t.Fatal(err)
		}
		s, err := startSwtpm(t, port)
		if err == nil {
			return s
		}
		// Another process may have taken the ports in between; try others.
		lastErr = err
	}
	t.Fatalf("start swtpm: %v", lastErr)
	return nil
}

func startSwtpm(t testing.TB, port int) (*Swtpm, error) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "swtpm.log")
	cmd := exec.Command("swtpm", "socket", "--tpm2",
		"--tpmstate", "dir="+dir,
		"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
		"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
		"--flags", "not-need-init,startup-clear",
		"--log", "file="+logPath,
	)
	out, err := os.Create(filepath.Join(dir, "swtpm.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("run swtpm: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
	}

	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err
			logs, _ := os.ReadFile(filepath.Join(dir, "swtpm.out"))
			return nil, fmt.Errorf("swtpm exited at start (%v): %s", err, logs)
		default:
		}
		// Probe the control port: a connection to the server port would
		// occupy swtpm's only client slot.
		c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)), time.Second)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("swtpm did not listen on %s within 15s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Cleanup(stop)
	return &Swtpm{
		Port: port,
		Spec: "tcp://" + addr,
		TCTI: fmt.Sprintf("swtpm:port=%d", port),
	}, nil
}

// freePortPair returns a port N on 127.0.0.1 such that N and N+1 were free.
func freePortPair() (int, error) {
	for i := 0; i < 50; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l2, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		l.Close()
		if err == nil {
			l2.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no two consecutive free ports on 127.0.0.1")
}
