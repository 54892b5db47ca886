package mtufcmd

import (
	"os"
	"strings"
	"testing"
)

func TestLdflagsString(t *testing.T) {
	for _, tc := range []struct {
		ldflags, want string
		found         bool
	}{
		{"-X " + versionVar + "=v1.2.0", "v1.2.0", true},
		{"-s -w -X=" + versionVar + "=v1.2.0", "v1.2.0", true},
		{"--X " + versionVar + "=v1.2.0", "v1.2.0", true},
		{"-X '" + versionVar + "=v1.2.0' -X 'github.com/mtuf/mtuf/internal/mtufcmd.embeddedRepo=https://example.com/r'", "v1.2.0", true},
		{`-X "` + versionVar + `=v1.2.0"`, "v1.2.0", true},
		// The linker keeps the last -X of a variable.
		{"-X " + versionVar + "=v1.2.0 -X " + versionVar + "=v1.3.0", "v1.3.0", true},
		// Another variable whose name starts with Version's.
		{"-X " + versionVar + "Suffix=v9.9.9", "", false},
		{"-X other.Version=v1.2.0", "", false},
		{"-s -w", "", false},
	} {
		got, found, err := ldflagsString(tc.ldflags, versionVar)
		if err != nil || got != tc.want || found != tc.found {
			t.Errorf("ldflagsString(%q) = %q, %v, %v; want %q, %v", tc.ldflags, got, found, err, tc.want, tc.found)
		}
	}
	for _, bad := range []string{"-X", "-X '" + versionVar + "=v1"} {
		if _, _, err := ldflagsString(bad, versionVar); err == nil {
			t.Errorf("ldflagsString(%q): no error", bad)
		}
	}
}

// A Go program that is not the mtuf CLI is no CLI release, whatever its
// version: this test binary stands for one.
func TestReadBinaryBuild(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	_, err = readBinaryBuild(exe)
	if err == nil || !strings.Contains(err.Error(), "is a build of github.com/mtuf/mtuf/internal/mtufcmd.test, not of the mtuf CLI") {
		t.Errorf("readBinaryBuild(test binary) = %v", err)
	}
}
