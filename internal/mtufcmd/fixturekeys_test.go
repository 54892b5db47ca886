package mtufcmd

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"

	"github.com/mtuf/mtuf/keys"
)

var updateKeys = flag.Bool("update-keys", false, "re-encrypt the fixture keys of testdata/keys and ../../testdata/ak-ca at fixture strength, generating the missing ones")

// fixturePassword is the password of every fixture key, the MTUF_PASSWORD
// of the scripts.
const fixturePassword = "test-password"

// fixtureKDF is the scrypt strength of fixture key files: go-securesystemslib's
// Legacy level (N=2^15), which mtuf, cosign and go-securesystemslib all read.
// It halves the cost of each load against the Standard level that `mtuf keys
// generate` writes; fixture keys are public test material, so their
// encryption protects nothing.
const fixtureKDF = encrypted.Legacy

// fixtureKeys are the key pairs of testdata/keys that the scripts copy with
// cpkeys. ci-test and other-test have key ids that scripts name (49264d4b...,
// 60f822df...): -update-keys keeps the key of an existing file and only
// re-encrypts it.
var fixtureKeys = []struct {
	name string
	typ  keys.Type
}{
	{"root-test", keys.ED25519},
	{"targets-test", keys.ED25519},
	{"online-test", keys.ED25519},
	{"ci-test", keys.ED25519},
	{"other-test", keys.ED25519},
	{"owner-test", keys.ED25519},
	{"releases-test", keys.ECDSAP256},
	// Spares for the documents that TestDocs runs, whose ceremonies make
	// more keys than the scripts.
	{"spare-1-test", keys.ED25519},
	{"spare-2-test", keys.ED25519},
	{"spare-3-test", keys.ED25519},
	{"spare-4-test", keys.ED25519},
}

// akCAKeys are the development AK CA keys of the repository's testdata,
// fixture keys too, whose certificates must keep matching them.
var akCAKeys = []string{"test-ak-ca", "other-test-ak-ca"}

// TestFixtureKeys checks that every fixture key file is encrypted at fixture
// strength and has its public key beside it. With -update-keys it rewrites
// them first: go test ./internal/mtufcmd -run TestFixtureKeys -update-keys
// (delete a pair to have it generated anew).
func TestFixtureKeys(t *testing.T) {
	if !*updateKeys {
		// Rewriting the files must not race with the scripts copying them.
		t.Parallel()
	}
	var paths []string
	for _, k := range fixtureKeys {
		name := filepath.Join("testdata", "keys", k.name)
		if *updateKeys {
			writeFixtureKey(t, name, k.typ, true)
		}
		paths = append(paths, name)
	}
	for _, k := range akCAKeys {
		name := filepath.Join("..", "..", "testdata", "ak-ca", k)
		if *updateKeys {
			writeFixtureKey(t, name, "", false)
		}
		paths = append(paths, name)
	}
	for _, name := range paths {
		checkFixtureKey(t, name)
	}
}

// writeFixtureKey re-encrypts NAME.key at fixture strength, or generates a
// key of type typ when there is none, and writes NAME.pub when withPub.
func writeFixtureKey(t *testing.T, name string, typ keys.Type, withPub bool) {
	t.Helper()
	data, err := os.ReadFile(name + ".key")
	var priv crypto.Signer
	switch {
	case err == nil:
		p, err := keys.ParsePrivate(data, []byte(fixturePassword))
		if err != nil {
			t.Fatalf("%s.key: %v", name, err)
		}
		priv = p
		data, err = marshalFixtureKey(p)
		if err != nil {
			t.Fatalf("%s.key: %v", name, err)
		}
	case errors.Is(err, fs.ErrNotExist) && typ != "":
		p, err := keys.Generate(typ)
		if err != nil {
			t.Fatal(err)
		}
		priv = p
		if data, err = marshalFixtureKey(p); err != nil {
			t.Fatalf("%s.key: %v", name, err)
		}
	default:
		t.Fatal(err)
	}
	if err := os.WriteFile(name+".key", data, 0o600); err != nil {
		t.Fatal(err)
	}
	if withPub {
		pub, err := keys.MarshalPublic(priv.Public())
		if err != nil {
			t.Fatalf("%s.pub: %v", name, err)
		}
		if err := os.WriteFile(name+".pub", pub, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// marshalFixtureKey is keys.MarshalPrivate at fixture strength: the same
// PEM block and envelope, with a cheaper key derivation.
func marshalFixtureKey(priv crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	enc, err := encrypted.EncryptWithCustomKDFParameters(der, []byte(fixturePassword), fixtureKDF)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED SIGSTORE PRIVATE KEY", Bytes: enc}), nil
}

// checkFixtureKey reads the scrypt parameters of NAME.key without
// decrypting it (the scripts do that), and NAME.pub if there is one.
func checkFixtureKey(t *testing.T, name string) {
	t.Helper()
	data, err := os.ReadFile(name + ".key")
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "ENCRYPTED SIGSTORE PRIVATE KEY" {
		t.Fatalf("%s.key is not an encrypted sigstore private key", name)
	}
	var env struct {
		KDF struct {
			Params struct{ N, R, P int } `json:"params"`
		} `json:"kdf"`
	}
	if err := json.Unmarshal(block.Bytes, &env); err != nil {
		t.Fatalf("%s.key: %v", name, err)
	}
	if p := env.KDF.Params; p.N != 1<<15 || p.R != 8 || p.P != 1 {
		t.Errorf("%s.key: scrypt N=%d r=%d p=%d, want the fixture strength N=32768 r=8 p=1 (run with -update-keys)", name, p.N, p.R, p.P)
	}
	if pub, err := os.ReadFile(name + ".pub"); err == nil {
		if _, err := keys.ParsePublic(pub); err != nil {
			t.Errorf("%s.pub: %v", name, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		t.Error(err)
	}
}

// cmdCpKeys returns the script command cpkeys NAME..., which copies the
// fixture key pair NAME-test.key and NAME-test.pub of dir into the script's
// directory as NAME.key and NAME.pub (a NAME ending in -test keeps its
// name): scripts whose subject is not key generation start from these
// instead of paying for `mtuf keys generate`.
func cmdCpKeys(dir string) func(ts *testscript.TestScript, neg bool, args []string) {
	return func(ts *testscript.TestScript, neg bool, args []string) {
		if neg || len(args) == 0 {
			ts.Fatalf("usage: cpkeys NAME...")
		}
		for _, name := range args {
			src := filepath.Join(dir, strings.TrimSuffix(name, "-test")+"-test")
			for ext, mode := range map[string]fs.FileMode{".key": 0o600, ".pub": 0o644} {
				data, err := os.ReadFile(src + ext)
				ts.Check(err)
				ts.Check(os.WriteFile(ts.MkAbs(name+ext), data, mode))
			}
		}
	}
}
