package keys

import (
	"crypto"
	"encoding/json"
	"encoding/pem"
	"os"
	"sync"
	"testing"
)

const testPassword = "correct horse battery staple"

// testKeys caches one generated key per type: RSA-3072 generation takes
// seconds under the race detector.
var testKeys = map[Type]func() (crypto.Signer, error){
	ED25519:   sync.OnceValues(func() (crypto.Signer, error) { return Generate(ED25519) }),
	ECDSAP256: sync.OnceValues(func() (crypto.Signer, error) { return Generate(ECDSAP256) }),
	RSA3072:   sync.OnceValues(func() (crypto.Signer, error) { return Generate(RSA3072) }),
}

func testKey(t *testing.T, typ Type) crypto.Signer {
	t.Helper()
	k, err := testKeys[typ]()
	if err != nil {
		t.Fatalf("generating %s key: %v", typ, err)
	}
	return k
}

// testKeyFiles caches testKey(typ) encrypted with testPassword, for the
// tests that need an encrypted key but are not about writing one: each
// encryption costs an scrypt derivation, seconds under the race detector.
var testKeyFiles = map[Type]func() ([]byte, error){
	ED25519:   sync.OnceValues(func() ([]byte, error) { return marshalTestKey(ED25519) }),
	ECDSAP256: sync.OnceValues(func() ([]byte, error) { return marshalTestKey(ECDSAP256) }),
	RSA3072:   sync.OnceValues(func() ([]byte, error) { return marshalTestKey(RSA3072) }),
}

func marshalTestKey(typ Type) ([]byte, error) {
	k, err := testKeys[typ]()
	if err != nil {
		return nil, err
	}
	return MarshalPrivate(k, []byte(testPassword))
}

// testKeyFile is the contents of an encrypted key file (NAME.key) of
// testKey(typ), made once per test binary.
func testKeyFile(t *testing.T, typ Type) []byte {
	t.Helper()
	data, err := testKeyFiles[typ]()
	if err != nil {
		t.Fatalf("encrypting %s key: %v", typ, err)
	}
	return data
}

// writeTestKeyPair writes testKey(typ) as NAME.key and NAME.pub, as
// WriteKeyPair would, but from testKeyFile.
func writeTestKeyPair(t *testing.T, name string, typ Type) {
	t.Helper()
	pub, err := MarshalPublic(testKey(t, typ).Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name+".key", testKeyFile(t, typ), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name+".pub", pub, 0o644); err != nil {
		t.Fatal(err)
	}
}

// editEnvelope decodes the encrypted JSON inside a private key PEM, lets edit
// change it, and encodes it again.
func editEnvelope(t *testing.T, pemData []byte, edit func(map[string]any)) []byte {
	t.Helper()
	block, _ := pem.Decode(pemData)
	if block == nil {
		t.Fatal("test key is not PEM")
	}
	var env map[string]any
	if err := json.Unmarshal(block.Bytes, &env); err != nil {
		t.Fatal(err)
	}
	edit(env)
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: b})
}

// opaqueSigner hides the concrete type of a key, as a key held in hardware
// does, so that Signer must sign through crypto.Signer alone.
type opaqueSigner struct{ crypto.Signer }
