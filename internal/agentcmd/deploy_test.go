package agentcmd

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// unitRE finds the systemd units of docs/deploy.md: a fenced block after
// a "<!-- unit: NAME -->" line.
var unitRE = regexp.MustCompile("(?s)<!-- unit: ([a-z.-]+) -->\n```ini\n(.*?)```")

// TestDeployUnits checks the systemd units that docs/deploy.md gives with
// systemd-analyze verify, and that they keep the sandbox the page promises.
func TestDeployUnits(t *testing.T) {
	t.Parallel()
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze not found; CI must have it (Debian package systemd)")
		}
		t.Skip("systemd-analyze not found (Debian package systemd)")
	}
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "deploy.md"))
	if err != nil {
		t.Fatal(err)
	}
	units := map[string]string{}
	for _, m := range unitRE.FindAllStringSubmatch(string(doc), -1) {
		units[m[1]] = m[2]
	}
	for _, name := range []string{"mtuf-agent.service", "mtuf-refresh.service", "mtuf-refresh.timer"} {
		if units[name] == "" {
			t.Fatalf("docs/deploy.md gives no unit %s", name)
		}
	}
	for _, want := range []string{
		"DevicePolicy=closed\n", "DeviceAllow=/dev/tpmrm0 rw\n",
		"IPAddressDeny=any\n", "SocketBindDeny=any\n", "SocketBindAllow=tcp:8733\n",
		"ProtectSystem=strict\n", "CapabilityBoundingSet=\n", "NoNewPrivileges=yes\n",
		"--listen 0.0.0.0:8733 ",
	} {
		if !strings.Contains(units["mtuf-agent.service"], want) {
			t.Errorf("mtuf-agent.service lacks %q", strings.TrimSpace(want))
		}
	}
	if !strings.Contains(units["mtuf-refresh.service"], "SuccessExitStatus=3\n") {
		t.Error("mtuf-refresh.service fails when nothing was due (refresh exits 3): it needs SuccessExitStatus=3")
	}

	// systemd-analyze checks that ExecStart names an executable: the
	// binaries are not installed here, so the units point at this test
	// binary in their place.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var paths []string
	for name, text := range units {
		text = strings.ReplaceAll(text, "/usr/local/bin/mtuf-agent", self)
		text = strings.ReplaceAll(text, "/usr/local/bin/mtuf", self)
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	cmd := exec.Command(analyze, append([]string{"verify", "--man=no"}, paths...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// verify exits 0 on some mistakes it only warns about (an unknown
	// setting, a bad value): any word about our units is a failure.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, dir) || strings.Contains(line, "mtuf-") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}
