package keys

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestRoundTrip is the round trip that matters: a key encrypted, read back,
// signs root metadata that go-tuf then verifies.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, typ := range types {
		orig := testKey(t, typ)
		parsed, err := ParsePrivate(testKeyFile(t, typ), []byte(testPassword))
		if err != nil {
			t.Fatal(err)
		}
		if !parsed.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(orig.Public()) {
			t.Fatalf("%s: parsed key differs from the original", typ)
		}
		for _, opaque := range []bool{false, true} {
			name := string(typ)
			if opaque {
				name += "/opaque"
			}
			t.Run(name, func(t *testing.T) {
				priv := parsed
				if opaque {
					priv = opaqueSigner{parsed}
				}
				s, err := Signer(priv)
				if err != nil {
					t.Fatal(err)
				}
				key, err := TUFKey(priv.Public())
				if err != nil {
					t.Fatal(err)
				}
				root := tufmeta.Root(time.Now().Add(time.Hour))
				if err := root.Signed.AddKey(key, tufmeta.ROOT); err != nil {
					t.Fatal(err)
				}
				sig, err := root.Sign(s)
				if err != nil {
					t.Fatal(err)
				}
				id, err := KeyID(priv.Public())
				if err != nil {
					t.Fatal(err)
				}
				if sig.KeyID != id {
					t.Fatalf("signature key ID %s, KeyID %s: they must agree", sig.KeyID, id)
				}
				if err := root.VerifyDelegate(tufmeta.ROOT, root); err != nil {
					t.Fatalf("go-tuf rejects the signature: %v", err)
				}

				// The signature must survive serialisation, as it does on disk.
				raw, err := root.ToBytes(false)
				if err != nil {
					t.Fatal(err)
				}
				reread, err := tufmeta.Root().FromBytes(raw)
				if err != nil {
					t.Fatal(err)
				}
				if err := reread.VerifyDelegate(tufmeta.ROOT, reread); err != nil {
					t.Fatalf("go-tuf rejects the signature after a round trip through JSON: %v", err)
				}

				reread.Signed.Version++
				if err := reread.VerifyDelegate(tufmeta.ROOT, reread); err == nil {
					t.Fatal("go-tuf accepts a signature over altered metadata")
				}
			})
		}
	}
}

func TestTUFKeySchemes(t *testing.T) {
	tests := []struct {
		typ                   Type
		keyType, scheme, want string
	}{
		{ED25519, "ed25519", "ed25519", ""},
		{ECDSAP256, "ecdsa", "ecdsa-sha2-nistp256", "-----BEGIN PUBLIC KEY-----"},
		{RSA3072, "rsa", "rsassa-pss-sha256", "-----BEGIN PUBLIC KEY-----"},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			k, err := TUFKey(testKey(t, tt.typ).Public())
			if err != nil {
				t.Fatal(err)
			}
			if k.Type != tt.keyType || k.Scheme != tt.scheme {
				t.Fatalf("TUF key %s/%s, want %s/%s", k.Type, k.Scheme, tt.keyType, tt.scheme)
			}
			if !bytes.HasPrefix([]byte(k.Value.PublicKey), []byte(tt.want)) {
				t.Fatalf("TUF key value %q, want prefix %q", k.Value.PublicKey, tt.want)
			}
		})
	}
}

// TestRSASaltLength pins the PSS salt to the digest length, which is what
// securesystemslib (python-tuf) produces and what strict verifiers accept.
func TestRSASaltLength(t *testing.T) {
	priv := testKey(t, RSA3072)
	for _, p := range []crypto.Signer{priv, opaqueSigner{priv}} {
		s, err := Signer(p)
		if err != nil {
			t.Fatal(err)
		}
		msg := []byte("payload")
		sig, err := s.SignMessage(bytes.NewReader(msg))
		if err != nil {
			t.Fatal(err)
		}
		digest := sha256.Sum256(msg)
		pub := priv.Public().(*rsa.PublicKey)
		if err := rsa.VerifyPSS(pub, crypto.SHA256, digest[:], sig, &rsa.PSSOptions{SaltLength: 32}); err != nil {
			t.Fatalf("signature does not verify with a 32-byte salt: %v", err)
		}
		if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err == nil {
			t.Fatal("signature verifies as PKCS#1 v1.5; want PSS")
		}
	}
}

// TestSignerConcurrent signs from several goroutines with one signer, as a
// repository does when it signs many roles; run with -race.
func TestSignerConcurrent(t *testing.T) {
	for _, typ := range types {
		t.Run(string(typ), func(t *testing.T) {
			priv := testKey(t, typ)
			s, err := Signer(priv)
			if err != nil {
				t.Fatal(err)
			}
			v, err := verifierFor(priv.Public())
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make(chan error, 4)
			for i := range 4 {
				wg.Go(func() {
					msg := []byte{byte(i)}
					sig, err := s.SignMessage(bytes.NewReader(msg))
					if err == nil {
						err = v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg))
					}
					errs <- err
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// verifierFor builds the verifier go-tuf builds for a TUF key.
func verifierFor(pub crypto.PublicKey) (signature.Verifier, error) {
	if k, ok := pub.(*rsa.PublicKey); ok {
		return signature.LoadRSAPSSVerifier(k, crypto.SHA256, &rsa.PSSOptions{Hash: crypto.SHA256})
	}
	return signature.LoadVerifier(pub, crypto.SHA256)
}

func TestSignerRefusesNil(t *testing.T) {
	if _, err := Signer(nil); err == nil {
		t.Fatal("Signer(nil) succeeded")
	}
}
