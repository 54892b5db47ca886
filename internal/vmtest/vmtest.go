// Package vmtest builds small bootable images from Debian packages (a
// Unified Kernel Image of systemd's stub, a Debian 6.1 kernel and an
// initramfs that runs mtuf-agent) and boots them under QEMU with OVMF and
// a swtpm vTPM, so that tests and demos attest real firmware, a real UKI
// and a real kernel. The agent in the guest is reached on the host through
// QEMU user networking.
//
// Downloaded kernels are cached under $MTUF_VM_CACHE (default: the user's
// cache directory, mtuf-vmtest), one directory per package version.
package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// APTPackages are the Debian packages a boot needs, besides the kernel that
// FetchKernel downloads.
const APTPackages = "qemu-system-x86 ovmf swtpm swtpm-tools systemd-boot-efi mtools dosfstools binutils"

// Tools are the programs and firmware files a build and a boot use.
type Tools struct {
	QEMU, Swtpm              string
	Objcopy, MkfsVfat, Mcopy string
	// Stub is systemd-boot's linuxx64.efi.stub.
	Stub string
	// OVMFCode and OVMFVars are the firmware and its variable store
	// template (copied for every boot).
	OVMFCode, OVMFVars string
}

// ErrMissing is wrapped by the errors of FindTools for what is not
// installed.
var ErrMissing = errors.New("not installed")

// FindTools finds the tools on PATH (and /usr/sbin, where Debian keeps
// mkfs.vfat) and the firmware files where Debian installs them.
func FindTools() (*Tools, error) {
	t := &Tools{}
	var missing []string
	look := func(dst *string, name, pkg string) {
		for _, dir := range []string{"", "/usr/sbin", "/sbin"} {
			p := name
			if dir != "" {
				p = filepath.Join(dir, name)
			}
			if found, err := exec.LookPath(p); err == nil {
				*dst = found
				return
			}
		}
		missing = append(missing, fmt.Sprintf("%s (Debian package %s)", name, pkg))
	}
	file := func(dst *string, path, pkg string) {
		if _, err := os.Stat(path); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", path, pkg))
			return
		}
		*dst = path
	}
	look(&t.QEMU, "qemu-system-x86_64", "qemu-system-x86")
	look(&t.Swtpm, "swtpm", "swtpm")
	look(&t.Objcopy, "objcopy", "binutils")
	look(&t.MkfsVfat, "mkfs.vfat", "dosfstools")
	look(&t.Mcopy, "mcopy", "mtools")
	file(&t.Stub, "/usr/lib/systemd/boot/efi/linuxx64.efi.stub", "systemd-boot-efi")
	file(&t.OVMFCode, "/usr/share/OVMF/OVMF_CODE_4M.fd", "ovmf")
	file(&t.OVMFVars, "/usr/share/OVMF/OVMF_VARS_4M.fd", "ovmf")
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s: install them with apt-get install %s", ErrMissing, strings.Join(missing, ", "), APTPackages)
	}
	return t, nil
}

// Kernel is a Debian kernel extracted into the cache.
type Kernel struct {
	// Package and Version name the Debian package it came from.
	Package, Version string
	// Vmlinuz is the kernel image (an EFI application).
	Vmlinuz string
	// Modules are the modules the initramfs loads: the driver of the
	// guest's NIC, which Debian builds as a module.
	Modules []string
}

// kernelMetaPackage depends on the current kernel package, which is booted
// unless $MTUF_VM_KERNEL_PACKAGE names another.
const kernelMetaPackage = "linux-image-amd64"

// nicModule is the driver of the NIC the guest gets (QEMU's e1000): a
// module with no dependencies in Debian's kernel.
const nicModule = "kernel/drivers/net/ethernet/intel/e1000/e1000.ko"

// CacheDir is where kernels are cached.
func CacheDir() (string, error) {
	if d := os.Getenv("MTUF_VM_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no cache directory: set MTUF_VM_CACHE: %w", err)
	}
	return filepath.Join(d, "mtuf-vmtest"), nil
}

// FetchKernel returns the kernel of pkg (when empty: $MTUF_VM_KERNEL_PACKAGE,
// else the one linux-image-amd64 depends on), downloading it with apt-get
// and extracting it with dpkg-deb into the cache the first time. progress,
// when not nil, is told what takes time.
func FetchKernel(ctx context.Context, pkg string, progress func(string)) (*Kernel, error) {
	if progress == nil {
		progress = func(string) {}
	}
	if pkg == "" {
		pkg = os.Getenv("MTUF_VM_KERNEL_PACKAGE")
	}
	if pkg == "" {
		var err error
		if pkg, err = kernelDependency(ctx); err != nil {
			return nil, err
		}
	}
	version, err := aptField(ctx, pkg, "Version")
	if err != nil {
		return nil, err
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	release := strings.TrimPrefix(pkg, "linux-image-")
	dir := filepath.Join(cache, pkg+"_"+version)
	k := &Kernel{
		Package: pkg, Version: version,
		Vmlinuz: filepath.Join(dir, "vmlinuz"),
		Modules: []string{filepath.Join(dir, filepath.Base(nicModule))},
	}
	if _, err := os.Stat(k.Vmlinuz); err == nil {
		return k, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, ".fetch-")
	if err != nil {
		return nil, fmt.Errorf("kernel cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	progress(fmt.Sprintf("downloading %s %s with apt-get download (cached in %s)", pkg, version, dir))
	dl := exec.CommandContext(ctx, "apt-get", "download", pkg+"="+version)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s=%s: %w: %s", pkg, version, err, out)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s=%s left %d .deb files, want 1", pkg, version, len(debs))
	}
	x := filepath.Join(tmp, "x")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], x).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, out)
	}
	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return nil, err
	}
	for src, dst := range map[string]string{
		filepath.Join(x, "boot", "vmlinuz-"+release):           filepath.Join(out, "vmlinuz"),
		filepath.Join(x, "boot", "config-"+release):            filepath.Join(out, "config"),
		filepath.Join(x, "lib", "modules", release, nicModule): filepath.Join(out, filepath.Base(nicModule)),
	} {
		if err := os.Rename(src, dst); err != nil {
			return nil, fmt.Errorf("%s %s: %w: is it a Debian kernel image package?", pkg, version, err)
		}
	}
	if err := os.Rename(out, dir); err != nil && !errors.Is(err, os.ErrExist) {
		if _, serr := os.Stat(k.Vmlinuz); serr != nil {
			return nil, fmt.Errorf("kernel cache %s: %w", dir, err)
		}
	}
	return k, nil
}

func kernelDependency(ctx context.Context) (string, error) {
	dep, err := aptField(ctx, kernelMetaPackage, "Depends")
	if err != nil {
		return "", err
	}
	for _, d := range strings.Split(dep, ",") {
		name := strings.Fields(d)
		if len(name) > 0 && strings.HasPrefix(name[0], "linux-image-") {
			return name[0], nil
		}
	}
	return "", fmt.Errorf("%s depends on no linux-image package (%q): set MTUF_VM_KERNEL_PACKAGE", kernelMetaPackage, dep)
}

// aptField is a field of the candidate version of pkg, as apt-cache shows it.
func aptField(ctx context.Context, pkg, field string) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", pkg).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache show %s: %w: is it a Debian package of this release (apt-get update)?", pkg, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+": "); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("apt-cache show %s: no %s field", pkg, field)
}
