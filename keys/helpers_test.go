package keys

import (
	"crypto"
	"encoding/json"
	"encoding/pem"
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
