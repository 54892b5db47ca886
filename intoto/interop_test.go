package intoto

// Interoperability with in-toto 1.3.1, the reference implementation in
// Python (Debian package in-toto): its in-toto-verify must accept what this
// package signs, this package must accept what its in-toto-run signs, and
// both must refuse the same broken chains.

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtuf/mtuf/internal/testtool"
	"github.com/mtuf/mtuf/metadata"
)

// runKeyTypes are the key types in-toto-run 1.3.1 signs with: it verifies
// ECDSA P-384 signatures but cannot make them.
var runKeyTypes = []string{"ed25519", "ecdsa-p256", "rsa"}

// requireInToto returns the path of an in-toto 1.3.1 tool; see
// testtool.Find for what happens when it is missing.
func requireInToto(t *testing.T, tool string) string {
	t.Helper()
	return testtool.Find(t, tool, "Debian's in-toto package (apt-get install in-toto, as make test does)")
}

// runInToto runs an in-toto tool in dir and returns its combined output
// and whether it exited with status 0.
func runInToto(t *testing.T, dir, tool string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command(requireInToto(t, tool), args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running %s: %v", tool, err)
	}
	return string(out), err == nil
}

// inTotoKeyTypeFlag is the -t value in-toto's tools need for a key.
func inTotoKeyTypeFlag(pub crypto.PublicKey) string {
	switch pub.(type) {
	case ed25519.PublicKey:
		return "ed25519"
	case *ecdsa.PublicKey:
		return "ecdsa"
	}
	return "rsa"
}

// exportInTotoPrivateKey writes a private key in the unencrypted form
// in-toto-run --key reads: securesystemslib JSON for ed25519 (the 32 byte
// seed in hex) and ECDSA (PEM inside JSON), PKCS #1 PEM for RSA. The key ID
// in the JSON is used by in-toto-run as is, for the signature and the link
// file name.
func exportInTotoPrivateKey(t *testing.T, priv crypto.Signer) []byte {
	t.Helper()
	k, err := intotoKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	var private string
	switch p := priv.(type) {
	case ed25519.PrivateKey:
		private = hex.EncodeToString(p.Seed())
	case *ecdsa.PrivateKey:
		der, err := x509.MarshalPKCS8PrivateKey(p)
		if err != nil {
			t.Fatal(err)
		}
		private = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	case *rsa.PrivateKey:
		return pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(p)})
	default:
		t.Fatalf("cannot export %T for in-toto-run", priv)
	}
	out, err := json.Marshal(map[string]any{
		"keytype":               k.KeyType,
		"scheme":                k.Scheme,
		"keyid":                 k.KeyID,
		"keyid_hash_algorithms": k.KeyIDHashAlgorithms,
		"keyval":                map[string]string{"public": k.KeyVal.Public, "private": private},
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

// writePublicKey exports pub for in-toto's tools into dir/name.
func writePublicKey(t *testing.T, dir, name string, pub crypto.PublicKey) string {
	t.Helper()
	data, err := ExportPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	writeFile(t, p, data, 0o644)
	return p
}

// writePrivateKey exports priv for in-toto-run into dir/name.
func writePrivateKey(t *testing.T, dir, name string, priv crypto.Signer) string {
	t.Helper()
	p := filepath.Join(dir, name)
	writeFile(t, p, exportInTotoPrivateKey(t, priv), 0o600)
	return p
}

// pythonVerify runs in-toto-verify on dir/root.layout with the links in dir.
func pythonVerify(t *testing.T, dir string, owner crypto.PublicKey) (string, bool) {
	t.Helper()
	keyFile := writePublicKey(t, dir, "owner.pub", owner)
	return runInToto(t, dir, "in-toto-verify", "--layout", "root.layout", "--layout-keys", keyFile,
		"--key-types", inTotoKeyTypeFlag(owner), "--link-dir", dir)
}

// readLinks returns the link files in dir by name.
func readLinks(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.link"))
	if err != nil {
		t.Fatal(err)
	}
	links := map[string][]byte{}
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		links[filepath.Base(n)] = data
	}
	return links
}

// (a) in-toto-verify accepts the layout and links this package makes.
func TestInTotoInterop_PythonVerifiesGoChain(t *testing.T) {
	requireInToto(t, "in-toto-verify")
	for _, typ := range intotoKeyTypes {
		t.Run(typ, func(t *testing.T) {
			c := newTestChain(t, typ)
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "root.layout"), c.layout, 0o644)
			writeFile(t, filepath.Join(dir, metadata.MeasurementsFile), c.doc, 0o644)
			for name, data := range c.links {
				writeFile(t, filepath.Join(dir, name), data, 0o644)
			}
			if out, ok := pythonVerify(t, dir, c.owner.Public()); !ok {
				t.Fatalf("in-toto-verify refused the chain:\n%s", out)
			}

			// The same tool refuses a publish link for other measurements,
			// so the acceptance above is a real verification.
			data, _, err := NewLink(StepPublish, map[string][]byte{metadata.MeasurementsFile: []byte("tampered")}, nil, c.publisher)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, linkName(t, StepPublish, c.publishKeyID)), data, 0o644)
			if out, ok := pythonVerify(t, dir, c.owner.Public()); ok || !strings.Contains(out, "DISALLOW") {
				t.Fatalf("in-toto-verify accepted a publish link for other measurements:\n%s", out)
			}
		})
	}
}

// pyChain is a supply chain whose links in-toto-run made, in a directory.
type pyChain struct {
	dir                      string
	owner, reader, publisher crypto.Signer
	layout                   []byte
	expires                  time.Time
}

func newPyChain(t *testing.T, typ string) *pyChain {
	t.Helper()
	p := &pyChain{
		dir:       t.TempDir(),
		owner:     newTestKey(t, typ),
		reader:    newTestKey(t, typ),
		publisher: newTestKey(t, typ),
		expires:   time.Now().Add(time.Hour),
	}
	var err error
	p.layout, err = NewLayout(p.owner, LayoutOptions{
		ReadFunctionaries:    []crypto.PublicKey{p.reader.Public()},
		PublishFunctionaries: []crypto.PublicKey{p.publisher.Public()},
		Expires:              p.expires,
	})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(p.dir, "root.layout"), p.layout, 0o644)
	writeFile(t, filepath.Join(p.dir, metadata.MeasurementsFile), []byte(testDoc), 0o644)
	p.run(t, StepReadMeasurements, p.reader, "--products", metadata.MeasurementsFile, "--", "true")
	p.run(t, StepPublish, p.publisher, "--materials", metadata.MeasurementsFile, "--no-command")
	return p
}

// run runs in-toto-run for step in the chain's directory, signing with key,
// and checks that the link is named with the key ID this package computes.
func (p *pyChain) run(t *testing.T, step string, key crypto.Signer, args ...string) {
	t.Helper()
	keyFile := writePrivateKey(t, t.TempDir(), "functionary-test.key", key)
	args = append([]string{"--step-name", step, "--key", keyFile, "--key-type", inTotoKeyTypeFlag(key.Public()),
		"--metadata-directory", p.dir}, args...)
	if out, ok := runInToto(t, p.dir, "in-toto-run", args...); !ok {
		t.Fatalf("in-toto-run %s:\n%s", step, out)
	}
	keyID, err := KeyID(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p.dir, linkName(t, step, keyID))); err != nil {
		t.Fatalf("in-toto-run did not write the link under the name LinkFileName gives: %v", err)
	}
}

func (p *pyChain) doc(t *testing.T) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(p.dir, metadata.MeasurementsFile))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (p *pyChain) verify(t *testing.T, now time.Time) error {
	t.Helper()
	return VerifySupplyChain(p.layout, []crypto.PublicKey{p.owner.Public()}, readLinks(t, p.dir), p.doc(t), now)
}

// (b) links made by in-toto-run verify here, and the whole chain verifies
// with in-toto-verify too.
func TestInTotoInterop_GoVerifiesInTotoRun(t *testing.T) {
	requireInToto(t, "in-toto-run")
	for _, typ := range runKeyTypes {
		t.Run(typ, func(t *testing.T) {
			p := newPyChain(t, typ)
			if err := p.verify(t, time.Now()); err != nil {
				t.Fatalf("VerifySupplyChain of in-toto-run links: %v", err)
			}
			if out, ok := pythonVerify(t, p.dir, p.owner.Public()); !ok {
				t.Fatalf("in-toto-verify refused the chain:\n%s", out)
			}
			readKeyID, _ := KeyID(p.reader.Public())
			step, keyID, products, err := LinkProducts(readLinks(t, p.dir)[linkName(t, StepReadMeasurements, readKeyID)])
			if err != nil {
				t.Fatalf("LinkProducts: %v", err)
			}
			if step != StepReadMeasurements || keyID != readKeyID {
				t.Errorf("LinkProducts = %s, %s; want %s, %s", step, keyID, StepReadMeasurements, readKeyID)
			}
			if err := products[metadata.MeasurementsFile].Verify(p.doc(t)); err != nil {
				t.Errorf("product of the in-toto-run link: %v", err)
			}
		})
	}
}

// (c) broken chains with in-toto-run links are refused here, with an error
// that says what is wrong, and by in-toto-verify.
func TestInTotoInterop_Refusals(t *testing.T) {
	requireInToto(t, "in-toto-run")
	for _, tt := range []struct {
		name string
		// change breaks the chain and returns the verification time and
		// the measurements document to verify.
		change func(t *testing.T, p *pyChain) (time.Time, []byte)
		want   error
		msg    string
		// python is what in-toto-verify prints when it refuses; empty if
		// in-toto-verify has nothing to refuse (it never sees the document).
		python string
	}{
		{
			name: "measurements differ from the link's product",
			change: func(t *testing.T, p *pyChain) (time.Time, []byte) {
				return time.Now(), []byte(strings.Replace(testDoc, "1111", "2222", 1))
			},
			want: ErrMeasurementsMismatch,
			msg:  "measurements.json is not the measurements.json that step read-measurements produced",
		},
		{
			name: "measurements changed before publishing",
			change: func(t *testing.T, p *pyChain) (time.Time, []byte) {
				changed := []byte(strings.Replace(testDoc, "1111", "2222", 1))
				writeFile(t, filepath.Join(p.dir, metadata.MeasurementsFile), changed, 0o644)
				p.run(t, StepPublish, p.publisher, "--materials", metadata.MeasurementsFile, "--no-command")
				return time.Now(), changed
			},
			want:   ErrArtifactRules,
			msg:    "step publish records measurements.json as a material with sha256 " + sha256Hex(strings.Replace(testDoc, "1111", "2222", 1)),
			python: "RuleVerificationError: 'DISALLOW *' matched the following artifacts: ['measurements.json']",
		},
		{
			name: "link signed by a non-functionary",
			change: func(t *testing.T, p *pyChain) (time.Time, []byte) {
				readKeyID, _ := KeyID(p.reader.Public())
				if err := os.Remove(filepath.Join(p.dir, linkName(t, StepReadMeasurements, readKeyID))); err != nil {
					t.Fatal(err)
				}
				p.run(t, StepReadMeasurements, newTestKey(t, "ed25519"), "--products", metadata.MeasurementsFile, "--", "true")
				return time.Now(), []byte(testDoc)
			},
			want:   ErrLinkUnauthorized,
			msg:    "which is not a functionary of step read-measurements",
			python: "LinkNotFoundError: Step 'read-measurements' requires '1' link metadata file(s), found '0'",
		},
		{
			name: "missing link",
			change: func(t *testing.T, p *pyChain) (time.Time, []byte) {
				pubKeyID, _ := KeyID(p.publisher.Public())
				if err := os.Remove(filepath.Join(p.dir, linkName(t, StepPublish, pubKeyID))); err != nil {
					t.Fatal(err)
				}
				return time.Now(), []byte(testDoc)
			},
			want:   ErrLinkMissing,
			msg:    "step publish needs 1 link(s) signed by distinct functionaries, found 0",
			python: "LinkNotFoundError: Step 'publish' requires '1' link metadata file(s), found '0'",
		},
		{
			name: "expired layout",
			change: func(t *testing.T, p *pyChain) (time.Time, []byte) {
				lay := parsedLayout(t, p.layout)
				lay.Expires = "2020-01-01T00:00:00Z"
				p.layout = signedLayout(t, p.owner, lay)
				writeFile(t, filepath.Join(p.dir, "root.layout"), p.layout, 0o644)
				return time.Now(), []byte(testDoc)
			},
			want:   ErrLayoutExpired,
			msg:    "it expired at 2020-01-01T00:00:00Z",
			python: "LayoutExpiredError",
		},
		{
			name: "layout signed by an untrusted key",
			change: func(t *testing.T, p *pyChain) (time.Time, []byte) {
				var err error
				p.layout, err = NewLayout(newTestKey(t, "ed25519"), LayoutOptions{
					ReadFunctionaries:    []crypto.PublicKey{p.reader.Public()},
					PublishFunctionaries: []crypto.PublicKey{p.publisher.Public()},
					Expires:              p.expires,
				})
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, filepath.Join(p.dir, "root.layout"), p.layout, 0o644)
				return time.Now(), []byte(testDoc)
			},
			want:   ErrLayoutSignature,
			msg:    "but the trusted layout key(s) are",
			python: "SignatureVerificationError: No signature found for key",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newPyChain(t, "ed25519")
			now, doc := tt.change(t, p)
			err := VerifySupplyChain(p.layout, []crypto.PublicKey{p.owner.Public()}, readLinks(t, p.dir), doc, now)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("VerifySupplyChain: got %v, want %v containing %q", err, tt.want, tt.msg)
			}
			if tt.python == "" {
				return
			}
			out, ok := pythonVerify(t, p.dir, p.owner.Public())
			t.Logf("in-toto-verify: %s", out)
			if ok {
				t.Fatalf("in-toto-verify accepted what VerifySupplyChain refused (%v):\n%s", err, out)
			}
			if !strings.Contains(out, tt.python) {
				t.Errorf("in-toto-verify output does not mention %q:\n%s", tt.python, out)
			}
		})
	}
}
