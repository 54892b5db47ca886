package mtufcmd

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/mtuf/mtuf/internal/agentcmd"
	"github.com/mtuf/mtuf/internal/pcrreadercmd"
	"github.com/mtuf/mtuf/internal/precalccmd"
	"github.com/mtuf/mtuf/repo"
)

func TestMain(m *testing.M) {
	// A script spends most of its time waiting for the commands it runs,
	// whose CPU is not the test binary's: run twice as many scripts at
	// once as there are CPUs, unless -parallel says otherwise (flags are
	// parsed later, so a -parallel given on the command line wins).
	if f := flag.Lookup("test.parallel"); f != nil {
		f.Value.Set(strconv.Itoa(2 * runtime.GOMAXPROCS(0)))
	}
	testscript.Main(m, map[string]func(){
		"mtuf":        func() { os.Exit(Main()) },
		"mtuf-agent":  func() { os.Exit(agentcmd.Main()) },
		"pcr-reader":  func() { os.Exit(pcrreadercmd.Main()) },
		"pcr-precalc": func() { os.Exit(precalccmd.Main()) },
		// mtuf-pausing is mtuf whose storage stops for good after the
		// $MTUF_TEST_PAUSE_AT-th write, once it has written the file
		// $MTUF_TEST_PAUSED: the script then kills it, as a crash would.
		"mtuf-pausing": func() {
			wrapStorage = func(st repo.Storage) repo.Storage { return newPausingStorage(st) }
			os.Exit(Main())
		},
	})
}

// TestScripts runs the command-line scripts in testdata/script: the real
// commands, as a user runs them, including every mistake a user can make.
func TestScripts(t *testing.T) {
	t.Parallel()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fixtureKeyDir, err := filepath.Abs(filepath.Join("testdata", "keys"))
	if err != nil {
		t.Fatal(err)
	}
	goEnv := goBuildEnv(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("BOOT", filepath.Join(root, "testdata", "boot"))
			env.Setenv("MTUF_STATE", filepath.Join(env.WorkDir, "state"))
			// Test keys only: every script's keys use this password.
			env.Setenv("MTUF_PASSWORD", "test-password")
			// Scripts that need an installed tool (in-toto) skip without
			// it, except in CI, which must have it.
			env.Setenv("CI", os.Getenv("CI"))
			setupS3(env)
			setupKMS(env)
			// releases.txt builds mtuf as a release is built.
			env.Setenv("MODROOT", root)
			env.Setenv("PLATFORM", runtime.GOOS+"-"+runtime.GOARCH)
			for k, v := range goEnv {
				env.Setenv(k, v)
			}
			return nil
		},
		Condition: scriptCondition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitfile":    cmdWaitFile,
			"waitexpired": cmdWaitExpired,
			"cpkeys":      cmdCpKeys(fixtureKeyDir),
			"subst":       cmdSubst,
			"envfile":     cmdEnvFile,
			// A real S3 server and its bucket (s3_script_test.go).
			"s3server":  cmdS3Server,
			"s3readers": cmdS3Readers,
			"s3get":     cmdS3Get,
			// A real KMS emulator and its keys (kms_script_test.go).
			"kmsserver": cmdKMSServer,
			"kmskey":    cmdKMSKey,
			// Prometheus metrics, scraped or from a file (metric_script_test.go).
			"metric": cmdMetric,
		},
	})
}

type pausingStorage struct {
	repo.Storage
	writes, at int
	paused     string
}

func newPausingStorage(st repo.Storage) *pausingStorage {
	at, _ := strconv.Atoi(os.Getenv("MTUF_TEST_PAUSE_AT"))
	return &pausingStorage{Storage: st, at: at, paused: os.Getenv("MTUF_TEST_PAUSED")}
}

func (p *pausingStorage) write() {
	p.writes++
	if p.writes == p.at {
		os.WriteFile(p.paused, []byte(strconv.Itoa(p.writes)), 0o644)
		select {} // until killed
	}
}

func (p *pausingStorage) PutOnce(ctx context.Context, name string, data []byte) error {
	p.write()
	return p.Storage.PutOnce(ctx, name, data)
}

func (p *pausingStorage) Replace(ctx context.Context, name string, data []byte) error {
	p.write()
	return p.Storage.Replace(ctx, name, data)
}

// Lock keeps the directory lock of the storage underneath.
func (p *pausingStorage) Lock(ctx context.Context) (func(), error) {
	if l, ok := p.Storage.(repo.Locker); ok {
		return l.Lock(ctx)
	}
	return func() {}, nil
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

// waitexpired FILE waits until the expiry that FILE records has passed:
// the NotAfter of a PEM certificate, or else the first "expires TIME"
// (RFC 3339) in the file, such as the stdout of mtuf repo layout. It waits
// at most a minute, and fails for an expiry further away.
func cmdWaitExpired(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: waitexpired FILE")
	}
	data := ts.ReadFile(args[0])
	var expiry time.Time
	if block, _ := pem.Decode([]byte(data)); block != nil && block.Type == "CERTIFICATE" {
		cert, err := x509.ParseCertificate(block.Bytes)
		ts.Check(err)
		expiry = cert.NotAfter
	} else {
		m := expiresRE.FindStringSubmatch(data)
		if m == nil {
			ts.Fatalf("%s holds neither a certificate nor an expiry time", args[0])
		}
		var err error
		expiry, err = time.Parse(time.RFC3339, m[1])
		ts.Check(err)
	}
	wait := time.Until(expiry)
	if wait > time.Minute {
		ts.Fatalf("%s expires at %s, more than a minute from now", args[0], expiry.Format(time.RFC3339))
	}
	// Past the expiry, not at it: checks compare times to the nanosecond.
	time.Sleep(wait + time.Millisecond)
}

var expiresRE = regexp.MustCompile(`expires (\S+)`)

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

// goBuildEnv is the environment a script needs to run go build as the
// developer would: testscript gives each script a HOME of its own, where
// the go command would find no build cache and no module cache.
func goBuildEnv(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command("go", "env", "-json", "GOCACHE", "GOMODCACHE", "GOPATH", "GOFLAGS", "GOPROXY", "GOTOOLCHAIN").Output()
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	env := map[string]string{}
	if err := json.Unmarshal(out, &env); err != nil {
		t.Fatalf("go env: %v", err)
	}
	return env
}
