// Package archtest checks the module's import rules: which of its packages
// may import which. The rules are the table in docs/architecture.md, read
// from there so that the document and the check cannot disagree.
package archtest

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/internal/testtool"
)

const (
	module    = "github.com/mtuf/mtuf"
	rulesDoc  = "../../docs/architecture.md"
	rulesFrom = "<!-- import rules: read by internal/archtest -->"
	rulesTo   = "<!-- end of import rules -->"
)

// readRules parses the import rules table: package -> the module packages
// it may import, both relative to the module path.
func readRules(t *testing.T) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(rulesDoc)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(data, []byte(rulesFrom))
	if !ok {
		t.Fatalf("%s: no line %q", rulesDoc, rulesFrom)
	}
	table, _, ok := bytes.Cut(rest, []byte(rulesTo))
	if !ok {
		t.Fatalf("%s: no line %q after the rules", rulesDoc, rulesTo)
	}
	rules := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(table))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if len(cells) != 2 {
			t.Fatalf("%s: import rule %q is not a row | package | may import |", rulesDoc, line)
		}
		pkg := strings.Trim(strings.TrimSpace(cells[0]), "`")
		if pkg == "package" || strings.HasPrefix(pkg, "---") {
			continue
		}
		if _, dup := rules[pkg]; dup {
			t.Fatalf("%s: package %s has two import rules", rulesDoc, pkg)
		}
		allowed := []string{}
		for _, a := range strings.Split(cells[1], ",") {
			if a = strings.Trim(strings.TrimSpace(a), "`"); a != "" {
				allowed = append(allowed, a)
			}
		}
		rules[pkg] = allowed
	}
	if len(rules) == 0 {
		t.Fatalf("%s: the import rules table is empty", rulesDoc)
	}
	return rules
}

// moduleImports returns, for each package of the module, the module
// packages its non-test files import, as go list reports them.
func moduleImports(t *testing.T) map[string][]string {
	t.Helper()
	goTool := testtool.Find(t, "go", "the Go toolchain that runs these tests")
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(goTool, "list", "-f", "{{.ImportPath}}{{range .Imports}} {{.}}{{end}}", "./...")
	cmd.Dir = filepath.Join("..", "..")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	out := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		fields := strings.Fields(line)
		pkg, ok := relative(fields[0])
		if !ok {
			continue
		}
		deps := []string{}
		for _, imp := range fields[1:] {
			if rel, ok := relative(imp); ok {
				deps = append(deps, rel)
			}
		}
		out[pkg] = deps
	}
	return out
}

// relative returns the import path of a module package relative to the
// module; ok is false for other packages.
func relative(path string) (string, bool) {
	return strings.CutPrefix(path, module+"/")
}

// violations lists every import that the rules do not allow, every
// package without a rule and every rule without a package.
func violations(rules, imports map[string][]string) []string {
	var out []string
	for _, pkg := range slices.Sorted(maps.Keys(imports)) {
		allowed, ok := rules[pkg]
		if !ok {
			out = append(out, fmt.Sprintf("package %s has no import rule: add it to the table in docs/architecture.md", pkg))
			continue
		}
		for _, imp := range imports[pkg] {
			if !slices.Contains(allowed, imp) {
				out = append(out, fmt.Sprintf("%s imports %s, which docs/architecture.md does not allow (it may import: %s)", pkg, imp, list(allowed)))
			}
		}
	}
	for _, pkg := range slices.Sorted(maps.Keys(rules)) {
		if _, ok := imports[pkg]; !ok {
			out = append(out, fmt.Sprintf("docs/architecture.md has an import rule for %s, which is not a package of the module", pkg))
		}
	}
	return out
}

func list(s []string) string {
	if len(s) == 0 {
		return "no package of the module"
	}
	return strings.Join(s, ", ")
}

func TestImportRules(t *testing.T) {
	for _, v := range violations(readRules(t), moduleImports(t)) {
		t.Error(v)
	}
}

// The check itself: an import across the rules, a package nobody placed
// and a stale rule are each reported.
func TestViolations(t *testing.T) {
	rules := map[string][]string{"client": {"metadata"}, "repo": {"metadata"}, "metadata": {}, "gone": {}}
	imports := map[string][]string{"client": {"metadata", "repo"}, "repo": {"metadata"}, "metadata": {}, "attest": {"metadata"}}
	got := violations(rules, imports)
	for _, want := range []string{"package attest has no import rule", "client imports repo", "rule for gone"} {
		if !slices.ContainsFunc(got, func(v string) bool { return strings.Contains(v, want) }) {
			t.Errorf("violations = %q, want one containing %q", got, want)
		}
	}
	if len(got) != 3 {
		t.Errorf("violations = %q, want 3", got)
	}
}
