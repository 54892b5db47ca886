package vmtest

import (
	"bytes"
	"context"
	"debug/pe"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/internal/testtool"
)

func findTools(t *testing.T) *Tools {
	t.Helper()
	tools, err := FindTools()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must have the image tools: %v", err)
		}
		t.Skip(err)
	}
	return tools
}

// The checksum objcopy leaves is recomputed after the time stamp is
// zeroed; systemd's stub, as Debian ships it, carries a valid one.
func TestPEChecksumOfStub(t *testing.T) {
	tools := findTools(t)
	b, err := os.ReadFile(tools.Stub)
	if err != nil {
		t.Fatal(err)
	}
	off := int(binary.LittleEndian.Uint32(b[0x3c:])) + 24 + 64
	want := binary.LittleEndian.Uint32(b[off:])
	if want == 0 {
		t.Skip("the stub carries no checksum to compare with")
	}
	binary.LittleEndian.PutUint32(b[off:], 0)
	if got := peChecksum(b); got != want {
		t.Fatalf("peChecksum of %s = %#x, want %#x (its CheckSum field)", tools.Stub, got, want)
	}
}

// Two builds of the same inputs give the same ESP, byte for byte, and
// the UKI holds the sections systemd-stub measures, with the command line
// it was given.
func TestBuildImageReproducible(t *testing.T) {
	tools := findTools(t)
	testtool.Find(t, "apt-get", "a Debian system, to download a Debian kernel")
	ctx := context.Background()
	k, err := FetchKernel(ctx, "", func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	// The builder copies the guest's programs into the initramfs as they
	// are: fixed bytes stand in for them here, so that the test needs no
	// build of mtuf-agent.
	guest := t.TempDir()
	agent, init := filepath.Join(guest, "mtuf-agent"), filepath.Join(guest, "vminit")
	for _, p := range []string{agent, init} {
		if err := os.WriteFile(p, []byte("#!/bin/false\n"+p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	const cmdline = "console=ttyS0 mtuf.test=reproducible"
	var esps [2][]byte
	var uki string
	for i := range esps {
		img, err := BuildImage(ctx, t.TempDir(), ImageOptions{Tools: tools, Kernel: k, Agent: agent, Init: init, Cmdline: cmdline})
		if err != nil {
			t.Fatal(err)
		}
		if esps[i], err = os.ReadFile(img.ESP); err != nil {
			t.Fatal(err)
		}
		uki = img.UKI
	}
	if !bytes.Equal(esps[0], esps[1]) {
		t.Fatal("two builds of the same image differ")
	}

	f, err := pe.Open(uki)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.TimeDateStamp != 0 {
		t.Errorf("UKI TimeDateStamp = %#x, want 0", f.TimeDateStamp)
	}
	for _, name := range []string{".osrel", ".cmdline", ".linux", ".initrd"} {
		s := f.Section(name)
		if s == nil {
			t.Errorf("UKI has no %s section", name)
			continue
		}
		if name == ".cmdline" {
			data, err := s.Data()
			if err != nil {
				t.Fatal(err)
			}
			if got := string(data[:s.VirtualSize]); got != cmdline {
				t.Errorf(".cmdline = %q, want %q", got, cmdline)
			}
		}
	}
	b, err := os.ReadFile(uki)
	if err != nil {
		t.Fatal(err)
	}
	off := int(binary.LittleEndian.Uint32(b[0x3c:])) + 24 + 64
	want := binary.LittleEndian.Uint32(b[off:])
	binary.LittleEndian.PutUint32(b[off:], 0)
	if got := peChecksum(b); got != want {
		t.Errorf("UKI CheckSum = %#x, want %#x", want, got)
	}
}

// A kernel package that apt does not know is named, with what to do.
func TestFetchKernelUnknownPackage(t *testing.T) {
	testtool.Find(t, "apt-cache", "a Debian system")
	t.Setenv("MTUF_VM_CACHE", t.TempDir())
	_, err := FetchKernel(context.Background(), "linux-image-0.0.0-mtuf-none", nil)
	if err == nil || !strings.Contains(err.Error(), "apt-cache show linux-image-0.0.0-mtuf-none") || !strings.Contains(err.Error(), "apt-get update") {
		t.Fatalf("err = %v, want one naming the package and apt-get update", err)
	}
}
