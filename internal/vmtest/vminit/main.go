// Command vminit is /init of the test images that vmtest boots: it mounts
// what mtuf-agent needs (devices, sysfs, securityfs for the firmware's
// event log), loads the network driver, gives eth0 QEMU user networking's
// guest address, and runs mtuf-agent with the arguments in /agent.args.
// When the agent exits, it powers the machine off, so that QEMU exits
// instead of the kernel panicking over a dead init.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The guest's address on QEMU's user network (its fixed DHCP lease), where
// QEMU's hostfwd rules point.
var (
	guestAddr = [4]byte{10, 0, 2, 15}
	guestMask = [4]byte{255, 255, 255, 0}
)

const (
	agentPath = "/mtuf-agent"
	argsPath  = "/agent.args"
	iface     = "eth0"
	// Built-in drivers probe before init runs, modules when loaded; TCG
	// emulation is slow, so devices get a generous while to appear.
	deviceWait = 30 * time.Second
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "vminit: %v\n", err)
	}
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(os.Stderr, "vminit: power off: %v\n", err)
	}
	// PID 1 must not exit: the kernel would panic.
	select {}
}

func run() error {
	mounts := []struct{ source, target, fstype string }{
		{"devtmpfs", "/dev", "devtmpfs"},
		{"proc", "/proc", "proc"},
		{"sysfs", "/sys", "sysfs"},
		{"securityfs", "/sys/kernel/security", "securityfs"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.source, m.target, m.fstype, 0, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	mods, err := filepath.Glob("/lib/modules/*.ko")
	if err != nil {
		return err
	}
	for _, m := range mods {
		if err := loadModule(m); err != nil {
			return err
		}
	}
	if err := waitFor("/sys/class/net/" + iface); err != nil {
		return err
	}
	if err := configureNetwork(); err != nil {
		return err
	}
	if err := waitFor("/dev/tpmrm0"); err != nil {
		return err
	}
	args, err := readArgs(argsPath)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "vminit: %s up at %d.%d.%d.%d, starting %s %s\n", iface,
		guestAddr[0], guestAddr[1], guestAddr[2], guestAddr[3], agentPath, strings.Join(args, " "))
	cmd := exec.Command(agentPath, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w", agentPath, err)
	}
	return nil
}

func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.FinitModule(int(f.Fd()), "", 0); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("load module %s: %w", path, err)
	}
	return nil
}

func waitFor(path string) error {
	deadline := time.Now().Add(deviceWait)
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear within %v", path, deviceWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// configureNetwork brings lo and eth0 up, eth0 with the guest address.
// QEMU's gateway is on the same /24, so no route is needed to answer it.
func configureNetwork() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	for _, name := range []string{"lo", iface} {
		if name == iface {
			for _, set := range []struct {
				req  uint
				addr [4]byte
			}{{unix.SIOCSIFADDR, guestAddr}, {unix.SIOCSIFNETMASK, guestMask}} {
				ifr, err := unix.NewIfreq(name)
				if err != nil {
					return err
				}
				if err := ifr.SetInet4Addr(set.addr[:]); err != nil {
					return err
				}
				if err := unix.IoctlIfreq(fd, set.req, ifr); err != nil {
					return fmt.Errorf("set address of %s: %w", name, err)
				}
			}
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("flags of %s: %w", name, err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("bring %s up: %w", name, err)
		}
	}
	return nil
}

// readArgs reads the agent's arguments, one per line.
func readArgs(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var args []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			args = append(args, line)
		}
	}
	return args, sc.Err()
}
