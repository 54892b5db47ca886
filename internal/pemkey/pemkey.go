// Package pemkey writes and reads a public key as one PEM "PUBLIC KEY"
// block (PKIX, RFC 5280), the form a public key takes wherever mtuf carries
// one as text: the layout owners in a layout target's custom metadata,
// in-toto key records, and an agent's attestation key on the wire.
//
// It makes no choice of key types: each caller applies its own policy
// (TUF's, in-toto's, a TPM's) to the key it gets.
package pemkey

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// blockType is the PEM type of a PKIX public key.
const blockType = string(cryptoutils.PublicKeyPEMType)

// Encode returns pub as a PEM "PUBLIC KEY" block.
func Encode(pub crypto.PublicKey) ([]byte, error) {
	return cryptoutils.MarshalPublicKeyToPEM(pub)
}

// Decode reads exactly one PEM "PUBLIC KEY" block: nothing but white space
// may follow it, so that a second key or a certificate chain is never
// silently left unread.
func Decode(data []byte) (crypto.PublicKey, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block")
	}
	if block.Type != blockType {
		return nil, fmt.Errorf("PEM block %q, want %s", block.Type, blockType)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the PEM block")
	}
	return x509.ParsePKIXPublicKey(block.Bytes)
}
