package pcrreadercmd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/metadata"
)

// A complete release list: eleven entries of five providers, three of
// which (OpenStack, QEMU, STACKIT) attest with qemu-vtpm. It imports whole,
// each shared variant keeping its provider in the platform.
func TestImportCompleteReleaseList(t *testing.T) {
	out := t.TempDir()
	stdout, _, err := runCmd(t, "import", "--in", filepath.Join("testdata", "release-v2-complete.json"), "--out-dir", out)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"aws-nitro-tpm", "aws-sev-snp", "azure-sev-snp", "azure-tdx", "azure-trustedlaunch", "gcp-sev-es", "gcp-sev-snp",
		"qemu-vtpm-openstack", "qemu-vtpm-qemu", "qemu-tdx", "qemu-vtpm-stackit",
	}
	entries, err := os.ReadDir(filepath.Join(out, "v2.16.0"))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	if w := slices.Sorted(slices.Values(want)); !slices.Equal(got, w) {
		t.Fatalf("platforms written %v, want %v", got, w)
	}
	if n := strings.Count(stdout, "wrote "); n != len(want) {
		t.Errorf("%d documents reported, want %d:\n%s", n, len(want), stdout)
	}
	// Each document is that provider's: the entries of one variant differ
	// in the PCRs the provider's firmware measures.
	docs := map[string]*metadata.Measurements{}
	for _, p := range want {
		data, err := os.ReadFile(filepath.Join(out, "v2.16.0", p, metadata.MeasurementsFile))
		if err != nil {
			t.Fatal(err)
		}
		m, err := metadata.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if m.Image != "v2.16.0" || m.Platform != p || len(m.PCRs) != 16 {
			t.Errorf("%s: image %s on %s with %d PCRs", p, m.Image, m.Platform, len(m.PCRs))
		}
		docs[p] = m
	}
	if a, b := docs["qemu-vtpm-openstack"].PCRs[0].Expected, docs["qemu-vtpm-qemu"].PCRs[0].Expected; slices.Equal(a, b) {
		t.Error("the OpenStack and QEMU documents hold the same PCR 0: one entry was written twice")
	}

	// One provider's entry of a shared variant alone.
	only := t.TempDir()
	if _, _, err := runCmd(t, "import", "--in", filepath.Join("testdata", "release-v2-complete.json"), "--out-dir", only, "--platform", "qemu-vtpm-openstack"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(only, "v2.16.0")); len(entries) != 1 || entries[0].Name() != "qemu-vtpm-openstack" {
		t.Errorf("--platform qemu-vtpm-openstack wrote %v", entries)
	}
	// The bare variant is no platform of this list; the error lists those
	// that are.
	_, _, err = runCmd(t, "import", "--in", filepath.Join("testdata", "release-v2-complete.json"), "--out-dir", t.TempDir(), "--platform", "qemu-vtpm")
	if err == nil || !cli.IsUsage(err) || !strings.Contains(err.Error(), "has no measurements for platform qemu-vtpm") || !strings.Contains(err.Error(), "qemu-vtpm-openstack") {
		t.Errorf("--platform qemu-vtpm: %v", err)
	}
}
