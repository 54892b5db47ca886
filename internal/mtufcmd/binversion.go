package mtufcmd

import (
	"debug/buildinfo"
	"fmt"
	"strings"

	"golang.org/x/mod/semver"
)

// The release version is compiled into mtuf with the linker's -X, which
// leaves no mark a reader of the file can find among the binary's
// strings. What go build does record, in the build information every Go
// binary carries (go version -m), is the -ldflags it was given: the
// version of a release binary is read from there, so that a binary built
// for another OS or architecture, which cannot be run here, is read as
// well as one for this machine. go build leaves -ldflags out of that
// record under -trimpath, so a release is built without it.
const (
	cliMainPath = "github.com/mtuf/mtuf/cmd/mtuf"
	versionVar  = "github.com/mtuf/mtuf/internal/mtufcmd.Version"
)

// binaryBuild is what a CLI binary says of itself.
type binaryBuild struct {
	Version string // "dev" when no release version was compiled in
	OS      string
	Arch    string
}

// readBinaryBuild reads the release version, OS and architecture of the
// mtuf binary file.
func readBinaryBuild(file string) (binaryBuild, error) {
	bi, err := buildinfo.ReadFile(file)
	if err != nil {
		return binaryBuild{}, fmt.Errorf("%s is not a Go binary with build information (%v): give the mtuf binary that 'make release' wrote", file, err)
	}
	if bi.Path != cliMainPath {
		return binaryBuild{}, fmt.Errorf("%s is a build of %s, not of the mtuf CLI (%s)", file, bi.Path, cliMainPath)
	}
	b := binaryBuild{Version: "dev"}
	trimpath, ldflags := false, false
	for _, s := range bi.Settings {
		switch s.Key {
		case "-trimpath":
			trimpath = s.Value == "true"
		case "GOOS":
			b.OS = s.Value
		case "GOARCH":
			b.Arch = s.Value
		case "-ldflags":
			ldflags = true
			v, ok, err := ldflagsString(s.Value, versionVar)
			if err != nil {
				return binaryBuild{}, fmt.Errorf("%s: the -ldflags it was built with: %w", file, err)
			}
			if ok {
				b.Version = v
			}
		}
	}
	if trimpath && !ldflags {
		return binaryBuild{}, fmt.Errorf("%s was built with -trimpath, which leaves the -ldflags that set its version out of its build information: build the release without -trimpath ('make release')", file)
	}
	if b.OS == "" || b.Arch == "" {
		return binaryBuild{}, fmt.Errorf("%s does not record the OS and architecture it was built for", file)
	}
	return b, nil
}

// ldflagsString returns the value that the linker flags set the string
// variable name to with -X (the last one wins, as in the linker).
func ldflagsString(ldflags, name string) (string, bool, error) {
	args, err := splitQuoted(ldflags)
	if err != nil {
		return "", false, err
	}
	value, found := "", false
	for i := 0; i < len(args); i++ {
		a := strings.TrimPrefix(args[i], "-")
		var def string
		switch {
		case a == "-X" || a == "X":
			if i+1 == len(args) {
				return "", false, fmt.Errorf("-X without a value in %q", ldflags)
			}
			i++
			def = args[i]
		case strings.HasPrefix(a, "X=") || strings.HasPrefix(a, "-X="):
			_, def, _ = strings.Cut(a, "=")
		default:
			continue
		}
		if v, ok := strings.CutPrefix(def, name+"="); ok {
			value, found = v, true
		}
	}
	return value, found, nil
}

// splitQuoted splits flags the way the go command does: at spaces, with
// single or double quotes around a field that contains them.
func splitQuoted(s string) ([]string, error) {
	var out []string
	for {
		s = strings.TrimLeft(s, " \t\n\r")
		if s == "" {
			return out, nil
		}
		if q := s[0]; q == '\'' || q == '"' {
			end := strings.IndexByte(s[1:], q)
			if end < 0 {
				return nil, fmt.Errorf("unterminated %c in %q", q, s)
			}
			out = append(out, s[1:1+end])
			s = s[2+end:]
			continue
		}
		end := strings.IndexAny(s, " \t\n\r")
		if end < 0 {
			end = len(s)
		}
		out = append(out, s[:end])
		s = s[end:]
	}
}

// checkReleaseBinary reads the version, OS and architecture built into a
// CLI release binary, fills in those the publisher left out and refuses
// a mismatch with those given. A development build is refused: a user
// updated to it would hold a binary that never updates again.
func checkReleaseBinary(file, version, goos, arch string) (binaryBuild, error) {
	b, err := readBinaryBuild(file)
	if err != nil {
		return b, err
	}
	if b.Version == "dev" || !semver.IsValid(b.Version) {
		return b, fmt.Errorf("%s is a development build (version %q), not a release: a user updated to it could not update again; build it with 'make release VERSION=vX.Y.Z' (go build -ldflags \"-X %s=vX.Y.Z\")", file, b.Version, versionVar)
	}
	if version != "" && version != b.Version {
		return b, fmt.Errorf("%s is version %s, not %s as --version says: publish it as %s, or build the binary with VERSION=%s", file, b.Version, version, b.Version, version)
	}
	if (goos != "" && goos != b.OS) || (arch != "" && arch != b.Arch) {
		return b, fmt.Errorf("%s is built for %s-%s, not %s-%s as --os and --arch say", file, b.OS, b.Arch, or(goos, b.OS), or(arch, b.Arch))
	}
	return b, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
