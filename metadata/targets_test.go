package metadata

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestValidateImage(t *testing.T) {
	for _, ok := range []string{"v2.15.0", "v2.15.0-rc.1+build.7", "0.0.1655304334", "ref_main-stable", "a", strings.Repeat("x", 128), ".hidden", "-v1"} {
		if err := ValidateImage(ok); err != nil {
			t.Errorf("ValidateImage(%q): %v", ok, err)
		}
		if err := ValidatePlatform(ok); err != nil {
			t.Errorf("ValidatePlatform(%q): %v", ok, err)
		}
	}
	for _, tt := range []struct{ in, want string }{
		{"", "image version is empty"},
		{".", `"." alone or ".." is not allowed`},
		{"..", `".."`},
		{"v1..2", `".."`},
		{"../etc", `character '/' is not allowed`},
		{`v1\x`, `character '\\' is not allowed`},
		{"v 1", `character ' ' is not allowed`},
		{"v1\x00", `character '\x00' is not allowed`},
		{"vé", `character 'é' is not allowed`},
		{"v1:2", `character ':' is not allowed`},
		{"v1%2F", `character '%' is not allowed`},
		{strings.Repeat("x", 129), "image version is 129 characters long, at most 128 are allowed"},
	} {
		err := ValidateImage(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ValidateImage(%q) = %v, want error containing %q", tt.in, err, tt.want)
		}
	}
	if err := ValidatePlatform("a/b"); err == nil || !strings.HasPrefix(err.Error(), "platform ") {
		t.Errorf("ValidatePlatform error does not name the platform: %v", err)
	}
}

const keyID = "8a1c4fb3e0d2a5b6c7d8e9f00112233445566778899aabbccddeeff001122334"

func TestTargetNames(t *testing.T) {
	must := func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tt := range []struct{ got, want string }{
		{must(MeasurementsTarget("v2.15.0", "azure-sev-snp")), "measurements/v2.15.0/azure-sev-snp/measurements.json"},
		{must(LinkTarget("v2.15.0", "azure-sev-snp", "read-measurements", keyID)), "measurements/v2.15.0/azure-sev-snp/read-measurements.8a1c4fb3.link"},
		{must(LinkTarget("v2.15.0", "qemu-vtpm", "publish", keyID[:8])), "measurements/v2.15.0/qemu-vtpm/publish.8a1c4fb3.link"},
		{must(CLITarget("v1.0.0", "linux", "amd64")), "cli/v1.0.0/linux-amd64/mtuf"},
		{must(CLISigTarget("v1.0.0", "darwin", "arm64")), "cli/v1.0.0/darwin-arm64/mtuf.sig"},
		{LayoutTarget, "supplychain/root.layout"},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestTargetNameErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"measurements image", second(MeasurementsTarget("../v1", "p")), `image version "../v1"`},
		{"measurements platform", second(MeasurementsTarget("v1", "")), "platform is empty"},
		{"both", second(MeasurementsTarget("", "")), "image version is empty\nplatform is empty"},
		{"link step", second(LinkTarget("v1", "p", "a/b", keyID)), `step name "a/b"`},
		{"link short key", second(LinkTarget("v1", "p", "s", "abc")), `key ID "abc" is too short`},
		{"link upper-case key", second(LinkTarget("v1", "p", "s", strings.ToUpper(keyID))), "is not lowercase hex"},
		{"cli version", second(CLITarget("v1/..", "linux", "amd64")), `version "v1/.."`},
		{"cli os", second(CLITarget("v1", "Linux", "amd64")), `os "Linux": character 'L' is not allowed`},
		{"cli arch", second(CLISigTarget("v1", "linux", "amd-64")), `arch "amd-64"`},
		{"cli empty arch", second(CLITarget("v1", "linux", "")), "arch is empty"},
	} {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one containing %q", tt.name, tt.err, tt.want)
		}
	}
}

func second(_ string, err error) error { return err }

func TestParseTarget(t *testing.T) {
	for _, tt := range []struct {
		name string
		want TargetCustom
	}{
		{"measurements/v2.15.0/azure-sev-snp/measurements.json", TargetCustom{Kind: KindMeasurements, Image: "v2.15.0", Platform: "azure-sev-snp"}},
		{"measurements/v2.15.0/azure-sev-snp/read-measurements.8a1c4fb3.link", TargetCustom{Kind: KindLink, Image: "v2.15.0", Platform: "azure-sev-snp", Step: "read-measurements", KeyID: "8a1c4fb3"}},
		{"measurements/v2/p/step.v2.0011aabb.link", TargetCustom{Kind: KindLink, Image: "v2", Platform: "p", Step: "step.v2", KeyID: "0011aabb"}},
		{"supplychain/root.layout", TargetCustom{Kind: KindLayout}},
		{"cli/v1.0.0/linux-amd64/mtuf", TargetCustom{Kind: KindCLI, Version: "v1.0.0", OS: "linux", Arch: "amd64"}},
		{"cli/v1.0.0/windows-arm64/mtuf.sig", TargetCustom{Kind: KindCLISignature, Version: "v1.0.0", OS: "windows", Arch: "arm64"}},
	} {
		got, err := ParseTarget(tt.name)
		if err != nil {
			t.Errorf("ParseTarget(%q): %v", tt.name, err)
			continue
		}
		if got != tt.want {
			t.Errorf("ParseTarget(%q) = %+v, want %+v", tt.name, got, tt.want)
		}
	}

	// Names built by this package parse back to their parts.
	name, _ := LinkTarget("v3", "gcp-sev-es", "read-measurements", keyID)
	if c, err := ParseTarget(name); err != nil || c.Step != "read-measurements" || c.KeyID != keyID[:8] {
		t.Errorf("LinkTarget/ParseTarget round trip: %+v, %v", c, err)
	}

	for _, bad := range []string{
		"", "measurements.json", "measurements/v1/p", "measurements/v1/p/other.json",
		"measurements/../p/measurements.json", "measurements/v1/p/x/measurements.json",
		"measurements/v1/p/step.ABCDEF12.link", "measurements/v1/p/.0011aabb.link", "measurements/v1/p/step0011aabb.link",
		"cli/v1/linux/mtuf", "cli/v1/linux-amd64/other", "cli/v1/Linux-amd64/mtuf", "cli/../linux-amd64/mtuf",
		"supplychain/other.layout", "/measurements/v1/p/measurements.json", "targets/x",
	} {
		if c, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) accepted as %+v", bad, c)
		}
	}
}

func TestParseMeasurementsTarget(t *testing.T) {
	image, platform, ok := ParseMeasurementsTarget("measurements/v2.15.0/gcp-sev-es/measurements.json")
	if !ok || image != "v2.15.0" || platform != "gcp-sev-es" {
		t.Errorf("got %q %q %v", image, platform, ok)
	}
	for _, bad := range []string{"measurements/v2.15.0/gcp-sev-es/read.0011aabb.link", "cli/v1/linux-amd64/mtuf", "measurements/../gcp-sev-es/measurements.json"} {
		if _, _, ok := ParseMeasurementsTarget(bad); ok {
			t.Errorf("%q taken for a measurements target", bad)
		}
	}
}

func TestTargetCustomJSON(t *testing.T) {
	c, err := ParseTarget("measurements/v2.15.0/azure-sev-snp/measurements.json")
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"kind":"measurements","image":"v2.15.0","platform":"azure-sev-snp"}`; string(data) != want {
		t.Errorf("custom JSON %s, want %s", data, want)
	}
	var back TargetCustom
	if err := json.Unmarshal(data, &back); err != nil || back != c {
		t.Errorf("round trip %+v, %v", back, err)
	}
}
