package keys

import (
	"bytes"
	"crypto"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
)

// cosignTestPassword is the password of testdata/cosign-test.key.
const cosignTestPassword = "test-password"

// maxFuzzKeyFile bounds the inputs the key fuzzers decrypt: a real key
// file is a few hundred bytes, and every input whose envelope passes
// checkEnvelope costs an scrypt derivation.
const maxFuzzKeyFile = 8 << 10

func readTestdata(f *testing.F, name string) []byte {
	f.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		f.Fatal(err)
	}
	return data
}

// envelopeWith re-encodes the envelope of an encrypted key file with edit
// applied to its JSON.
func envelopeWith(f *testing.F, pemData []byte, edit func(map[string]any)) []byte {
	f.Helper()
	block, _ := pem.Decode(pemData)
	if block == nil {
		f.Fatal("test key is not PEM")
	}
	var env map[string]any
	if err := json.Unmarshal(block.Bytes, &env); err != nil {
		f.Fatal(err)
	}
	edit(env)
	b, err := json.Marshal(env)
	if err != nil {
		f.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: b})
}

// FuzzParsePrivate checks that no key file makes ParsePrivate panic, that
// a refused file gives an error and no key, and that an accepted one gives
// a signer whose public key survives MarshalPublic and ParsePublic.
//
// Most seeds carry scrypt parameters that checkEnvelope refuses, so that
// the fuzzer explores the envelope and PEM handling without paying for a
// key derivation on every input; the real cosign key still reaches the
// decryption and the PKCS#8 parser.
func FuzzParsePrivate(f *testing.F) {
	cosignKey := readTestdata(f, "cosign-test.key")
	f.Add(cosignKey)
	f.Add(readTestdata(f, "cosign-test.pub"))
	for _, edit := range []func(map[string]any){
		func(e map[string]any) { e["kdf"].(map[string]any)["params"].(map[string]any)["N"] = 1 << 20 },
		func(e map[string]any) { e["kdf"].(map[string]any)["params"].(map[string]any)["r"] = 1 << 30 },
		func(e map[string]any) { e["kdf"].(map[string]any)["name"] = "argon2" },
		func(e map[string]any) { e["cipher"].(map[string]any)["nonce"] = "AAAA" },
		func(e map[string]any) { e["ciphertext"] = "AAAA" },
		func(e map[string]any) { delete(e, "kdf") },
	} {
		f.Add(envelopeWith(f, cosignKey, edit))
	}
	for _, s := range []string{
		"",
		"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
		"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\nbnVsbA==\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n",
		"-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > maxFuzzKeyFile {
			return // larger than any key file; not worth a derivation
		}
		signer, err := ParsePrivate(data, []byte(cosignTestPassword))
		if err != nil {
			if signer != nil {
				t.Fatalf("key returned with an error: %v", err)
			}
			return
		}
		if signer == nil {
			t.Fatal("no key and no error")
		}
		pubPEM, err := MarshalPublic(signer.Public())
		if err != nil {
			t.Fatalf("accepted key's public half does not encode: %v", err)
		}
		pub, err := ParsePublic(pubPEM)
		if err != nil || !Equal(pub, signer.Public()) {
			t.Fatalf("accepted key's public half does not round-trip: %v", err)
		}
	})
}

// FuzzParsePublic checks that ParsePublic never panics, returns an error
// and no key for what it refuses, and that an accepted key survives
// MarshalPublic and ParsePublic.
func FuzzParsePublic(f *testing.F) {
	for _, seed := range publicSeeds(f) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParsePublic(data)
		if err != nil {
			if pub != nil {
				t.Fatalf("key returned with an error: %v", err)
			}
			return
		}
		checkPublicRoundTrip(t, pub)
	})
}

// FuzzParsePublicKeys checks that ParsePublicKeys never panics, that a
// refused file gives an error and no keys, that every key of an accepted
// file round-trips, that the first is the one ParsePublic reads, and that
// the re-encoded file parses to the same keys.
func FuzzParsePublicKeys(f *testing.F) {
	seeds := publicSeeds(f)
	for _, seed := range seeds {
		f.Add(seed)
	}
	f.Add(bytes.Join(seeds[:2], nil))
	f.Add(append(append([]byte("comment before the block\n"), seeds[0]...), "trailing"...))
	f.Fuzz(func(t *testing.T, data []byte) {
		pubs, err := ParsePublicKeys(data)
		if err != nil {
			if pubs != nil {
				t.Fatalf("keys returned with an error: %v", err)
			}
			return
		}
		if len(pubs) == 0 {
			t.Fatal("no keys and no error")
		}
		first, err := ParsePublic(data)
		if err != nil || !Equal(first, pubs[0]) {
			t.Fatalf("ParsePublic reads another first key than ParsePublicKeys: %v", err)
		}
		var again []byte
		for _, pub := range pubs {
			again = append(again, checkPublicRoundTrip(t, pub)...)
		}
		back, err := ParsePublicKeys(again)
		if err != nil || len(back) != len(pubs) {
			t.Fatalf("re-encoded file gives %d keys (%v), want %d", len(back), err, len(pubs))
		}
		for i := range pubs {
			if !Equal(back[i], pubs[i]) {
				t.Fatalf("key %d changed in the round trip", i+1)
			}
		}
	})
}

// publicSeeds are public key files in every form mtuf reads: cosign's, one
// of each key type, a certificate, and inputs that are refused.
func publicSeeds(f *testing.F) [][]byte {
	f.Helper()
	seeds := [][]byte{readTestdata(f, "cosign-test.pub")}
	for _, typ := range []Type{ED25519, ECDSAP256} {
		k, err := testKeys[typ]()
		if err != nil {
			f.Fatal(err)
		}
		data, err := MarshalPublic(k.Public())
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	if cert, err := os.ReadFile(filepath.Join("..", "testdata", "ak-ca", "test-ak-ca.pem")); err == nil {
		seeds = append(seeds, cert)
	}
	for _, s := range []string{
		"",
		"not PEM",
		"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
		"-----BEGIN PUBLIC KEY-----\n",
		"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// checkPublicRoundTrip returns pub encoded, failing if it does not parse
// back to the same key.
func checkPublicRoundTrip(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	if pub == nil {
		t.Fatal("no key and no error")
	}
	data, err := MarshalPublic(pub)
	if err != nil {
		t.Fatalf("accepted key does not encode: %v", err)
	}
	back, err := ParsePublic(data)
	if err != nil || !Equal(back, pub) {
		t.Fatalf("accepted key does not round-trip: %v", err)
	}
	return data
}
