package mtufcmd

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestHelpExamples runs every 'mtuf repo init' command that the help of
// mtuf, mtuf repo and mtuf repo init shows, each in a directory of its own
// holding the keys it names: an example in the help must work as written.
func TestHelpExamples(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	n := 0
	for _, cmd := range [][]string{{"--help"}, {"repo", "--help"}, {"repo", "init", "--help"}} {
		var out, errb bytes.Buffer
		if code := Run(context.Background(), cmd, &out, &errb); code != 0 {
			t.Fatalf("mtuf %s: exit %d: %s", strings.Join(cmd, " "), code, errb.String())
		}
		for _, line := range exampleCommands(out.String()) {
			if !strings.HasPrefix(line, "mtuf repo init ") {
				continue
			}
			n++
			// Fixture keys under the names the example gives them: two
			// root keys must be two keys.
			script := `env MTUF_PASSWORD=test-password
cpkeys root targets online ci releases other
cp root.key root-1.key
cp other.key root-2.key
exec ` + strings.ReplaceAll(line, "$PWD", "$WORK") + "\n" + `exec mtuf repo status --workspace ws
`
			name := strings.ReplaceAll(strings.Join(cmd[:len(cmd)-1], "-"), " ", "-")
			if name == "" {
				name = "mtuf"
			}
			if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n != 3 {
		t.Fatalf("found %d repo init examples in the help, want 3", n)
	}
	keyDir, err := filepath.Abs(filepath.Join("testdata", "keys"))
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{Dir: dir, Cmds: map[string]func(*testscript.TestScript, bool, []string){"cpkeys": cmdCpKeys(keyDir)}})
}

// exampleCommands returns the commands of the Examples section of a
// command's help, with continued lines joined and comments cut.
func exampleCommands(help string) []string {
	_, ex, ok := strings.Cut(help, "Examples:\n")
	if !ok {
		return nil
	}
	ex, _, _ = strings.Cut(ex, "\n\n")
	var cmds []string
	cont := ""
	for _, line := range strings.Split(ex, "\n") {
		line, _, _ = strings.Cut(line, " #")
		line = strings.TrimSpace(line)
		if c, ok := strings.CutSuffix(line, "\\"); ok {
			cont += strings.TrimSpace(c) + " "
			continue
		}
		if line = cont + line; line != "" && !strings.HasPrefix(line, "#") {
			cmds = append(cmds, line)
		}
		cont = ""
	}
	return cmds
}
