// Package scripts holds the shell scripts behind make demo and make bench;
// its tests run their helpers with bash.
package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/internal/testtool"
)

// runLib runs bash code with lib.sh sourced, and returns its output. With
// tty, stdout is a terminal: script(1) gives the shell a pseudo-terminal.
func runLib(t *testing.T, code string, tty bool, env ...string) string {
	t.Helper()
	bash := testtool.Find(t, "bash", "apt-get install bash")
	code = ". ./lib.sh; " + code
	cmd := exec.Command(bash, "-c", code)
	if tty {
		sc := testtool.Find(t, "script", "apt-get install util-linux, for script(1), which runs the helpers on a terminal")
		cmd = exec.Command(sc, "-qec", bash+" -c '"+code+"'", "/dev/null")
	}
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", code, err, out)
	}
	return string(out)
}

// Escape codes only on a terminal without NO_COLOR: a log or a pipe of the
// demo reads as plain text.
func TestStepColour(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tty    bool
		env    []string
		colour bool
	}{
		{"pipe", false, nil, false},
		{"terminal", true, []string{"NO_COLOR="}, true},
		{"terminal with NO_COLOR", true, []string{"NO_COLOR=1"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := runLib(t, "step Maintainer: a repository", tc.tty, tc.env...)
			if !strings.Contains(out, "== Maintainer: a repository") {
				t.Fatalf("output %q has no step title", out)
			}
			if got := strings.Contains(out, "\033["); got != tc.colour {
				t.Errorf("output %q: escape codes %v, want %v", out, got, tc.colour)
			}
		})
	}
}

// make demo says what it builds before the build, which is silent for
// minutes on a cold cache.
func TestBuildSaysWhatItBuilds(t *testing.T) {
	bin := t.TempDir()
	// A make that records its arguments, standing in for the real build.
	fake := "#!/bin/sh\necho \"make $*\"\n"
	if err := os.WriteFile(filepath.Join(bin, "make"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	out := runLib(t, "build_binaries", false, "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	building := strings.Index(out, "building bin/mtuf")
	build := strings.Index(out, "make -s build build-sim")
	if building < 0 || build < 0 || building > build {
		t.Fatalf("output %q: want the building line before the build", out)
	}
}
