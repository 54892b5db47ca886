package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// Type names a kind of key that mtuf generates.
type Type string

// The key types, as given to `mtuf keys generate --type`.
const (
	ED25519   Type = "ed25519"
	ECDSAP256 Type = "ecdsa-p256"
	RSA3072   Type = "rsa-3072"
)

// types lists the valid types in the order shown to users.
var types = []Type{ED25519, ECDSAP256, RSA3072}

// minRSABits is the smallest RSA modulus accepted from a key file. Keys that
// mtuf generates are 3072 bits; 2048 is still accepted because cosign and
// other tools produce such keys and they remain within NIST's allowance.
const minRSABits = 2048

// ParseType returns the Type named by s (case-insensitive).
func ParseType(s string) (Type, error) {
	t := Type(strings.ToLower(strings.TrimSpace(s)))
	for _, v := range types {
		if t == v {
			return v, nil
		}
	}
	return "", fmt.Errorf("unknown key type %q: valid types are %s", s, typeList())
}

func typeList() string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// Generate creates a new private key of type t from crypto/rand.
func Generate(t Type) (crypto.Signer, error) {
	switch t {
	case ED25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating ed25519 key: %w", err)
		}
		return priv, nil
	case ECDSAP256:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generating ecdsa-p256 key: %w", err)
		}
		return priv, nil
	case RSA3072:
		priv, err := rsa.GenerateKey(rand.Reader, 3072)
		if err != nil {
			return nil, fmt.Errorf("generating rsa-3072 key: %w", err)
		}
		return priv, nil
	default:
		return nil, fmt.Errorf("unknown key type %q: valid types are %s", string(t), typeList())
	}
}

// checkPublic refuses keys that cannot serve as TUF keys, so that an unusable
// key is reported when it is read, not when a signature later fails to verify.
func checkPublic(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("ed25519 public key has %d bytes, want %d", len(k), ed25519.PublicKeySize)
		}
		return nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA key on curve %s is not supported: use ed25519, ecdsa-p256 or rsa-3072", k.Curve.Params().Name)
		}
		return nil
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("RSA key of %d bits is too small: at least %d bits are required", bits, minRSABits)
		}
		return nil
	default:
		return fmt.Errorf("unsupported key type %T: use ed25519, ecdsa-p256 or rsa-3072", pub)
	}
}

// Equal tells whether two public keys are the same key. It is sigstore's
// comparison (cryptoutils.EqualKeys), so a key matches here exactly when
// cosign would take it as the same; a key type neither supports is equal to
// nothing.
func Equal(a, b crypto.PublicKey) bool {
	return cryptoutils.EqualKeys(a, b) == nil
}
