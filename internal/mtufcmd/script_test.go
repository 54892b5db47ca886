package mtufcmd

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/mtuf/mtuf/internal/agentcmd"
	"github.com/mtuf/mtuf/internal/pcrreadercmd"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"mtuf":       func() { os.Exit(Main()) },
		"mtuf-agent": func() { os.Exit(agentcmd.Main()) },
		"pcr-reader": func() { os.Exit(pcrreadercmd.Main()) },
	})
}

// TestScripts runs the command-line scripts in testdata/script: the real
// commands, as a user runs them, including every mistake a user can make.
func TestScripts(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("BOOT", filepath.Join(root, "testdata", "boot"))
			env.Setenv("MTUF_STATE", filepath.Join(env.WorkDir, "state"))
			// Test keys only: every script's keys use this password.
			env.Setenv("MTUF_PASSWORD", "test-password")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfile": cmdWaitFile,
			"subst":    cmdSubst,
			"envfile":  cmdEnvFile,
		},
	})
}

// waitfile FILE waits until FILE exists and is not empty, for servers
// started in the background that write their address when ready.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: waitfile FILE")
	}
	p := ts.MkAbs(args[0])
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := os.Stat(p); err == nil && st.Size() > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("timed out waiting for %s", args[0])
}

// subst FILE OLD NEW replaces every OLD with NEW in FILE, in place (to
// tamper with files as an attacker would).
func cmdSubst(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || neg {
		ts.Fatalf("usage: subst FILE OLD NEW")
	}
	p := ts.MkAbs(args[0])
	data, err := os.ReadFile(p)
	ts.Check(err)
	if !bytes.Contains(data, []byte(args[1])) {
		ts.Fatalf("%s does not contain %q", args[0], args[1])
	}
	ts.Check(os.WriteFile(p, bytes.ReplaceAll(data, []byte(args[1]), []byte(args[2])), 0o644))
}

// envfile VAR FILE sets VAR to the trimmed content of FILE, such as the
// address a background server wrote.
func cmdEnvFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: envfile VAR FILE")
	}
	data, err := os.ReadFile(ts.MkAbs(args[1]))
	ts.Check(err)
	ts.Setenv(args[0], strings.TrimSpace(string(data)))
}
