package keys

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/internal/testtool"
)

// The fixture key pair in testdata was made by cosign v2.6.5 itself (see
// testdata/README); its password is cosignFixturePassword.
const cosignFixturePassword = "test-password"

// TestCosignFixture reads a key pair and a blob signature made by the real
// cosign, without needing the cosign binary.
func TestCosignFixture(t *testing.T) {
	t.Parallel()
	priv, err := LoadPrivate(context.Background(), filepath.Join("testdata", "cosign-test.key"), envPassword(t, cosignFixturePassword))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := LoadPublic(filepath.Join("testdata", "cosign-test.pub"))
	if err != nil {
		t.Fatal(err)
	}
	ecPub, ok := pub.(*ecdsa.PublicKey)
	if !ok || !ecPub.Equal(priv.Public()) {
		t.Fatalf("cosign-test.pub (%T) does not match cosign-test.key", pub)
	}

	// cosign's signature over the blob verifies with the key as we read it.
	blob, err := os.ReadFile(filepath.Join("testdata", "cosign-test.blob"))
	if err != nil {
		t.Fatal(err)
	}
	sigB64, err := os.ReadFile(filepath.Join("testdata", "cosign-test.blob.sig"))
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sigB64)))
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256(blob)
	if !ecdsa.VerifyASN1(ecPub, digest[:], sig) {
		t.Fatal("cosign's signature does not verify with cosign-test.pub")
	}

	// A cosign key signs TUF metadata like one of ours.
	s, err := Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	key, err := TUFKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	root := tufmeta.Root(time.Now().Add(time.Hour))
	if err := root.Signed.AddKey(key, tufmeta.ROOT); err != nil {
		t.Fatal(err)
	}
	if _, err := root.Sign(s); err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(tufmeta.ROOT, root); err != nil {
		t.Fatalf("go-tuf rejects metadata signed with the cosign key: %v", err)
	}

	_, err = LoadPrivate(context.Background(), filepath.Join("testdata", "cosign-test.key"), envPassword(t, "not-the-password"))
	if !errors.Is(err, ErrWrongPassword) || !strings.Contains(err.Error(), "cosign-test.key") {
		t.Fatalf("wrong password on the cosign key: error = %v, want ErrWrongPassword naming the file", err)
	}
}

// findCosign finds the cosign binary where 'make tools' installs it; see
// testtool.Find.
func findCosign(t *testing.T) string {
	t.Helper()
	return testtool.Find(t, "cosign", testtool.CosignHint)
}

// cosignRunner runs cosign offline in a scratch home directory.
type cosignRunner struct {
	bin string
	env []string
	dir string
}

func newCosign(t *testing.T) *cosignRunner {
	bin := findCosign(t)
	home := t.TempDir()
	return &cosignRunner{
		bin: bin,
		dir: t.TempDir(),
		env: append(os.Environ(),
			"HOME="+home,
			"TUF_ROOT="+filepath.Join(home, "tuf"),
			"COSIGN_PASSWORD="+testPassword,
		),
	}
}

func (c *cosignRunner) run(t *testing.T, extraEnv []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Dir = c.dir
	cmd.Env = append(append([]string{}, c.env...), extraEnv...)
	cmd.Stdin = nil
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestCosignReadsOurKeys shows that stock cosign takes key files that mtuf
// writes, and that mtuf takes key files that cosign writes.
func TestCosignReadsOurKeys(t *testing.T) {
	t.Parallel()
	c := newCosign(t)

	t.Run("cosign key loaded by mtuf", func(t *testing.T) {
		if out, err := c.run(t, nil, "generate-key-pair", "--output-key-prefix", "fresh"); err != nil {
			t.Fatalf("cosign generate-key-pair: %v\n%s", err, out)
		}
		priv, err := LoadPrivate(context.Background(), filepath.Join(c.dir, "fresh.key"), envPassword(t, testPassword))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := LoadPublic(filepath.Join(c.dir, "fresh.pub"))
		if err != nil {
			t.Fatal(err)
		}
		if !pub.(*ecdsa.PublicKey).Equal(priv.Public()) {
			t.Fatal("fresh.pub does not match fresh.key")
		}
		if _, err := Signer(priv); err != nil {
			t.Fatal(err)
		}
	})

	blob := filepath.Join(c.dir, "blob.txt")
	if err := os.WriteFile(blob, []byte("release v1.2.3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tampered := filepath.Join(c.dir, "tampered.txt")
	if err := os.WriteFile(tampered, []byte("release v1.2.4\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, typ := range types {
		t.Run("mtuf "+string(typ)+" key used by cosign", func(t *testing.T) {
			// The bytes WriteKeyPair writes, encrypted once per binary.
			name := filepath.Join(c.dir, "ours-"+string(typ))
			writeTestKeyPair(t, name, typ)

			// cosign decrypts our file and derives the same public key file,
			// byte for byte.
			out, err := c.run(t, nil, "public-key", "--key", name+".key")
			if err != nil {
				t.Fatalf("cosign public-key: %v\n%s", err, out)
			}
			ourPub, err := os.ReadFile(name + ".pub")
			if err != nil {
				t.Fatal(err)
			}
			if out != string(ourPub) {
				t.Fatalf("cosign derives public key\n%s\nfrom our key file, want\n%s", out, ourPub)
			}
			if out, err := c.run(t, []string{"COSIGN_PASSWORD=wrong"}, "public-key", "--key", name+".key"); err == nil {
				t.Fatalf("cosign read our key with a wrong password:\n%s", out)
			}

			if typ == ED25519 {
				// cosign v2.6.5 panics in sign-blob for ed25519 keys when the
				// transparency log is off (fixed upstream after v2.6.5), so the
				// ed25519 file is shown readable by public-key above only.
				return
			}
			sigPath := name + ".sig"
			if out, err := c.run(t, nil, "sign-blob", "--key", name+".key", "--tlog-upload=false",
				"--output-signature", sigPath, blob); err != nil {
				t.Fatalf("cosign sign-blob with our key: %v\n%s", err, out)
			}
			// Setting a CT log key stops verify-blob from fetching the public
			// Sigstore trust root, which this offline check does not use: a
			// CT log key only matters for certificates, and --key has none.
			verifyEnv := []string{"SIGSTORE_CT_LOG_PUBLIC_KEY_FILE=" + name + ".pub"}
			if out, err := c.run(t, verifyEnv, "verify-blob", "--key", name+".pub", "--signature", sigPath,
				"--insecure-ignore-tlog=true", blob); err != nil {
				t.Fatalf("cosign verify-blob with our public key: %v\n%s", err, out)
			}
			if out, err := c.run(t, verifyEnv, "verify-blob", "--key", name+".pub", "--signature", sigPath,
				"--insecure-ignore-tlog=true", tampered); err == nil {
				t.Fatalf("cosign verify-blob accepted a tampered blob:\n%s", out)
			}

			if typ == ECDSAP256 {
				// And our public key file verifies cosign's signature in Go.
				pub, err := LoadPublic(name + ".pub")
				if err != nil {
					t.Fatal(err)
				}
				sigB64, err := os.ReadFile(sigPath)
				if err != nil {
					t.Fatal(err)
				}
				sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(sigB64)))
				if err != nil {
					t.Fatal(err)
				}
				data, err := os.ReadFile(blob)
				if err != nil {
					t.Fatal(err)
				}
				digest := sha256.Sum256(data)
				if !ecdsa.VerifyASN1(pub.(*ecdsa.PublicKey), digest[:], sig) {
					t.Fatal("cosign's signature with our key does not verify with our public key")
				}
			}
		})
	}
}
