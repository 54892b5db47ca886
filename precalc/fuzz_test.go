package precalc

import (
	"bytes"
	"crypto"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// addSeeds adds the real EFI applications of the machine, whole and cut
// short, so that the fuzzer starts from valid PE structure.
func addSeeds(f *testing.F) {
	f.Add([]byte("MZ"))
	f.Add(append([]byte("MZ"), make([]byte, 200)...))
	for _, p := range []string{stubPath, bootPath} {
		data, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f.Add(data[:min(len(data), 4096)])
		f.Add(data)
	}
}

// FuzzUKI runs the whole precalculation, PE parsing and Authenticode
// included, over arbitrary bytes: it must return a result or an error,
// never panic or hang.
func FuzzUKI(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		if _, err := Authenticode(r, int64(len(data)), crypto.SHA256); err != nil {
			return
		}
		res, err := UKI(r, int64(len(data)), crypto.SHA256)
		if err != nil {
			return
		}
		if _, err := res.PCRs(crypto.SHA256); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzLocate parses arbitrary bytes as a GPT disk or FAT image and reads
// the file it finds: errors are fine, panics and runaway reads are not.
func FuzzLocate(f *testing.F) {
	addSeeds(f)
	gpt := make([]byte, 4096)
	copy(gpt[512:], "EFI PART")
	f.Add(gpt)
	boot := make([]byte, 4096)
	boot[510], boot[511] = 0x55, 0xaa
	f.Add(boot)
	// A small FAT12 ESP with a stand-in BOOTX64.EFI, alone and in a GPT,
	// when mkfs.vfat and mtools are here to build it.
	if fat := tinyESP(f); fat != nil {
		f.Add(fat)
		f.Add(gptDisk(fat, espTypeGUID))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, _, err := Locate(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			return
		}
		if r.Size() > int64(len(data))*64 {
			t.Fatalf("found a %d-byte file in a %d-byte image", r.Size(), len(data))
		}
		io.Copy(io.Discard, r)
	})
}

func tinyESP(f *testing.F) []byte {
	mkfs, err1 := exec.LookPath("mkfs.vfat")
	mmd, err2 := exec.LookPath("mmd")
	mcopy, err3 := exec.LookPath("mcopy")
	if err1 != nil || err2 != nil || err3 != nil {
		return nil
	}
	dir := f.TempDir()
	img, file := filepath.Join(dir, "esp.img"), filepath.Join(dir, "BOOTX64.EFI")
	os.WriteFile(file, append([]byte("MZ"), make([]byte, 1500)...), 0o644)
	for _, args := range [][]string{{mkfs, "-C", img, "64"}, {mmd, "-i", img, "::/EFI", "::/EFI/BOOT"}, {mcopy, "-i", img, file, "::/EFI/BOOT/BOOTX64.EFI"}} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			f.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	data, err := os.ReadFile(img)
	if err != nil {
		f.Fatal(err)
	}
	return data
}
