package pcrreadercmd

import (
	"bytes"
	"context"
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	attestpb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"google.golang.org/protobuf/proto"

	"github.com/mtuf/mtuf/internal/agent"
	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/testkeys"
	"github.com/mtuf/mtuf/internal/tpm"
	"github.com/mtuf/mtuf/internal/tpm/tpmtest"
	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

const testPassword = testkeys.Password

// bootLog is the described boot chain of an image, booted into the
// simulator before it is read.
var bootLog = filepath.Join("..", "..", "testdata", "boot", "image-v1.0.0.yaml")

// runCmd runs pcr-reader in process with args and returns its output and
// error.
func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	c := newCommand(&out, &errOut)
	c.SetArgs(args)
	err = c.ExecuteContext(context.Background())
	return out.String(), errOut.String(), err
}

// tpm2PCRRead reads one bank with tpm2_pcrread, the reference reader, and
// parses its YAML output ("sha256:\n  0 : 0x00...").
func tpm2PCRRead(t *testing.T, tcti, bank string) map[uint32][]byte {
	t.Helper()
	out, err := exec.Command("tpm2_pcrread", "-T", tcti, bank+":all").CombinedOutput()
	if err != nil {
		t.Fatalf("tpm2_pcrread: %v\n%s", err, out)
	}
	res := map[uint32][]byte{}
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasSuffix(line, ":") {
			continue
		}
		idx, val, ok := strings.Cut(line, ":")
		if !ok {
			t.Fatalf("unexpected tpm2_pcrread output line %q", line)
		}
		i, err := strconv.ParseUint(strings.TrimSpace(idx), 10, 32)
		if err != nil {
			t.Fatalf("tpm2_pcrread output line %q: %v", line, err)
		}
		d, err := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(val), "0x"))
		if err != nil {
			t.Fatalf("tpm2_pcrread output line %q: %v", line, err)
		}
		res[uint32(i)] = d
	}
	return res
}

// TestReadSwtpmAgreesWithTPM2Tools runs pcr-reader against swtpm over TCP
// after extends made with tpm2-tools, and compares every PCR it writes with
// what tpm2_pcrread reads, in both banks.
func TestReadSwtpmAgreesWithTPM2Tools(t *testing.T) {
	tpmtest.RequireTools(t, "swtpm", "tpm2_pcrextend", "tpm2_pcrread")
	sw := tpmtest.StartSwtpm(t)
	// Every PCR the profile enforces is extended: pcr-reader refuses
	// enforced PCRs in their reset state.
	for i, pcr := range []int{4, 8, 9, 10, 11, 12, 13} {
		d256 := sha256.Sum256([]byte(fmt.Sprintf("event %d", i)))
		d384 := crypto.SHA384.New()
		d384.Write([]byte(fmt.Sprintf("event %d", i)))
		arg := fmt.Sprintf("%d:sha256=%x,sha384=%x", pcr, d256, d384.Sum(nil))
		if out, err := exec.Command("tpm2_pcrextend", "-T", sw.TCTI, arg).CombinedOutput(); err != nil {
			t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
		}
	}
	dir := t.TempDir()
	for _, bank := range []string{"sha256", "sha384"} {
		t.Run(bank, func(t *testing.T) {
			out := filepath.Join(dir, bank+".json")
			// 10 is omitted by the profile and 4 enforced: the overrides
			// put 10 in and make 4 warn-only.
			if _, stderr, err := runCmd(t, "--tpm", sw.Spec, "--bank", bank, "--image", "v1.0.0", "--platform", "qemu-vtpm",
				"--out", out, "--enforce", "10", "--warn-only", "4"); err != nil {
				t.Fatalf("pcr-reader: %v\n%s", err, stderr)
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			m, err := metadata.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if m.Hash != bank {
				t.Fatalf("document bank = %s, want %s", m.Hash, bank)
			}
			ref := tpm2PCRRead(t, sw.TCTI, bank)
			for _, idx := range []uint32{4, 9, 10} {
				if _, ok := m.PCRs[idx]; !ok {
					t.Errorf("PCR %d is missing from the document", idx)
				}
				if bytes.Equal(ref[idx], make([]byte, len(ref[idx]))) {
					t.Errorf("PCR %d was not extended", idx)
				}
			}
			for idx, p := range m.PCRs {
				if !bytes.Equal(p.Expected, ref[idx]) {
					t.Errorf("PCR %d: pcr-reader read %x, tpm2_pcrread %x", idx, p.Expected, ref[idx])
				}
			}
			if !m.PCRs[4].WarnOnly || m.PCRs[10].WarnOnly || m.PCRs[9].WarnOnly {
				t.Errorf("overrides not applied: 4 warn-only %v, 9 %v, 10 %v", m.PCRs[4].WarnOnly, m.PCRs[9].WarnOnly, m.PCRs[10].WarnOnly)
			}
		})
	}
}

// writeTestKey puts an encrypted key file ci-test.key, and ci-test.pub,
// into dir; the key of each type is encrypted once per test binary.
func writeTestKey(t *testing.T, dir string, typ keys.Type) (string, crypto.Signer) {
	t.Helper()
	return testkeys.Write(t, dir, "ci-test", typ)
}

// TestLinkKeyRecordsTheRun checks that the link pcr-reader writes attests
// exactly the bytes of the document, under the name in-toto expects, and
// verifies against a layout naming the key as functionary.
func TestLinkKeyRecordsTheRun(t *testing.T) {
	t.Setenv(keys.PasswordEnv, testPassword)
	for _, typ := range []keys.Type{keys.ED25519, keys.ECDSAP256, keys.RSA3072} {
		t.Run(string(typ), func(t *testing.T) {
			dir := t.TempDir()
			keyFile, priv := writeTestKey(t, dir, typ)
			out := filepath.Join(dir, "m.json")
			stdout, stderr, err := runCmd(t, "--tpm", "sim", "--boot-log", bootLog, "--image", "v1.0.0", "--platform", "qemu-vtpm", "--out", out, "--link-key", keyFile)
			if err != nil {
				t.Fatalf("pcr-reader: %v\n%s", err, stderr)
			}
			doc, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			keyID, err := intoto.KeyID(priv.Public())
			if err != nil {
				t.Fatal(err)
			}
			name, _ := metadata.LinkFileName(intoto.StepReadMeasurements, keyID)
			if !strings.Contains(stdout, "wrote "+filepath.Join(dir, name)) {
				t.Errorf("output does not name the link %s:\n%s", name, stdout)
			}
			link, err := os.ReadFile(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			step, signer, products, err := intoto.LinkProducts(link)
			if err != nil {
				t.Fatal(err)
			}
			m, err := metadata.Parse(doc)
			if err != nil {
				t.Fatal(err)
			}
			// The document, and each of its PCRs, for a layout that
			// matches them against a precalculation.
			if step != intoto.StepReadMeasurements || signer != keyID || len(products) != 1+len(m.PCRs) {
				t.Fatalf("link: step %s, key %s, products %v", step, signer, products)
			}
			if err := products[metadata.MeasurementsFile].Verify(doc); err != nil {
				t.Errorf("the link's product is not the document written: %v", err)
			}
			for idx, p := range m.PCRs {
				if err := products[intoto.PCRArtifact(m.Hash, idx)].Verify([]byte(hex.EncodeToString(p.Expected))); err != nil {
					t.Errorf("PCR %d: the link's artifact is not the document's value: %v", idx, err)
				}
			}
		})
	}
}

func TestLinkKeyErrors(t *testing.T) {
	dir := t.TempDir()
	keyFile, _ := writeTestKey(t, dir, keys.ED25519)
	for _, tc := range []struct {
		name, password string
		args           []string
		want           string
	}{
		{"stdout", testPassword, []string{"--out", "-", "--link-key", keyFile}, "--link-key needs --out FILE"},
		{"wrong password", "wrong", []string{"--out", filepath.Join(dir, "a.json"), "--link-key", keyFile}, "--link-key: private key"},
		{"missing key", testPassword, []string{"--out", filepath.Join(dir, "b.json"), "--link-key", filepath.Join(dir, "nope.key")}, "nope.key"},
		{"public key", testPassword, []string{"--out", filepath.Join(dir, "c.json"), "--link-key", filepath.Join(dir, "ci-test.pub")}, "ci-test.pub"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(keys.PasswordEnv, tc.password)
			args := append([]string{"--tpm", "sim", "--boot-log", bootLog, "--image", "v1.0.0", "--platform", "qemu-vtpm"}, tc.args...)
			_, _, err := runCmd(t, args...)
			if err == nil || !cli.IsUsage(err) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error = %v, want a usage error containing %q", err, tc.want)
			}
		})
	}
	// The key is unlocked before anything is read or written.
	if ents, _ := filepath.Glob(filepath.Join(dir, "*.json")); len(ents) != 0 {
		t.Errorf("files written despite errors: %v", ents)
	}
}

// TestAgentQuoteWithShiftedPCRValues reads from an agent whose answer has
// a byte moved from PCR 4's value to PCR 5's: the quote still verifies,
// since it signs the values laid end to end, but the values are not the
// node's. pcr-reader refuses it, naming the PCR and the bank.
func TestAgentQuoteWithShiftedPCRValues(t *testing.T) {
	rw, err := tpm.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	chain, err := tpm.LoadBootChain(bootLog)
	if err != nil {
		t.Fatal(err)
	}
	eventLog, err := tpm.Boot(rw, chain)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(agent.Config{TPM: rw, EventLog: eventLog})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	shift := false
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := httptest.NewRecorder()
		a.ServeHTTP(rec, r)
		body := rec.Body.Bytes()
		if shift && r.URL.Path == agentapi.AttestationPath && rec.Code == http.StatusOK {
			var att attestpb.Attestation
			if err := proto.Unmarshal(body, &att); err != nil {
				t.Error(err)
			}
			for _, q := range att.GetQuotes() {
				if q.GetPcrs().GetHash() == tpmpb.HashAlgo_SHA256 {
					p := q.GetPcrs().GetPcrs()
					p[5] = append([]byte{p[4][len(p[4])-1]}, p[5]...)
					p[4] = p[4][:len(p[4])-1]
				}
			}
			if body, err = proto.Marshal(&att); err != nil {
				t.Error(err)
			}
		}
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		w.Write(body)
	}))
	defer srv.Close()
	args := []string{"--agent", srv.URL, "--image", "v1.0.0", "--platform", "qemu-vtpm", "--out", "-"}

	// The same agent, unaltered, is read.
	if _, _, err := runCmd(t, args...); err != nil {
		t.Fatalf("unaltered agent: %v", err)
	}
	shift = true
	stdout, _, err := runCmd(t, args...)
	if err == nil || cli.IsUsage(err) || !strings.Contains(err.Error(), "sha256 quote gives PCR 4 a value of 31 bytes") {
		t.Fatalf("error = %v, want the sha256 value of PCR 4 refused, not as a usage error", err)
	}
	if stdout != "" {
		t.Errorf("measurements written from a tampered quote:\n%s", stdout)
	}
}

// TestRefusesResetPCRs checks that pcr-reader writes no document of reset
// values: not from a simulator that booted nothing, and not from a TPM
// whose enforced PCRs nothing extended.
func TestRefusesResetPCRs(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "m.json")
	_, _, err := runCmd(t, "--tpm", "sim", "--image", "v1.0.0", "--platform", "qemu-vtpm", "--out", out)
	if err == nil || !cli.IsUsage(err) || !strings.Contains(err.Error(), "--tpm sim without --boot-log") || !strings.Contains(err.Error(), "reset value") {
		t.Errorf("simulator without a boot log: error = %v, want a usage error that says why", err)
	}
	_, _, err = runCmd(t, "--tpm", "sim:7", "--image", "v1.0.0", "--platform", "qemu-vtpm", "--out", out)
	if err == nil || !strings.Contains(err.Error(), "--tpm sim without --boot-log") {
		t.Errorf("seeded simulator without a boot log: error = %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a document was written: %v", err)
	}

	tpmtest.RequireTools(t, "swtpm", "tpm2_pcrextend")
	sw := tpmtest.StartSwtpm(t)
	// Only PCR 9 is extended: PCR 4, enforced by the profile, stays zero.
	d := sha256.Sum256([]byte("initrd"))
	if out, err := exec.Command("tpm2_pcrextend", "-T", sw.TCTI, fmt.Sprintf("9:sha256=%x", d)).CombinedOutput(); err != nil {
		t.Fatalf("tpm2_pcrextend: %v\n%s", err, out)
	}
	_, _, err = runCmd(t, "--tpm", sw.Spec, "--image", "v1.0.0", "--platform", "qemu-vtpm", "--out", out)
	if !errors.Is(err, metadata.ErrResetPCR) || !strings.Contains(err.Error(), "PCR 4: ") || strings.Contains(err.Error(), "PCR 9: ") {
		t.Errorf("swtpm with PCR 4 unextended: error = %v, want PCR 4 named as reset (and not PCR 9)", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a document was written: %v", err)
	}
}
