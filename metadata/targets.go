package metadata

import (
	"errors"
	"fmt"
	"strings"
)

// Target names. Every variable part of a name is checked by
// validateComponent, so that a name taken from a user or from untrusted
// metadata can be joined into a filesystem path or object key without
// escaping its directory.
const (
	// LayoutTarget is the in-toto layout that every measurements target is
	// verified against.
	LayoutTarget = "supplychain/root.layout"

	// MeasurementsFile is the file name of a measurements document.
	MeasurementsFile = "measurements.json"
	// CLIBinaryName is the file name of a released CLI binary.
	CLIBinaryName = "mtuf"
	// CLISignatureName is the file name of the CLI binary's cosign signature.
	CLISignatureName = CLIBinaryName + ".sig"

	measurementsDir = "measurements"
	cliDir          = "cli"
	linkSuffix      = ".link"
	keyIDPrefixLen  = 8
)

// MaxNameLen bounds every name component, so that a full target name stays
// well below the path limits of filesystems and object stores.
const MaxNameLen = 128

// ValidateImage checks that an image version can be used as a target path
// component: 1..128 characters of [A-Za-z0-9._+-], neither "." nor containing "..".
func ValidateImage(v string) error { return validateComponent("image version", v) }

// ValidatePlatform checks a platform (attestation variant) name with the same
// rules as ValidateImage.
func ValidatePlatform(p string) error { return validateComponent("platform", p) }

// ValidateVersion checks a CLI release version with the same rules as ValidateImage.
func ValidateVersion(v string) error { return validateComponent("version", v) }

// ValidateStep checks an in-toto step name with the same rules as
// ValidateImage, as it becomes part of a link's file and target name.
func ValidateStep(step string) error { return validateComponent("step name", step) }

func validateComponent(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s is %d characters long, at most %d are allowed", what, len(s), MaxNameLen)
	}
	for _, r := range s {
		if !isNameChar(r) {
			return fmt.Errorf("%s %q: character %q is not allowed (use A-Z a-z 0-9 . _ + -)", what, s, r)
		}
	}
	if s == "." || strings.Contains(s, "..") {
		return fmt.Errorf("%s %q: \".\" alone or \"..\" is not allowed in a path component", what, s)
	}
	return nil
}

func isNameChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' ||
		r == '.' || r == '_' || r == '+' || r == '-'
}

// validateOSArch accepts Go's GOOS/GOARCH spelling: lowercase letters and digits.
func validateOSArch(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > 32 {
		return fmt.Errorf("%s is %d characters long, at most 32 are allowed", what, len(s))
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9') {
			return fmt.Errorf("%s %q: character %q is not allowed (use GOOS/GOARCH names such as linux, amd64)", what, s, r)
		}
	}
	return nil
}

// ValidateKeyID checks a key ID, or the prefix of one that a link's name
// carries: at least 8 lowercase hex characters.
func ValidateKeyID(keyID string) error {
	if len(keyID) < keyIDPrefixLen {
		return fmt.Errorf("key ID %q is too short: at least %d hex characters are needed", keyID, keyIDPrefixLen)
	}
	for _, r := range keyID {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return fmt.Errorf("key ID %q: character %q is not lowercase hex", keyID, r)
		}
	}
	return nil
}

// MeasurementsTarget names the measurements document of an image version on a
// platform: measurements/<image>/<platform>/measurements.json.
func MeasurementsTarget(image, platform string) (string, error) {
	if err := errors.Join(ValidateImage(image), ValidatePlatform(platform)); err != nil {
		return "", fmt.Errorf("measurements target name: %w", err)
	}
	return measurementsDir + "/" + image + "/" + platform + "/" + MeasurementsFile, nil
}

// LinkTarget names the in-toto link of a step, signed by the functionary with
// the given key ID, next to the measurements it attests:
// measurements/<image>/<platform>/<step>.<keyid[:8]>.link, which is the file
// name in-toto itself gives links.
func LinkTarget(image, platform, step, keyID string) (string, error) {
	if err := errors.Join(ValidateImage(image), ValidatePlatform(platform),
		ValidateStep(step), ValidateKeyID(keyID)); err != nil {
		return "", fmt.Errorf("link target name: %w", err)
	}
	return measurementsDir + "/" + image + "/" + platform + "/" + step + "." + keyID[:keyIDPrefixLen] + linkSuffix, nil
}

// LinkFileName returns the file name in-toto gives the link of step signed
// by the key keyID: "<step>.<keyID[:8]>.link". in-toto verifiers find links
// only under this name, and LinkTarget places it beside the measurements.
func LinkFileName(step, keyID string) (string, error) {
	if err := errors.Join(ValidateStep(step), ValidateKeyID(keyID)); err != nil {
		return "", fmt.Errorf("in-toto link file name: %w", err)
	}
	return step + "." + keyID[:keyIDPrefixLen] + linkSuffix, nil
}

// SplitLinkFileName takes a link file name "<step>.<keyid8>.link" apart. The
// key ID prefix has a fixed length, so the name splits from the right even
// when the step name contains dots. ok is false when the name does not have
// that shape; neither part is validated (see ValidateStep, ValidateKeyID).
func SplitLinkFileName(file string) (step, keyIDPrefix string, ok bool) {
	stem, ok := strings.CutSuffix(file, linkSuffix)
	if !ok {
		return "", "", false
	}
	i := len(stem) - keyIDPrefixLen - 1
	if i < 1 || stem[i] != '.' {
		return "", "", false
	}
	return stem[:i], stem[i+1:], true
}

// CLITarget names a released CLI binary: cli/<version>/<os>-<arch>/mtuf.
func CLITarget(version, goos, goarch string) (string, error) {
	dir, err := cliTargetDir(version, goos, goarch)
	if err != nil {
		return "", err
	}
	return dir + CLIBinaryName, nil
}

// CLISigTarget names the cosign signature of a CLI binary: cli/<version>/<os>-<arch>/mtuf.sig.
func CLISigTarget(version, goos, goarch string) (string, error) {
	dir, err := cliTargetDir(version, goos, goarch)
	if err != nil {
		return "", err
	}
	return dir + CLISignatureName, nil
}

func cliTargetDir(version, goos, goarch string) (string, error) {
	if err := errors.Join(ValidateVersion(version), validateOSArch("os", goos), validateOSArch("arch", goarch)); err != nil {
		return "", fmt.Errorf("CLI target name: %w", err)
	}
	return cliDir + "/" + version + "/" + goos + "-" + goarch + "/", nil
}

// ParseMeasurementsTarget returns the image version and platform of a
// measurements document's target name; ok is false for any other name.
func ParseMeasurementsTarget(name string) (image, platform string, ok bool) {
	c, err := ParseTarget(name)
	if err != nil || c.Kind != KindMeasurements {
		return "", "", false
	}
	return c.Image, c.Platform, true
}

// TargetKind tells what a target is.
type TargetKind string

// Target kinds, one per target name pattern.
const (
	KindMeasurements TargetKind = "measurements"
	KindLink         TargetKind = "link"
	KindLayout       TargetKind = "layout"
	KindCLI          TargetKind = "cli"
	KindCLISignature TargetKind = "cli-signature"
)

// TargetCustom is the custom metadata carried in a TUF target's "custom"
// field, so that a client can list what a repository offers without
// downloading targets. It is derived from the target name by ParseTarget and
// is informational: the name, which TUF signs, is what a client selects by.
type TargetCustom struct {
	Kind     TargetKind `json:"kind,omitempty"`
	Image    string     `json:"image,omitempty"`
	Platform string     `json:"platform,omitempty"`
	// Step and KeyID (its 8 character prefix) identify an in-toto link.
	Step  string `json:"step,omitempty"`
	KeyID string `json:"keyid,omitempty"`
	// Version, OS and Arch identify a CLI release.
	Version string `json:"version,omitempty"`
	OS      string `json:"os,omitempty"`
	Arch    string `json:"arch,omitempty"`
}

// ParseTarget takes a target name apart into its custom metadata. Names that
// follow none of the patterns of MeasurementsTarget, LinkTarget,
// LayoutTarget, CLITarget and CLISigTarget are an error, which lets a
// repository refuse to publish a target that no client would find.
func ParseTarget(name string) (TargetCustom, error) {
	if name == LayoutTarget {
		return TargetCustom{Kind: KindLayout}, nil
	}
	parts := strings.Split(name, "/")
	if len(parts) == 4 && parts[0] == measurementsDir {
		c, err := parseMeasurementsName(parts[1], parts[2], parts[3])
		if err != nil {
			return TargetCustom{}, fmt.Errorf("target %q: %w", name, err)
		}
		return c, nil
	}
	if len(parts) == 4 && parts[0] == cliDir {
		c, err := parseCLIName(parts[1], parts[2], parts[3])
		if err != nil {
			return TargetCustom{}, fmt.Errorf("target %q: %w", name, err)
		}
		return c, nil
	}
	return TargetCustom{}, fmt.Errorf("target %q is not an mtuf target name (%s/<image>/<platform>/%s, <step>.<keyid>%s, %s, %s/<version>/<os>-<arch>/%s)",
		name, measurementsDir, MeasurementsFile, linkSuffix, LayoutTarget, cliDir, CLIBinaryName)
}

func parseMeasurementsName(image, platform, file string) (TargetCustom, error) {
	if err := errors.Join(ValidateImage(image), ValidatePlatform(platform)); err != nil {
		return TargetCustom{}, err
	}
	c := TargetCustom{Image: image, Platform: platform}
	if file == MeasurementsFile {
		c.Kind = KindMeasurements
		return c, nil
	}
	step, keyID, ok := SplitLinkFileName(file)
	if !ok {
		return TargetCustom{}, fmt.Errorf("file %q is neither %s nor <step>.<keyid>%s", file, MeasurementsFile, linkSuffix)
	}
	if err := errors.Join(ValidateStep(step), ValidateKeyID(keyID)); err != nil {
		return TargetCustom{}, err
	}
	c.Kind, c.Step, c.KeyID = KindLink, step, keyID
	return c, nil
}

func parseCLIName(version, osArch, file string) (TargetCustom, error) {
	goos, goarch, ok := strings.Cut(osArch, "-")
	if !ok {
		return TargetCustom{}, fmt.Errorf("%q is not <os>-<arch>", osArch)
	}
	if err := errors.Join(ValidateVersion(version), validateOSArch("os", goos), validateOSArch("arch", goarch)); err != nil {
		return TargetCustom{}, err
	}
	c := TargetCustom{Version: version, OS: goos, Arch: goarch}
	switch file {
	case CLIBinaryName:
		c.Kind = KindCLI
	case CLISignatureName:
		c.Kind = KindCLISignature
	default:
		return TargetCustom{}, fmt.Errorf("file %q is neither %s nor %s", file, CLIBinaryName, CLISignatureName)
	}
	return c, nil
}

// MaxBinBitLength bounds the bit_length of the succinct hash-bin delegation
// (TAP 15) of a role: a repository makes at most 2^MaxBinBitLength bins, and
// a client refuses a delegation of more before allocating anything per bin.
const MaxBinBitLength = 14
