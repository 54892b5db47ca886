package mtufcmd

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestKeyCeremonyDoc runs every command of docs/key-ceremony.md, in
// order, as a testscript: the guide is what the tests prove. A command
// after a "# expect failure: TEXT" line must fail saying TEXT.
func TestKeyCeremonyDoc(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/key-ceremony.md")
	if err != nil {
		t.Fatal(err)
	}
	var script strings.Builder
	inBlock, expectFail, n := false, "", 0
	var cont string
	sc := bufio.NewScanner(strings.NewReader(string(doc)))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "```sh"):
			inBlock = true
			continue
		case strings.HasPrefix(line, "```"):
			inBlock = false
			continue
		}
		if !inBlock {
			continue
		}
		line = strings.TrimSpace(line)
		if c, ok := strings.CutSuffix(line, "\\"); ok {
			cont += c + " "
			continue
		}
		line, cont = cont+line, ""
		switch {
		case strings.HasPrefix(line, "# expect failure: "):
			expectFail = strings.TrimPrefix(line, "# expect failure: ")
		case strings.HasPrefix(line, "export "):
			script.WriteString("env " + strings.TrimPrefix(line, "export ") + "\n")
		case strings.HasPrefix(line, "mtuf "):
			if expectFail != "" {
				script.WriteString("! ")
			}
			script.WriteString("exec " + strings.ReplaceAll(line, "$PWD", "$WORK") + "\n")
			if expectFail != "" {
				script.WriteString("stderr '" + expectFail + "'\n")
				expectFail = ""
			}
			n++
		}
	}
	if n < 20 {
		t.Fatalf("found %d commands in the guide", n)
	}
	script.WriteString(`-- measurements.json --
{"image":"v1.0.0","platform":"qemu-vtpm","hash":"sha256","pcrs":{"4":{"expected":"1111111111111111111111111111111111111111111111111111111111111111","warnOnly":false}}}
`)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "key-ceremony.txt"), []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{Dir: dir})
}
