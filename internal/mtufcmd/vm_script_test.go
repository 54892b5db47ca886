package mtufcmd

import (
	"context"
	"crypto/rand"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/pemkey"
	"github.com/mtuf/mtuf/internal/vmtest"
	"github.com/mtuf/mtuf/metadata"
)

// vmBootTimeout bounds one boot of a test image. Boots take 15-20 s under
// TCG on two idle cores; two at once on a busy CI machine take longer.
const vmBootTimeout = 8 * time.Minute

// TestVMScripts runs the scripts in testdata/vmscript, which boot real
// images (systemd's stub, a Debian kernel, mtuf-agent as init) under QEMU
// with OVMF and a swtpm vTPM, and attest them with the real commands.
func TestVMScripts(t *testing.T) {
	t.Parallel()
	tools, err := vmtest.FindTools()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI must boot the test images: %v", err)
		}
		t.Skipf("no measured boot: %v", err)
	}
	ctx := context.Background()
	kernel, err := vmtest.FetchKernel(ctx, "", func(s string) { t.Log(s) })
	if err != nil {
		t.Fatal(err)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	guest := t.TempDir()
	agent, init, err := vmtest.BuildGuest(ctx, root, guest)
	if err != nil {
		t.Fatal(err)
	}
	fixtureKeyDir, err := filepath.Abs(filepath.Join("testdata", "keys"))
	if err != nil {
		t.Fatal(err)
	}
	vm := &vmCmds{tools: tools, kernel: kernel, agent: agent, init: init}
	testscript.Run(t, testscript.Params{
		Dir: "testdata/vmscript",
		Setup: func(env *testscript.Env) error {
			env.Setenv("MTUF_STATE", filepath.Join(env.WorkDir, "state"))
			// Test keys only: every script's keys use this password.
			env.Setenv("MTUF_PASSWORD", "test-password")
			env.Setenv("CI", os.Getenv("CI"))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"cpkeys":    cmdCpKeys(fixtureKeyDir),
			"vmimage":   vm.image,
			"vmboot":    vm.boot,
			"pcrsagree": cmdPCRsAgree,
		},
	})
}

type vmCmds struct {
	tools       *vmtest.Tools
	kernel      *vmtest.Kernel
	agent, init string
}

// vmimage DIR [CMDLINE] builds a test image in DIR: DIR/esp.img, with the
// UKI DIR/uki.efi whose command line is CMDLINE (the default when absent).
func (v *vmCmds) image(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: vmimage DIR [CMDLINE]")
	}
	o := vmtest.ImageOptions{Tools: v.tools, Kernel: v.kernel, Agent: v.agent, Init: v.init}
	if len(args) == 2 {
		o.Cmdline = args[1]
	}
	dir := ts.MkAbs(args[0])
	ts.Check(os.MkdirAll(dir, 0o755))
	img, err := vmtest.BuildImage(context.Background(), dir, o)
	ts.Check(err)
	ts.Logf("built %s: kernel %s %s, command line %q", img.ESP, v.kernel.Package, v.kernel.Version, o.Cmdline)
}

// vmboot NAME=DIR... boots the images DIR/esp.img at once, one VM each, and
// waits for their agents. For each NAME it sets $NAME to the agent's
// HOST:PORT and writes NAME-ak.pem (the agent's attestation key, pinned
// from the VM it just booted) and NAME.eventlog (the firmware's event log
// it serves, a reference log). The VMs stop when the script ends.
func (v *vmCmds) boot(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) == 0 {
		ts.Fatalf("usage: vmboot NAME=DIR...")
	}
	type result struct {
		vm  *vmtest.VM
		err error
	}
	results := make([]result, len(args))
	var wg sync.WaitGroup
	for i, a := range args {
		name, dir, ok := strings.Cut(a, "=")
		if !ok {
			ts.Fatalf("usage: vmboot NAME=DIR...")
		}
		state := ts.MkAbs(name + ".vm")
		ts.Check(os.MkdirAll(state, 0o755))
		wg.Add(1)
		go func() {
			defer wg.Done()
			vm, err := vmtest.Boot(context.Background(), v.tools, filepath.Join(ts.MkAbs(dir), "esp.img"), state, vmBootTimeout)
			results[i] = result{vm, err}
		}()
	}
	wg.Wait()
	for _, r := range results {
		if r.vm != nil {
			vm := r.vm
			ts.Defer(func() { vm.Close() })
		}
	}
	for i, a := range args {
		name, _, _ := strings.Cut(a, "=")
		if results[i].err != nil {
			ts.Fatalf("boot %s: %v", name, results[i].err)
		}
		vm := results[i].vm
		ts.Logf("%s: booted in %.1fs, agent on %s", name, vm.BootTime.Seconds(), vm.Agent)
		ts.Setenv(name, vm.Agent)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		ak, err := agentapi.FetchAK(ctx, http.DefaultClient, "http://"+vm.Agent)
		ts.Check(err)
		akPEM, err := pemkey.Encode(ak)
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(name+"-ak.pem"), akPEM, 0o644))
		nonce := make([]byte, 32)
		rand.Read(nonce)
		att, err := agentapi.Fetch(ctx, http.DefaultClient, "http://"+vm.Agent, nonce)
		cancel()
		ts.Check(err)
		if len(att.GetEventLog()) == 0 {
			ts.Fatalf("%s: the agent serves no event log: is securityfs mounted in the guest?\n%s", name, vm.ConsoleTail(20))
		}
		ts.Check(os.WriteFile(ts.MkAbs(name+".eventlog"), att.GetEventLog(), 0o644))
	}
}

// pcrsagree PRECALC MEASURED checks that every PCR of the precalculated
// document PRECALC holds the value the booted machine measured in MEASURED
// (same bank), and logs the table of both. With !, some PCR must differ.
func cmdPCRsAgree(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: [!] pcrsagree PRECALC MEASURED")
	}
	read := func(name string) *metadata.Measurements {
		data, err := os.ReadFile(ts.MkAbs(name))
		ts.Check(err)
		m, err := metadata.Parse(data)
		if err != nil {
			ts.Fatalf("%s: %v", name, err)
		}
		return m
	}
	table, err := vmtest.ComparePCRs(read(args[0]), read(args[1]))
	ts.Logf("%s", table)
	switch {
	case neg && err == nil:
		ts.Fatalf("%s agrees with %s", args[0], args[1])
	case neg:
		ts.Logf("%v", err)
	case err != nil:
		ts.Fatalf("%s against %s: %v", args[0], args[1], err)
	}
}
