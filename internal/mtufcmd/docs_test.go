package mtufcmd

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/mtuf/mtuf/internal/testtool"
)

// TestDocs runs every command block (```sh) of README.md and docs/*.md, in
// order, one script per file, so that the documents are what the tests
// prove. Each line of a block is run with sh -c in the script's directory;
// a command after a "# expect failure: TEXT" line must fail saying TEXT.
// HTML comments before a block, invisible to a reader, tell the test how
// to run it:
//
//	<!-- doc-test: skip REASON -->         the block is not run, for REASON
//	<!-- doc-test: replace OLD => NEW -->  run the block with OLD replaced by NEW
//	<!-- doc-test: background -->          run its commands in the background, without sh (servers)
//	<!-- doc-test: prebuilt keys -->       give each 'mtuf keys generate --type T --out NAME' a
//	                                       prebuilt test key of type T instead (password test-password)
//	<!-- doc-test: before                  testscript lines to run before the block
//	LINES
//	-->
//
// Every block either runs or says why it cannot.
func TestDocs(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("../../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append([]string{"../../README.md"}, files...)
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fixtureKeyDir, err := filepath.Abs(filepath.Join("testdata", "keys"))
	if err != nil {
		t.Fatal(err)
	}
	goEnv := goBuildEnv(t)
	for _, f := range files {
		name := strings.TrimSuffix(filepath.Base(f), ".md")
		doc, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		script, ran, err := docScript(string(doc))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if ran == 0 {
			continue
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var path string
			if strings.Contains(script, "cosign ") {
				path = filepath.Dir(testtool.Find(t, "cosign", "make tools"))
			}
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, name+".txt"), []byte(script), 0o644); err != nil {
				t.Fatal(err)
			}
			testscript.Run(t, testscript.Params{
				Dir: dir,
				Setup: func(env *testscript.Env) error {
					env.Setenv("BOOT", filepath.Join(root, "testdata", "boot"))
					env.Setenv("MTUF_STATE", filepath.Join(env.WorkDir, "state"))
					// docs/verify-release.md builds a release as 'make release' does.
					env.Setenv("MODROOT", root)
					for k, v := range goEnv {
						env.Setenv(k, v)
					}
					if path != "" {
						env.Setenv("PATH", path+string(os.PathListSeparator)+env.Getenv("PATH"))
					}
					return nil
				},
				Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
					"waitfile": cmdWaitFile,
					"envfile":  cmdEnvFile,
					"cpkeys":   cmdCpKeys(fixtureKeyDir),
					"cpkeyas":  cmdCpKeyAs(fixtureKeyDir),
				},
			})
		})
	}
}

var docTestComment = regexp.MustCompile(`^<!-- doc-test: (skip|replace|background|prebuilt keys|before)\b(.*?)(-->)?$`)

// keysGenerate is the command that a block of prebuilt keys does not run.
var keysGenerate = regexp.MustCompile(`^mtuf keys generate --type (\S+) --out (\S+)$`)

// docScript turns the command blocks of a markdown document into a
// testscript, returning it and how many commands it runs.
func docScript(doc string) (string, int, error) {
	var script strings.Builder
	var (
		inBlock, skip, background, prebuilt bool
		replacer                            []string
		expectFail, cont                    string
		before                              *strings.Builder
		n, bg                               int
		used                                = make(map[int]bool)
	)
	sc := bufio.NewScanner(strings.NewReader(doc))
	for lineNo := 1; sc.Scan(); lineNo++ {
		raw := sc.Text()
		line := strings.TrimSpace(raw)
		if before != nil {
			if line == "-->" {
				before = nil
				continue
			}
			script.WriteString(line + "\n")
			continue
		}
		if m := docTestComment.FindStringSubmatch(line); m != nil && !inBlock {
			arg := strings.TrimSpace(m[2])
			switch m[1] {
			case "skip":
				if arg == "" {
					return "", 0, fmt.Errorf("line %d: a skipped block must say why: <!-- doc-test: skip REASON -->", lineNo)
				}
				skip = true
			case "replace":
				old, new, ok := strings.Cut(arg, " => ")
				if !ok {
					return "", 0, fmt.Errorf("line %d: want <!-- doc-test: replace OLD => NEW -->", lineNo)
				}
				replacer = append(replacer, old, new)
			case "background":
				background = true
			case "prebuilt keys":
				prebuilt = true
			case "before":
				if m[3] != "" {
					return "", 0, fmt.Errorf("line %d: <!-- doc-test: before --> takes testscript lines up to a closing -->", lineNo)
				}
				before = &strings.Builder{}
			}
			continue
		}
		if fence, ok := strings.CutPrefix(line, "```"); ok {
			switch {
			case inBlock:
				inBlock, skip, background, prebuilt, replacer = false, false, false, false, nil
			case fence == "sh":
				inBlock = true
			case skip || len(replacer) > 0 || background || prebuilt:
				return "", 0, fmt.Errorf("line %d: doc-test comment before a block that is not a command block (```sh)", lineNo)
			default:
				// A block of another kind (a listing, a diagram) is not
				// run; its closing fence must not open a command block.
				for sc.Scan() {
					lineNo++
					if strings.HasPrefix(strings.TrimSpace(sc.Text()), "```") {
						break
					}
				}
			}
			continue
		}
		if !inBlock || skip || line == "" {
			continue
		}
		if c, ok := strings.CutSuffix(line, "\\"); ok {
			cont += strings.TrimSpace(c) + " "
			continue
		}
		line, cont = cont+line, ""
		if msg, ok := strings.CutPrefix(line, "# expect failure: "); ok {
			expectFail = msg
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		if len(replacer) > 0 {
			line = strings.NewReplacer(replacer...).Replace(line)
		}
		if m := keysGenerate.FindStringSubmatch(line); prebuilt && m != nil {
			// Generating a key costs a scrypt derivation at full
			// strength; a prebuilt key of the type is as good to the
			// commands that follow.
			var fixture string
			for i, k := range fixtureKeys {
				if string(k.typ) == m[1] && !used[i] {
					used[i], fixture = true, k.name
					break
				}
			}
			if fixture == "" {
				return "", 0, fmt.Errorf("line %d: no prebuilt %s test key left for %s: add one to fixtureKeys", lineNo, m[1], m[2])
			}
			script.WriteString(fmt.Sprintf("cpkeyas %s %s\n", fixture, m[2]))
			n++
			continue
		}
		if v, ok := strings.CutPrefix(line, "export "); ok {
			// The environment of every later command, not of one sh.
			script.WriteString("env " + strings.ReplaceAll(stripComment(v), "$PWD", "$WORK") + "\n")
			continue
		}
		cmd := "exec sh -c " + quoteScript(stripComment(line))
		switch {
		case background:
			// Without sh, so that the kill at the end reaches the server.
			bg++
			cmd = fmt.Sprintf("exec %s &bg%d&", stripComment(line), bg)
		case expectFail != "":
			cmd = "! " + cmd + "\nstderr " + quoteScript(regexp.QuoteMeta(expectFail))
			expectFail = ""
		}
		script.WriteString(cmd + "\n")
		n++
	}
	if inBlock {
		return "", 0, fmt.Errorf("a command block is not closed")
	}
	for i := 1; i <= bg; i++ {
		script.WriteString(fmt.Sprintf("kill bg%d\n", i))
	}
	return script.String(), n, sc.Err()
}

// stripComment drops a shell comment after a command, outside quotes.
func stripComment(line string) string {
	var quote rune
	for i, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
		case r == '\'' || r == '"':
			quote = r
		case r == '#' && i > 0 && (line[i-1] == ' ' || line[i-1] == '\t'):
			return strings.TrimSpace(line[:i])
		}
	}
	return line
}

// quoteScript quotes s as one testscript argument.
func quoteScript(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// cmdCpKeyAs returns the script command cpkeyas FIXTURE NAME, which copies
// the fixture key pair FIXTURE.key and FIXTURE.pub of dir into the
// script's directory as NAME.key and NAME.pub.
func cmdCpKeyAs(dir string) func(ts *testscript.TestScript, neg bool, args []string) {
	return func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) != 2 {
			ts.Fatalf("usage: cpkeyas FIXTURE NAME")
		}
		for ext, mode := range map[string]os.FileMode{".key": 0o600, ".pub": 0o644} {
			data, err := os.ReadFile(filepath.Join(dir, args[0]+ext))
			ts.Check(err)
			ts.Check(os.WriteFile(ts.MkAbs(args[1]+ext), data, mode))
		}
	}
}

// The markers are read strictly: a block the test cannot place is an
// error, not a block silently left out.
func TestDocScript(t *testing.T) {
	for _, tc := range []struct {
		name, doc, want, err string
	}{
		{"command", "```sh\nmtuf keys id a.pub   # its id\n```\n", "exec sh -c 'mtuf keys id a.pub'\n", ""},
		{"continuation and failure", "```sh\n# expect failure: is not signed\nmtuf repo commit \\\n  --workspace ws\n```\n",
			"! exec sh -c 'mtuf repo commit --workspace ws'\nstderr 'is not signed'\n", ""},
		{"export", "```sh\nexport MTUF_PASSWORD=x\n```\n", "env MTUF_PASSWORD=x\n", ""},
		{"quotes", "```sh\njq -r '.a # b' f\n```\n", "exec sh -c 'jq -r ''.a # b'' f'\n", ""},
		{"skip", "<!-- doc-test: skip needs a cloud -->\n```sh\nmtuf x\n```\n", "", ""},
		{"replace", "<!-- doc-test: replace /dev/tpmrm0 => sim -->\n```sh\npcr-reader --tpm /dev/tpmrm0\n```\n", "exec sh -c 'pcr-reader --tpm sim'\n", ""},
		{"background", "<!-- doc-test: background -->\n```sh\nmtuf repo serve\n```\n", "exec mtuf repo serve &bg1&\nkill bg1\n", ""},
		{"prebuilt", "<!-- doc-test: prebuilt keys -->\n```sh\nmtuf keys generate --type ecdsa-p256 --out rel\n```\n", "cpkeyas releases-test rel\n", ""},
		{"listing not run", "```\nmtuf x\n```\n", "", ""},
		{"skip without a reason", "<!-- doc-test: skip -->\n```sh\nmtuf x\n```\n", "", "must say why"},
		{"marker before a listing", "<!-- doc-test: skip why -->\n```\nx\n```\n", "", "not a command block"},
		{"replace without =>", "<!-- doc-test: replace a b -->\n```sh\nx\n```\n", "", "OLD => NEW"},
		{"too few prebuilt keys", "<!-- doc-test: prebuilt keys -->\n```sh\nmtuf keys generate --type ecdsa-p256 --out a\nmtuf keys generate --type ecdsa-p256 --out b\n```\n", "", "no prebuilt ecdsa-p256 test key left for b"},
		{"unclosed", "```sh\nmtuf x\n", "", "not closed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := docScript(tc.doc)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("script %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
