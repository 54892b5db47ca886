package precalc

import (
	"bytes"
	"context"
	"crypto"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtuf/mtuf/internal/testtool"
)

// Real programs and files from Debian packages that the tests check the
// model against; 'make apt' installs them.
const (
	stubPath       = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"
	bootPath       = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	systemdMeasure = "/usr/lib/systemd/systemd-measure"
)

// need returns path, or ends the test like testtool.Find: a skip on a
// developer's machine, a failure under CI=true.
func need(t testing.TB, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found; CI must have it: apt-get install %s", path, pkg)
	}
	t.Skipf("%s not found (apt-get install %s)", path, pkg)
	return ""
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ukiFixture is a UKI built once per test binary the way ukify and the
// tests of the real boot build one: objcopy adds the sections to the stub.
// The stub itself stands in as the kernel, being a real PE application.
type ukiFixture struct {
	dir, path                     string
	linux, osrel, cmdline, initrd string
}

var (
	fixtureOnce sync.Once
	fixture     *ukiFixture
	fixtureErr  string
	fixtureDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if fixtureDir != "" {
		os.RemoveAll(fixtureDir)
	}
	os.Exit(code)
}

func buildUKI(t testing.TB, dir string, cmdline string, initrd []byte) string {
	t.Helper()
	objcopy := testtool.Find(t, "objcopy", "apt-get install binutils")
	stub := need(t, stubPath, "systemd-boot-efi")
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	osrel := write("osrel", []byte("ID=mtuf-test\nVERSION_ID=1\n"))
	cl := write("cmdline", []byte(cmdline))
	rd := write("initrd", initrd)
	out := filepath.Join(dir, "uki.efi")
	run(t, objcopy,
		"--add-section", ".osrel="+osrel, "--change-section-vma", ".osrel=0x20000",
		"--add-section", ".cmdline="+cl, "--change-section-vma", ".cmdline=0x30000",
		"--add-section", ".linux="+stub, "--change-section-vma", ".linux=0x2000000",
		"--add-section", ".initrd="+rd, "--change-section-vma", ".initrd=0x3000000",
		stub, out)
	return out
}

func getFixture(t *testing.T) *ukiFixture {
	t.Helper()
	fixtureOnce.Do(func() {
		dir, err := os.MkdirTemp("", "precalc-uki")
		if err != nil {
			fixtureErr = err.Error()
			return
		}
		fixtureDir = dir
		initrd := bytes.Repeat([]byte("070701 initrd of the test "), 40000)
		f := &ukiFixture{dir: dir, linux: stubPath}
		f.path = buildUKI(t, dir, " console=ttyS0\tmtuf.test=1\n", initrd)
		f.osrel, f.cmdline, f.initrd = filepath.Join(dir, "osrel"), filepath.Join(dir, "cmdline"), filepath.Join(dir, "initrd")
		fixture = f
	})
	if fixture == nil {
		if fixtureErr != "" {
			t.Fatal(fixtureErr)
		}
		t.Skip("no UKI fixture (see the first test that built it)")
	}
	return fixture
}

func fileResult(t *testing.T, path string) *Result {
	t.Helper()
	r, err := File(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestAuthenticodeMatchesPesign checks the Authenticode hash against
// Debian's pesign on real EFI applications: the signed systemd stub and
// boot loader, and a UKI built from the stub.
func TestAuthenticodeMatchesPesign(t *testing.T) {
	t.Parallel()
	pesign := testtool.Find(t, "pesign", "apt-get install pesign")
	files := []string{need(t, stubPath, "systemd-boot-efi"), need(t, bootPath, "systemd-boot-efi"), getFixture(t).path}
	re := regexp.MustCompile(`hash: ([0-9a-f]{64})`)
	for _, path := range files {
		m := re.FindStringSubmatch(run(t, pesign, "-h", "-i", path))
		if m == nil {
			t.Fatalf("pesign -h -i %s printed no hash", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Authenticode(bytes.NewReader(data), int64(len(data)), crypto.SHA256)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if hex.EncodeToString(got) != m[1] {
			t.Errorf("%s: Authenticode %x, pesign says %s", path, got, m[1])
		}
	}
}

// TestPCR11MatchesSystemdMeasure checks PCR 11 in both banks against
// systemd's own prediction of what systemd-stub measures.
func TestPCR11MatchesSystemdMeasure(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	measure := need(t, systemdMeasure, "systemd")
	out := run(t, measure, "calculate", "--linux="+f.linux, "--osrel="+f.osrel, "--cmdline="+f.cmdline,
		"--initrd="+f.initrd, "--bank=sha256", "--bank=sha384", "--phase=")
	res := fileResult(t, f.path)
	for _, h := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
		pcrs, err := res.PCRs(h)
		if err != nil {
			t.Fatal(err)
		}
		bank := map[crypto.Hash]string{crypto.SHA256: "sha256", crypto.SHA384: "sha384"}[h]
		want := "11:" + bank + "=" + hex.EncodeToString(pcrs[11])
		if !strings.Contains(out, want) {
			t.Errorf("PCR 11 %s: precalculated %x, systemd-measure says:\n%s", bank, pcrs[11], out)
		}
	}
	if got := strings.Join(res.Sections, " "); got != ".linux .osrel .cmdline .initrd" {
		t.Errorf("measured sections %q", got)
	}
}

// TestEvents checks the events that are not cross-checked by a tool
// against the specifications' definitions.
func TestEvents(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	res := fileResult(t, f.path)
	if res.Cmdline != "console=ttyS0 mtuf.test=1" {
		t.Errorf("command line %q: the stub drops the trailing newline", res.Cmdline)
	}
	sum := func(b []byte) []byte { d := crypto.SHA256.New(); d.Write(b); return d.Sum(nil) }
	initrd, _ := os.ReadFile(f.initrd)
	stub, _ := os.ReadFile(stubPath)
	stubAuth, err := Authenticode(bytes.NewReader(stub), int64(len(stub)), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var opts []byte
	for _, c := range "console=ttyS0 mtuf.test=1\x00" {
		opts = binary.LittleEndian.AppendUint16(opts, uint16(c))
	}
	want := map[string][]byte{
		"Calling EFI Application from Boot Option": sum([]byte("Calling EFI Application from Boot Option")),
		"separator":                       sum([]byte{0, 0, 0, 0}),
		"kernel of .linux (Authenticode)": stubAuth,
		"LOADED_IMAGE::LoadOptions":       sum(opts),
		"Linux initrd":                    sum(initrd),
	}
	seen := 0
	for _, e := range res.Events {
		if w, ok := want[e.Description]; ok {
			seen++
			if !bytes.Equal(e.Digests[crypto.SHA256], w) {
				t.Errorf("event %q: digest %x, want %x", e.Description, e.Digests[crypto.SHA256], w)
			}
		}
	}
	if seen != len(want) {
		t.Errorf("found %d of the %d events checked", seen, len(want))
	}
	pcrs, _ := res.PCRs(crypto.SHA256)
	if !bytes.Equal(pcrs[12], make([]byte, 32)) {
		t.Errorf("PCR 12 %x, want zeros", pcrs[12])
	}
}

// TestDifferentImagesDiffer checks that what a node boots changes the
// PCRs that measure it: another command line moves 9 and 11, another
// initrd too, and neither moves 4's firmware events for nothing.
func TestDifferentImagesDiffer(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	base := fileResult(t, f.path)
	initrd, _ := os.ReadFile(f.initrd)
	for name, build := range map[string]func(dir string) string{
		"cmdline": func(dir string) string { return buildUKI(t, dir, "console=ttyS0 mtuf.test=2\n", initrd) },
		"initrd":  func(dir string) string { return buildUKI(t, dir, " console=ttyS0\tmtuf.test=1\n", append(initrd, 'x')) },
	} {
		other := fileResult(t, build(t.TempDir()))
		a, _ := base.PCRs(crypto.SHA256)
		b, _ := other.PCRs(crypto.SHA256)
		for _, idx := range []uint32{4, 9, 11} {
			if bytes.Equal(a[idx], b[idx]) {
				t.Errorf("another %s leaves PCR %d unchanged", name, idx)
			}
		}
	}
}

// makeFAT builds a FAT file system image holding the UKI as
// EFI/BOOT/BOOTX64.EFI with mkfs.vfat and mtools.
func makeFAT(t *testing.T, uki string, bits string, sizeKiB int, sectorsPerCluster string) string {
	t.Helper()
	mkfs := testtool.Find(t, "mkfs.vfat", "apt-get install dosfstools")
	mmd := testtool.Find(t, "mmd", "apt-get install mtools")
	mcopy := testtool.Find(t, "mcopy", "apt-get install mtools")
	img := filepath.Join(t.TempDir(), "esp-fat"+bits+".img")
	run(t, mkfs, "-F", bits, "-s", sectorsPerCluster, "-C", img, strconv.Itoa(sizeKiB))
	run(t, mmd, "-i", img, "::/EFI", "::/EFI/BOOT", "::/loader")
	// A file removed from between two others leaves a gap that the UKI
	// fills first, so that its clusters are not one run.
	other := filepath.Join(t.TempDir(), "loader.conf")
	os.WriteFile(other, bytes.Repeat([]byte("timeout 0\n"), 700), 0o644)
	run(t, mcopy, "-i", img, other, "::/loader/old.conf")
	run(t, mcopy, "-i", img, other, "::/loader/loader.conf")
	run(t, testtool.Find(t, "mdel", "apt-get install mtools"), "-i", img, "::/loader/old.conf")
	run(t, mcopy, "-i", img, uki, "::/EFI/BOOT/BOOTX64.EFI")
	return img
}

// makeGPT wraps a partition image into a raw disk image with a GPT that
// gives it partType, after another partition.
func makeGPT(t *testing.T, part string, partType []byte) string {
	t.Helper()
	data, err := os.ReadFile(part)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(out, gptDisk(data, partType), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

// gptDisk returns a disk image holding data as its second partition, of
// type partType, with a valid GPT (header and entry checksums).
func gptDisk(data, partType []byte) []byte {
	const first = 64 // LBA of the partition
	sectors := int64(len(data)+511) / 512
	disk := make([]byte, (first+sectors+34)*512)
	copy(disk[first*512:], data)
	entries := make([]byte, 128*128)
	linuxType := []byte{0xaf, 0x3d, 0xc6, 0x0f, 0x83, 0x84, 0x72, 0x47, 0x8e, 0x79, 0x3d, 0x69, 0xd8, 0x47, 0x7d, 0xe4}
	copy(entries[0:], linuxType)
	binary.LittleEndian.PutUint64(entries[32:], 40)
	binary.LittleEndian.PutUint64(entries[40:], 50)
	copy(entries[128:], partType)
	binary.LittleEndian.PutUint64(entries[128+32:], first)
	binary.LittleEndian.PutUint64(entries[128+40:], uint64(first+sectors-1))
	copy(disk[2*512:], entries)
	h := disk[512 : 512+92]
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint32(h[8:], 0x00010000)
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[24:], 1)
	binary.LittleEndian.PutUint64(h[72:], 2)
	binary.LittleEndian.PutUint32(h[80:], 128)
	binary.LittleEndian.PutUint32(h[84:], 128)
	binary.LittleEndian.PutUint32(h[88:], crc32.ChecksumIEEE(entries))
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h))
	disk[510], disk[511] = 0x55, 0xaa // protective MBR signature
	return disk
}

// TestESPAndDisk checks that a UKI gives the same PCRs however it comes:
// alone, in a FAT12, FAT16 or FAT32 ESP image, in an ESP directory, or in
// the ESP of a GPT disk image.
func TestESPAndDisk(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	want, _ := fileResult(t, f.path).PCRs(crypto.SHA384)
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "efi", "boot"), 0o755)
	uki, _ := os.ReadFile(f.path)
	os.WriteFile(filepath.Join(dir, "efi", "boot", "bootx64.efi"), uki, 0o644)
	fat16 := makeFAT(t, f.path, "16", 8*1024, "1")
	cases := map[string]string{
		"directory": dir,
		"FAT12":     makeFAT(t, f.path, "12", 8*1024, "8"),
		"FAT16":     fat16,
		"FAT32":     makeFAT(t, f.path, "32", 34*1024, "1"),
		"GPT":       makeGPT(t, fat16, espTypeGUID),
	}
	for name, path := range cases {
		res, err := File(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		got, _ := res.PCRs(crypto.SHA384)
		for idx, v := range want {
			if !bytes.Equal(got[idx], v) {
				t.Errorf("%s (%s): PCR %d %x, the UKI alone gives %x", name, res.Source, idx, got[idx], v)
			}
		}
	}
}

// TestBadImages checks that corrupt, truncated or wrong inputs are
// refused with an error that names what is wrong.
func TestBadImages(t *testing.T) {
	t.Parallel()
	f := getFixture(t)
	uki, _ := os.ReadFile(f.path)
	stub, _ := os.ReadFile(need(t, stubPath, "systemd-boot-efi"))
	fat16 := makeFAT(t, f.path, "16", 8*1024, "1")
	disk, _ := os.ReadFile(makeGPT(t, fat16, espTypeGUID))
	badCRC := bytes.Clone(disk)
	badCRC[512+80] ^= 1
	noESP, _ := os.ReadFile(makeGPT(t, fat16, make([]byte, 16)))
	emptyFAT := filepath.Join(t.TempDir(), "empty.img")
	run(t, testtool.Find(t, "mkfs.vfat", "apt-get install dosfstools"), "-C", emptyFAT, "2048")
	emptyData, _ := os.ReadFile(emptyFAT)
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"truncated UKI":       {uki[:len(uki)/2], "runs past the end"},
		"truncated headers":   {uki[:300], "past the end"},
		"stub without .linux": {stub, "no .linux section"},
		"text file":           {[]byte("hello, world\n"), "neither a UKI"},
		"GPT bad checksum":    {badCRC, "checksum does not match"},
		"GPT without ESP":     {noESP, "no EFI System Partition"},
		"FAT without UKI":     {emptyData, "has no EFI"},
		"empty":               {nil, "neither a UKI"},
	} {
		p := filepath.Join(t.TempDir(), "image")
		os.WriteFile(p, tc.data, 0o644)
		_, err := File(p)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one saying %q", name, err, tc.want)
		}
	}
}
