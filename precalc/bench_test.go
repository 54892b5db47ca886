package precalc

import (
	"context"
	"crypto"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/mtuf/mtuf/internal/cputime"
	"github.com/mtuf/mtuf/internal/testtool"
)

// BenchmarkPrecalc compares the precalculation of a 256 MiB UKI (almost
// all of it initrd, as real images are) with sha256sum of the same file, in
// the same run: the goal is that precalculating a bank costs no more than
// 1.3 times hashing the image once. scripts/benchtable.awk prints the ratio.
func BenchmarkPrecalc(b *testing.B) {
	sha256sum := testtool.Find(b, "sha256sum", "coreutils")
	dir := b.TempDir()
	initrd := make([]byte, 256<<20-2<<20)
	rng := rand.NewChaCha8([32]byte{'m', 't', 'u', 'f'})
	rng.Read(initrd)
	if err := os.WriteFile(filepath.Join(dir, "big-initrd"), initrd, 0o644); err != nil {
		b.Fatal(err)
	}
	initrd = nil
	uki := buildBenchUKI(b, dir, filepath.Join(dir, "big-initrd"))
	fi, err := os.Stat(uki)
	if err != nil {
		b.Fatal(err)
	}
	// Warm the page cache, so that both sides read from memory.
	if out, err := exec.Command(sha256sum, uki).CombinedOutput(); err != nil {
		b.Fatalf("sha256sum: %v\n%s", err, out)
	}
	// Besides wall time, each side reports the CPU time it used, which a
	// machine shared with other work distorts less: precalc hashes on
	// several cores at once, sha256sum on one.
	b.Run("sha256sum", func(b *testing.B) {
		b.SetBytes(fi.Size())
		var cpu time.Duration
		for b.Loop() {
			cmd := exec.CommandContext(context.Background(), sha256sum, uki)
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("sha256sum: %v\n%s", err, out)
			}
			cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
		}
		b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	})
	for _, bc := range []struct {
		name  string
		banks []crypto.Hash
	}{{"precalc-sha256", []crypto.Hash{crypto.SHA256}}, {"precalc-sha384", []crypto.Hash{crypto.SHA384}}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(fi.Size())
			before := cputime.Self()
			for b.Loop() {
				if _, err := File(uki, bc.banks...); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64((cputime.Self()-before).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

func buildBenchUKI(b *testing.B, dir, initrd string) string {
	objcopy := testtool.Find(b, "objcopy", "apt-get install binutils")
	stub := need(b, stubPath, "systemd-boot-efi")
	cmdline := filepath.Join(dir, "cmdline")
	if err := os.WriteFile(cmdline, []byte("console=ttyS0"), 0o644); err != nil {
		b.Fatal(err)
	}
	out := filepath.Join(dir, "uki.efi")
	run(b, objcopy,
		"--add-section", ".cmdline="+cmdline, "--change-section-vma", ".cmdline=0x30000",
		"--add-section", ".linux="+stub, "--change-section-vma", ".linux=0x2000000",
		"--add-section", ".initrd="+initrd, "--change-section-vma", ".initrd=0x3000000",
		stub, out)
	return out
}
