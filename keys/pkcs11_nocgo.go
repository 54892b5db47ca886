//go:build !cgo

package keys

import (
	"crypto"
	"errors"
	"fmt"
)

// PKCS#11 modules are C libraries: a build without cgo cannot load them,
// but still parses references so that a bad one is reported as such.

var errNoCgo = errors.New("this mtuf was built without cgo, which PKCS#11 keys need: use a build made with CGO_ENABLED=1")

// ClosePKCS11 does nothing in a build without PKCS#11 support.
func ClosePKCS11() error { return nil }

func loadPrivatePKCS11(ref string, _ PasswordSource) (crypto.Signer, error) {
	if _, err := parsePKCS11URI(ref); err != nil {
		return nil, fmt.Errorf("private key %s: %w", redactPIN(ref), err)
	}
	return nil, fmt.Errorf("private key %s: %w", redactPIN(ref), errNoCgo)
}

func loadPublicPKCS11(ref string) (crypto.PublicKey, error) {
	if _, err := parsePKCS11URI(ref); err != nil {
		return nil, fmt.Errorf("public key %s: %w", redactPIN(ref), err)
	}
	return nil, fmt.Errorf("public key %s: %w", redactPIN(ref), errNoCgo)
}
