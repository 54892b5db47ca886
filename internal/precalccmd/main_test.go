package precalccmd

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/testkeys"
	"github.com/mtuf/mtuf/internal/testtool"
	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

const stubPath = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub"

// runCmd runs pcr-precalc in process with args.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := newCommand(&out, &errOut)
	c.SetArgs(args)
	err = c.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// testUKI builds a small UKI with objcopy from systemd's stub, which also
// stands in as its kernel.
func testUKI(t *testing.T) string {
	t.Helper()
	objcopy := testtool.Find(t, "objcopy", "apt-get install binutils")
	if _, err := os.Stat(stubPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not found; CI must have it: apt-get install systemd-boot-efi", stubPath)
		}
		t.Skipf("%s not found (apt-get install systemd-boot-efi)", stubPath)
	}
	dir := t.TempDir()
	cmdline := filepath.Join(dir, "cmdline")
	initrd := filepath.Join(dir, "initrd")
	os.WriteFile(cmdline, []byte("console=ttyS0"), 0o644)
	os.WriteFile(initrd, bytes.Repeat([]byte("initrd "), 5000), 0o644)
	out := filepath.Join(dir, "uki.efi")
	if b, err := exec.Command(objcopy,
		"--add-section", ".cmdline="+cmdline, "--change-section-vma", ".cmdline=0x30000",
		"--add-section", ".linux="+stubPath, "--change-section-vma", ".linux=0x2000000",
		"--add-section", ".initrd="+initrd, "--change-section-vma", ".initrd=0x3000000",
		stubPath, out).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, b)
	}
	return out
}

// TestReproducible checks that the same image gives the same bytes, in
// each bank, and a document the profile shapes: PCRs 4, 9, 11 and 12,
// enforced on qemu-vtpm, and nothing the image does not determine.
func TestReproducible(t *testing.T) {
	t.Parallel()
	uki := testUKI(t)
	for _, bank := range []string{"sha256", "sha384"} {
		dir := t.TempDir()
		var docs [][]byte
		for i := range 2 {
			out := filepath.Join(dir, bank+string(rune('a'+i))+".json")
			if _, stderr, err := runCmd(t, "--image", uki, "--image-version", "v1.0.0", "--bank", bank, "-o", out); err != nil {
				t.Fatalf("pcr-precalc: %v\n%s", err, stderr)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			docs = append(docs, data)
		}
		if !bytes.Equal(docs[0], docs[1]) {
			t.Errorf("%s: two runs over one image wrote different documents", bank)
		}
		m, err := metadata.Parse(docs[0])
		if err != nil {
			t.Fatal(err)
		}
		if m.Hash != bank || m.Platform != "qemu-vtpm" || m.Image != "v1.0.0" {
			t.Errorf("document %s/%s/%s", m.Image, m.Platform, m.Hash)
		}
		if got := m.Indices(); len(got) != 4 || got[0] != 4 || got[1] != 9 || got[2] != 11 || got[3] != 12 {
			t.Errorf("%s: PCRs %v, want 4 9 11 12", bank, got)
		}
		for idx, p := range m.PCRs {
			if p.WarnOnly {
				t.Errorf("PCR %d is warn-only; the qemu-vtpm profile enforces it", idx)
			}
		}
	}
}

// TestLinkRecordsImageAndDocument checks the link of the run: the step
// precalculate-measurements, the image as material and the document as
// product, written into --link-dir.
func TestLinkRecordsImageAndDocument(t *testing.T) {
	t.Parallel()
	uki := testUKI(t)
	dir := t.TempDir()
	keyFile, priv := testkeys.Write(t, dir, "precalc-test", keys.ED25519)
	linkDir := filepath.Join(dir, "links")
	os.Mkdir(linkDir, 0o755)
	out := filepath.Join(dir, "m.json")
	pw := filepath.Join(dir, "password")
	os.WriteFile(pw, []byte(testkeys.Password), 0o600)
	stdout, stderr, err := runCmd(t, "--image", uki, "--image-version", "v1.0.0", "-o", out,
		"--link-key", keyFile, "--password-file", pw, "--link-dir", linkDir)
	if err != nil {
		t.Fatalf("pcr-precalc: %v\n%s", err, stderr)
	}
	keyID, err := intoto.KeyID(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	name, _ := metadata.LinkFileName(StepPrecalculateMeasurements, keyID)
	linkPath := filepath.Join(linkDir, name)
	if !strings.Contains(stdout, "wrote "+linkPath) {
		t.Errorf("output does not name the link %s:\n%s", linkPath, stdout)
	}
	link, err := os.ReadFile(linkPath)
	if err != nil {
		t.Fatal(err)
	}
	doc, _ := os.ReadFile(out)
	step, signer, products, err := intoto.LinkProducts(link)
	if err != nil {
		t.Fatal(err)
	}
	if step != StepPrecalculateMeasurements || signer != keyID {
		t.Fatalf("link: step %s, key %s", step, signer)
	}
	if err := products[metadata.MeasurementsFile].Verify(doc); err != nil {
		t.Errorf("the link's product is not the document written: %v", err)
	}
	var parsed struct {
		Signed struct {
			Materials map[string]map[string]string `json:"materials"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(link, &parsed); err != nil {
		t.Fatal(err)
	}
	image, _ := os.ReadFile(uki)
	sum := sha256.Sum256(image)
	if got := parsed.Signed.Materials[filepath.Base(uki)]["sha256"]; got != hex.EncodeToString(sum[:]) {
		t.Errorf("material %s: sha256 %q, want the image's %x (materials %v)", filepath.Base(uki), got, sum, parsed.Signed.Materials)
	}
}

// TestErrors checks every error a user can cause: a usage error (exit 2)
// for a bad command line, a failure (exit 1) for an unreadable image, and
// nothing written in either case.
func TestErrors(t *testing.T) {
	t.Parallel()
	uki := testUKI(t)
	dir := t.TempDir()
	notImage := filepath.Join(dir, "notes.txt")
	os.WriteFile(notImage, []byte("not an image\n"), 0o644)
	truncated := filepath.Join(dir, "truncated.efi")
	data, _ := os.ReadFile(uki)
	os.WriteFile(truncated, data[:len(data)/2], 0o644)
	out := filepath.Join(dir, "m.json")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no version", []string{"--image", uki, "-o", out}, cli.ExitUsage, "--image-version V are required"},
		{"bad version", []string{"--image", uki, "--image-version", "v1/../x", "-o", out}, cli.ExitUsage, "--image-version"},
		{"missing image", []string{"--image", filepath.Join(dir, "nope.efi"), "--image-version", "v1", "-o", out}, cli.ExitUsage, "nope.efi"},
		{"unknown platform", []string{"--image", uki, "--image-version", "v1", "--platform", "nowhere", "-o", out}, cli.ExitUsage, "nowhere"},
		{"bad bank", []string{"--image", uki, "--image-version", "v1", "--bank", "sha1", "-o", out}, cli.ExitUsage, "--bank"},
		{"link dir without key", []string{"--image", uki, "--image-version", "v1", "--link-dir", dir, "-o", out}, cli.ExitUsage, "--link-dir goes with --link-key"},
		{"link to stdout", []string{"--image", uki, "--image-version", "v1", "--link-key", "k.key"}, cli.ExitUsage, "--link-key needs --out FILE or --link-dir DIR"},
		{"not an image", []string{"--image", notImage, "--image-version", "v1", "-o", out}, 1, "neither a UKI"},
		{"truncated image", []string{"--image", truncated, "--image-version", "v1", "-o", out}, 1, "runs past the end"},
		{"argument", []string{"extra"}, cli.ExitUsage, "unexpected argument"},
	} {
		_, _, err := runCmd(t, tc.args...)
		code, _ := cli.Code(err)
		if err == nil || code != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: exit %d, error %v; want exit %d and an error saying %q", tc.name, code, err, tc.code, tc.want)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%s: a document was written", tc.name)
		}
	}
}
