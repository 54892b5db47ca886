package keys

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/sigstore/sigstore/pkg/signature"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// pssOptions fixes the RSASSA-PSS parameters of TUF's rsassa-pss-sha256
// scheme. The salt is as long as the digest, as securesystemslib signs it;
// go-tuf verifies with an automatic salt length, so it accepts this, and so
// do stricter verifiers that expect the digest length.
var pssOptions = rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash, Hash: crypto.SHA256}

// Signer returns a signer for go-tuf's Metadata.Sign that produces the
// signature scheme TUFKey declares for the key: ed25519, ecdsa-sha2-nistp256
// (ASN.1 DER signatures over SHA-256) or rsassa-pss-sha256.
//
// priv may be any crypto.Signer whose public key is of a supported type, such
// as a key held in hardware; keys in memory of the standard library's types
// use sigstore's signers.
func Signer(priv crypto.Signer) (signature.Signer, error) {
	if priv == nil {
		return nil, errors.New("no private key to sign with")
	}
	pub := priv.Public()
	if err := checkPublic(pub); err != nil {
		return nil, err
	}
	switch k := priv.(type) {
	case ed25519.PrivateKey:
		return signature.LoadED25519Signer(k)
	case *ecdsa.PrivateKey:
		return signature.LoadECDSASigner(k, crypto.SHA256)
	}
	// sigstore's RSA-PSS signer writes to its shared options on every
	// signature, which races when one signer signs several roles at once, so
	// RSA goes through the generic signer too.
	switch pub.(type) {
	case ed25519.PublicKey:
		return &cryptoSigner{priv: priv, opts: crypto.Hash(0)}, nil
	case *ecdsa.PublicKey:
		return &cryptoSigner{priv: priv, opts: crypto.SHA256, prehash: true}, nil
	case *rsa.PublicKey:
		opts := pssOptions
		return &cryptoSigner{priv: priv, opts: &opts, prehash: true}, nil
	}
	return nil, fmt.Errorf("unsupported key type %T", pub)
}

// cryptoSigner adapts a crypto.Signer to signature.Signer. It keeps no state
// that changes while signing, so it is safe for concurrent use.
type cryptoSigner struct {
	priv    crypto.Signer
	opts    crypto.SignerOpts
	prehash bool // the scheme signs a SHA-256 digest, not the message
}

func (s *cryptoSigner) PublicKey(...signature.PublicKeyOption) (crypto.PublicKey, error) {
	return s.priv.Public(), nil
}

func (s *cryptoSigner) SignMessage(message io.Reader, _ ...signature.SignOption) ([]byte, error) {
	if message == nil {
		return nil, errors.New("no message to sign")
	}
	msg, err := io.ReadAll(message)
	if err != nil {
		return nil, fmt.Errorf("reading message to sign: %w", err)
	}
	if s.prehash {
		d := sha256.Sum256(msg)
		msg = d[:]
	}
	sig, err := s.priv.Sign(rand.Reader, msg, s.opts)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	return sig, nil
}

// TUFKey returns the TUF key record for pub, with the key type and scheme
// that go-tuf uses when it signs and verifies.
func TUFKey(pub crypto.PublicKey) (*tufmeta.Key, error) {
	if err := checkPublic(pub); err != nil {
		return nil, err
	}
	k, err := tufmeta.KeyFromPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("making TUF key: %w", err)
	}
	return k, nil
}

// KeyID returns the TUF key ID of pub: the SHA-256 of the canonical JSON of
// its TUF key record, the ID under which go-tuf records its signatures.
func KeyID(pub crypto.PublicKey) (string, error) {
	k, err := TUFKey(pub)
	if err != nil {
		return "", err
	}
	id, err := k.ID()
	if err != nil {
		return "", fmt.Errorf("computing TUF key ID: %w", err)
	}
	return id, nil
}
