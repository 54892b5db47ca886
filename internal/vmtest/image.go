package vmtest

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// AgentPort is where mtuf-agent listens inside the guest.
const AgentPort = 8733

// ImageOptions describe a test image: a UKI of the stub, the kernel, an
// initramfs running mtuf-agent, and a command line, on a FAT ESP.
type ImageOptions struct {
	Tools  *Tools
	Kernel *Kernel
	// Agent and Init are static (CGO_ENABLED=0) builds of mtuf-agent and
	// vminit.
	Agent, Init string
	// Cmdline is the UKI's .cmdline; DefaultCmdline when empty.
	Cmdline string
	// AgentArgs are mtuf-agent's arguments; by default it serves the TPM
	// device on AgentPort.
	AgentArgs []string
	// OSRelease is the UKI's .osrel.
	OSRelease string
}

// DefaultCmdline sends the kernel's messages to the serial console (the
// console log of a boot) and makes a panic end QEMU at once (-no-reboot).
const DefaultCmdline = "console=ttyS0 panic=-1"

const defaultOSRelease = "ID=mtuf-vmtest\nNAME=\"mtuf test image\"\nVERSION_ID=1\n"

// Image is a built test image.
type Image struct {
	ESP, UKI, Initrd string
}

// BuildImage builds the initramfs, the UKI and the ESP in dir. The same
// inputs give the same bytes: cpio times are zero, the PE time stamp is
// zeroed, and the FAT volume has a fixed ID and no time stamps that vary.
func BuildImage(ctx context.Context, dir string, o ImageOptions) (*Image, error) {
	if o.Cmdline == "" {
		o.Cmdline = DefaultCmdline
	}
	if o.AgentArgs == nil {
		o.AgentArgs = []string{"--tpm", "/dev/tpmrm0", "--listen", fmt.Sprintf("0.0.0.0:%d", AgentPort)}
	}
	if o.OSRelease == "" {
		o.OSRelease = defaultOSRelease
	}
	img := &Image{
		Initrd: filepath.Join(dir, "initrd.cpio"),
		UKI:    filepath.Join(dir, "uki.efi"),
		ESP:    filepath.Join(dir, "esp.img"),
	}
	if err := writeInitramfs(img.Initrd, o); err != nil {
		return nil, fmt.Errorf("initramfs %s: %w", img.Initrd, err)
	}
	if err := buildUKI(ctx, dir, img, o); err != nil {
		return nil, fmt.Errorf("UKI %s: %w", img.UKI, err)
	}
	if err := buildESP(ctx, img, o.Tools); err != nil {
		return nil, fmt.Errorf("ESP %s: %w", img.ESP, err)
	}
	return img, nil
}

func writeInitramfs(path string, o ImageOptions) error {
	agent, err := os.ReadFile(o.Agent)
	if err != nil {
		return err
	}
	init, err := os.ReadFile(o.Init)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	w := cpioWriter{w: &buf}
	w.dir("dev")
	w.node("dev/console", 0o600, 5, 1)
	for _, d := range []string{"proc", "sys", "lib", "lib/modules", "tmp"} {
		w.dir(d)
	}
	w.file("init", 0o755, init)
	w.file("mtuf-agent", 0o755, agent)
	w.file("agent.args", 0o644, []byte(strings.Join(o.AgentArgs, "\n")+"\n"))
	for _, m := range o.Kernel.Modules {
		data, err := os.ReadFile(m)
		if err != nil {
			return err
		}
		w.file("lib/modules/"+filepath.Base(m), 0o644, data)
	}
	w.trailer()
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// cpioWriter writes the "newc" cpio format that the kernel unpacks as an
// initramfs, with every time stamp and owner zero.
type cpioWriter struct {
	w   io.Writer
	ino uint32
}

const (
	cpioDir  = 0o040000
	cpioReg  = 0o100000
	cpioChar = 0o020000
)

func (c *cpioWriter) entry(name string, mode, rdevMajor, rdevMinor uint32, data []byte) {
	c.ino++
	nlink := uint32(1)
	if mode&cpioDir != 0 {
		nlink = 2
	}
	fmt.Fprintf(c.w, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, nlink, 0, len(data), 0, 0, rdevMajor, rdevMinor, len(name)+1, 0)
	io.WriteString(c.w, name+"\x00")
	c.pad(110 + len(name) + 1)
	c.w.Write(data)
	c.pad(len(data))
}

func (c *cpioWriter) pad(n int) {
	if r := n % 4; r != 0 {
		c.w.Write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) dir(name string)                         { c.entry(name, cpioDir|0o755, 0, 0, nil) }
func (c *cpioWriter) file(name string, perm uint32, b []byte) { c.entry(name, cpioReg|perm, 0, 0, b) }
func (c *cpioWriter) node(name string, perm, major, minor uint32) {
	c.entry(name, cpioChar|perm, major, minor, nil)
}
func (c *cpioWriter) trailer() { c.ino = 0; c.entry("TRAILER!!!", 0, 0, 0, nil) }

// buildUKI adds the sections to the systemd stub with objcopy, each at an
// address after the stub's own image and the section before it.
func buildUKI(ctx context.Context, dir string, img *Image, o ImageOptions) error {
	osrel := filepath.Join(dir, "os-release")
	cmdline := filepath.Join(dir, "cmdline")
	if err := os.WriteFile(osrel, []byte(o.OSRelease), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(cmdline, []byte(o.Cmdline), 0o644); err != nil {
		return err
	}
	end, err := imageEnd(o.Tools.Stub)
	if err != nil {
		return err
	}
	const align = 0x10000
	next := (end + align - 1) &^ (align - 1)
	args := []string{}
	for _, s := range []struct{ name, file string }{
		{".osrel", osrel}, {".cmdline", cmdline}, {".linux", o.Kernel.Vmlinuz}, {".initrd", img.Initrd},
	} {
		fi, err := os.Stat(s.file)
		if err != nil {
			return err
		}
		args = append(args,
			"--add-section", s.name+"="+s.file,
			"--change-section-vma", fmt.Sprintf("%s=%#x", s.name, next))
		next = (next + uint64(fi.Size()) + align - 1) &^ (align - 1)
	}
	args = append(args, o.Tools.Stub, img.UKI)
	if out, err := exec.CommandContext(ctx, o.Tools.Objcopy, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("objcopy: %w: %s", err, out)
	}
	return zeroPETimestamp(img.UKI)
}

// imageEnd is the end of the last section of the PE image at path,
// relative to its image base.
func imageEnd(path string) (uint64, error) {
	f, err := pe.Open(path)
	if err != nil {
		return 0, fmt.Errorf("stub %s: %w", path, err)
	}
	defer f.Close()
	var end uint64
	for _, s := range f.Sections {
		if e := uint64(s.VirtualAddress) + uint64(s.VirtualSize); e > end {
			end = e
		}
	}
	return end, nil
}

// zeroPETimestamp zeroes the COFF header's TimeDateStamp, which objcopy
// sets to the time of the build (binutils 2.40 ignores SOURCE_DATE_EPOCH
// for PE), and recomputes the optional header's CheckSum, which covers it.
func zeroPETimestamp(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(b) < 0x40 {
		return fmt.Errorf("%s: too short for a PE image", path)
	}
	peOff := int(binary.LittleEndian.Uint32(b[0x3c:]))
	// Signature (4), COFF header (20), then the optional header, whose
	// CheckSum is at offset 64 in both PE32 and PE32+.
	sumOff := peOff + 24 + 64
	if peOff < 0 || sumOff+4 > len(b) || string(b[peOff:peOff+4]) != "PE\x00\x00" {
		return fmt.Errorf("%s: no PE signature at %#x", path, peOff)
	}
	// Signature (4), Machine (2), NumberOfSections (2), then TimeDateStamp.
	binary.LittleEndian.PutUint32(b[peOff+8:], 0)
	binary.LittleEndian.PutUint32(b[sumOff:], 0)
	binary.LittleEndian.PutUint32(b[sumOff:], peChecksum(b))
	return os.WriteFile(path, b, 0o755)
}

// peChecksum is the PE image checksum (as imagehlp's CheckSumMappedFile
// computes it) of b, whose CheckSum field is zero: the one's-complement
// style sum of its 16-bit words, folded to 16 bits, plus its length.
func peChecksum(b []byte) uint32 {
	var sum uint64
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint64(binary.LittleEndian.Uint16(b[i:]))
		sum = (sum & 0xffff) + (sum >> 16)
	}
	if len(b)%2 == 1 {
		sum += uint64(b[len(b)-1])
		sum = (sum & 0xffff) + (sum >> 16)
	}
	sum = (sum & 0xffff) + (sum >> 16)
	return uint32(sum) + uint32(len(b))
}

// buildESP makes a FAT image holding the UKI at the removable-media path
// that firmware boots without boot entries.
func buildESP(ctx context.Context, img *Image, t *Tools) error {
	fi, err := os.Stat(img.UKI)
	if err != nil {
		return err
	}
	// Room for the UKI and the FAT tables, in whole MiB.
	size := (fi.Size()*11/10 + 4<<20) &^ (1<<20 - 1)
	if err := os.Remove(img.ESP); err != nil && !os.IsNotExist(err) {
		return err
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, name, args...)
		// mtools stamps files with the current time unless told a fixed one.
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0", "MTOOLS_SKIP_CHECK=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", filepath.Base(name), err, out)
		}
		return nil
	}
	if err := run(t.MkfsVfat, "-C", "--invariant", "-i", "4d545546", "-n", "MTUF-ESP", img.ESP, fmt.Sprint(size/1024)); err != nil {
		return err
	}
	// mcopy -s -m copies a tree with its files' and directories' times
	// (mmd would stamp the directories with the current time): a tree
	// with fixed times keeps the ESP's bytes the same from build to build.
	stage := img.ESP + ".d"
	if err := os.RemoveAll(stage); err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	boot := filepath.Join(stage, "EFI", "BOOT")
	if err := os.MkdirAll(boot, 0o755); err != nil {
		return err
	}
	if err := copyFile(img.UKI, filepath.Join(boot, "BOOTX64.EFI")); err != nil {
		return err
	}
	epoch := time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC) // FAT's first representable day
	for _, p := range []string{filepath.Join(boot, "BOOTX64.EFI"), boot, filepath.Join(stage, "EFI")} {
		if err := os.Chtimes(p, epoch, epoch); err != nil {
			return err
		}
	}
	return run(t.Mcopy, "-i", img.ESP, "-s", "-m", filepath.Join(stage, "EFI"), "::/")
}
