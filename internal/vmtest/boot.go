package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mtuf/mtuf/internal/agentapi"
)

// DefaultBootTimeout bounds a boot until the agent answers. A boot under
// TCG takes 15-20 s on an idle machine; shared CI machines are slower.
const DefaultBootTimeout = 4 * time.Minute

// BuildGuest builds mtuf-agent and vminit from the module at root as
// static binaries (CGO_ENABLED=0) into dir, with -trimpath so that the
// same sources give the same bytes wherever they are built.
func BuildGuest(ctx context.Context, root, dir string) (agent, init string, err error) {
	// go build runs in root: the outputs need absolute paths.
	if dir, err = filepath.Abs(dir); err != nil {
		return "", "", err
	}
	agent, init = filepath.Join(dir, "mtuf-agent"), filepath.Join(dir, "vminit")
	for out, pkg := range map[string]string{agent: "./cmd/mtuf-agent", init: "./internal/vmtest/vminit"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if b, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %w: %s", pkg, err, b)
		}
	}
	return agent, init, nil
}

// VM is a booted test image: QEMU and its swtpm.
type VM struct {
	// Agent is the agent's HOST:PORT on the host's loopback.
	Agent string
	// Console is the guest's serial console log.
	Console string
	// BootTime is the time from starting QEMU to the agent's first answer.
	BootTime time.Duration

	dir        string
	qemu       *exec.Cmd
	swtpm      *exec.Cmd
	qemuExited chan struct{}
	qemuErr    error
}

// Boot boots the ESP image esp in a fresh VM, with its state (the vTPM's,
// a copy of the firmware variables, the console log) in dir, and returns
// once the agent answers. Close stops it. On failure, the error ends with
// the console log's tail.
func Boot(ctx context.Context, t *Tools, esp, dir string, timeout time.Duration) (vm *VM, err error) {
	if timeout <= 0 {
		timeout = DefaultBootTimeout
	}
	vm = &VM{dir: dir, Console: filepath.Join(dir, "console.log"), qemuExited: make(chan struct{})}
	defer func() {
		if err != nil {
			vm.Close()
			vm = nil
		}
	}()
	tpmDir := filepath.Join(dir, "tpm")
	if err := os.MkdirAll(tpmDir, 0o700); err != nil {
		return nil, err
	}
	vars := filepath.Join(dir, "OVMF_VARS.fd")
	if err := copyFile(t.OVMFVars, vars); err != nil {
		return nil, fmt.Errorf("firmware variables: %w", err)
	}

	// swtpm serves one QEMU and quits when QEMU closes the control
	// channel, so every boot gets its own, with a fresh state.
	sock := filepath.Join(dir, "swtpm.sock")
	vm.swtpm = exec.Command(t.Swtpm, "socket", "--tpm2",
		"--tpmstate", "dir="+tpmDir,
		"--ctrl", "type=unixio,path="+sock,
		"--log", "file="+filepath.Join(dir, "swtpm.log")+",level=1",
		"--terminate")
	vm.swtpm.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := vm.swtpm.Start(); err != nil {
		return nil, fmt.Errorf("start swtpm: %w", err)
	}
	if err := waitFile(ctx, sock, 10*time.Second); err != nil {
		return nil, fmt.Errorf("swtpm: %w (log %s)", err, filepath.Join(dir, "swtpm.log"))
	}

	port, err := freePort()
	if err != nil {
		return nil, err
	}
	vm.Agent = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := []string{
		// No default devices: QEMU's default CD-ROM would add a boot
		// attempt to PCR 4, its default NIC an option ROM to PCR 2.
		"-nodefaults", "-no-reboot",
		"-machine", "q35", "-accel", "tcg", "-m", "512", "-smp", "1",
		"-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + t.OVMFCode,
		"-drive", "if=pflash,format=raw,unit=1,file=" + vars,
		"-chardev", "socket,id=chrtpm,path=" + sock,
		"-tpmdev", "emulator,id=tpm0,chardev=chrtpm",
		"-device", "tpm-tis,tpmdev=tpm0",
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:%d-:%d", port, AgentPort),
		// romfile= leaves out the NIC's option ROM (iPXE), which the
		// firmware would measure and offer as a boot option.
		"-device", "e1000,netdev=n0,romfile=",
		"-drive", "file=" + esp + ",format=raw,if=virtio,readonly=on",
		"-serial", "file:" + vm.Console,
		"-display", "none", "-monitor", "none",
	}
	vm.qemu = exec.Command(t.QEMU, args...)
	var qemuOut bytes.Buffer
	vm.qemu.Stdout, vm.qemu.Stderr = &qemuOut, &qemuOut
	vm.qemu.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	start := time.Now()
	if err := vm.qemu.Start(); err != nil {
		return nil, fmt.Errorf("start QEMU: %w", err)
	}
	go func() {
		vm.qemuErr = vm.qemu.Wait()
		close(vm.qemuExited)
	}()

	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if err := probe(wctx, vm.Agent); err == nil {
			vm.BootTime = time.Since(start)
			return vm, nil
		}
		select {
		case <-vm.qemuExited:
			return nil, fmt.Errorf("QEMU exited before the agent answered (%v): %s\n%s", vm.qemuErr, strings.TrimSpace(qemuOut.String()), vm.ConsoleTail(40))
		case <-wctx.Done():
			return nil, fmt.Errorf("the agent did not answer on %s within %v: %w\n%s", vm.Agent, timeout, wctx.Err(), vm.ConsoleTail(40))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// probe asks the agent for its AK. Until the guest listens, QEMU accepts
// the forwarded connection and closes it.
func probe(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+agentapi.AKPath, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

// ConsoleTail is the last n lines of the console log, for error messages.
func (vm *VM) ConsoleTail(n int) string {
	b, err := os.ReadFile(vm.Console)
	if err != nil {
		return "no console log: " + err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "console log " + vm.Console + " (last lines):\n" + strings.Join(lines, "\n")
}

// Close stops QEMU and swtpm and waits for them.
func (vm *VM) Close() error {
	var errs []error
	if vm.qemu != nil && vm.qemu.Process != nil {
		select {
		case <-vm.qemuExited:
		default:
			vm.qemu.Process.Kill()
			<-vm.qemuExited
		}
	}
	if vm.swtpm != nil && vm.swtpm.Process != nil {
		// swtpm --terminate quits with QEMU; kill it in case QEMU never
		// connected.
		vm.swtpm.Process.Kill()
		if err := vm.swtpm.Wait(); err != nil && !isKilled(err) {
			errs = append(errs, fmt.Errorf("swtpm: %w", err))
		}
	}
	return errors.Join(errs...)
}

func isKilled(err error) bool {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		ws, ok := ee.Sys().(syscall.WaitStatus)
		return ok && ws.Signaled()
	}
	return false
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitFile(ctx context.Context, path string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o600)
}
