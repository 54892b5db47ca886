package keys

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"golang.org/x/crypto/nacl/secretbox"
)

// PEM block types. cosign writes pemSigstorePrivate since v1.x and still
// reads pemCosignPrivate, which older cosign releases wrote; cryptoutils
// does not export the legacy name, so both are spelled out here.
const (
	pemSigstorePrivate = string(cryptoutils.EncryptedSigstorePrivateKeyPEMType)
	pemCosignPrivate   = "ENCRYPTED COSIGN PRIVATE KEY"
	pemPublic          = string(cryptoutils.PublicKeyPEMType)
	pemCertificate     = string(cryptoutils.CertificatePEMType)
)

// ErrWrongPassword reports that a private key file did not decrypt with the
// password given. The cipher is authenticated, so a file whose ciphertext was
// altered gives the same error: the two cannot be told apart.
var ErrWrongPassword = errors.New("wrong password")

// MarshalPrivate encrypts priv with password into a cosign-compatible
// "ENCRYPTED SIGSTORE PRIVATE KEY" PEM block. The encoding is cosign's own
// (sigstore's cryptoutils): PKCS#8 sealed by encrypted.Encrypt, whose scrypt
// work factor is encrypted.Standard (N=2^16, r=8, p=1, about 100 ms and
// 64 MiB per attempt), so our files and cosign's cost an attacker the same.
func MarshalPrivate(priv crypto.Signer, password []byte) ([]byte, error) {
	if priv == nil {
		return nil, errors.New("no private key to encode")
	}
	if err := checkPublic(priv.Public()); err != nil {
		return nil, err
	}
	if password == nil {
		// cryptoutils takes a nil password for "do not encrypt"; an empty
		// one still encrypts, as encrypted.Encrypt does with nil.
		password = []byte{}
	}
	enc, err := cryptoutils.MarshalPrivateKeyToEncryptedDER(priv, cryptoutils.StaticPasswordFunc(password))
	if err != nil {
		return nil, fmt.Errorf("encoding private key as encrypted PKCS#8 (keys held in hardware cannot be exported): %w", err)
	}
	return cryptoutils.PEMEncode(cryptoutils.EncryptedSigstorePrivateKeyPEMType, enc), nil
}

// MarshalPublic encodes pub as a PEM "PUBLIC KEY" block (PKIX).
func MarshalPublic(pub crypto.PublicKey) ([]byte, error) {
	if err := checkPublic(pub); err != nil {
		return nil, err
	}
	data, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("encoding public key: %w", err)
	}
	return data, nil
}

// ParsePrivate decrypts a private key file written by MarshalPrivate or by
// cosign. A wrong password gives an error that matches ErrWrongPassword.
//
// This stays our own rather than cryptoutils.UnmarshalPEMToPrivateKey, which
// reads unencrypted keys too, knows no bound on the scrypt parameters of the
// file before it derives a key, returns the decryption and the PKCS#8 errors
// unwrapped so that a wrong password cannot be told from a corrupt file, and
// leaves the decrypted key material in memory.
func ParsePrivate(pemData, password []byte) (crypto.Signer, error) {
	block, err := decodePEM(pemData)
	if err != nil {
		return nil, err
	}
	switch block.Type {
	case pemSigstorePrivate, pemCosignPrivate:
	case pemPublic, pemCertificate:
		return nil, fmt.Errorf("this is a public key (PEM %q), not a private key: pass the encrypted private key file (NAME.key)", block.Type)
	case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
		return nil, fmt.Errorf("unencrypted private key (PEM %q): keys must be stored encrypted; convert it with `cosign import-key-pair --key FILE`", block.Type)
	default:
		return nil, fmt.Errorf("PEM block %q is not an encrypted private key: want %q", block.Type, pemSigstorePrivate)
	}
	if err := checkEnvelope(block.Bytes); err != nil {
		return nil, fmt.Errorf("private key is corrupt: %w", err)
	}
	der, err := encrypted.Decrypt(block.Bytes, password)
	if err != nil {
		// checkEnvelope accepted everything that Decrypt validates, so the
		// only failure left is the authenticator: wrong password or a
		// ciphertext that was altered.
		return nil, ErrWrongPassword
	}
	defer clear(der)
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("private key is corrupt: decrypted data is not a PKCS#8 key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported private key type %T", key)
	}
	if err := checkPublic(signer.Public()); err != nil {
		return nil, err
	}
	return signer, nil
}

// ParsePublic reads a PEM "PUBLIC KEY" block, or an X.509 certificate whose
// key is then used.
func ParsePublic(data []byte) (crypto.PublicKey, error) {
	block, err := decodePEM(data)
	if err != nil {
		return nil, err
	}
	var pub crypto.PublicKey
	switch block.Type {
	case pemPublic:
		// The same first block that decodePEM found.
		pub, err = cryptoutils.UnmarshalPEMToPublicKey(data)
		if err != nil {
			return nil, fmt.Errorf("public key is corrupt: %w", err)
		}
	case pemCertificate:
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate is corrupt: %w", err)
		}
		pub = cert.PublicKey
	case pemSigstorePrivate, pemCosignPrivate, "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
		return nil, fmt.Errorf("this is a private key (PEM %q), not a public key: pass the public key file (NAME.pub)", block.Type)
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key: want %q or %q", block.Type, pemPublic, pemCertificate)
	}
	if err := checkPublic(pub); err != nil {
		return nil, err
	}
	return pub, nil
}

// decodePEM returns the first PEM block of data, telling an empty input, a
// file that is not PEM at all and a cut-off PEM block apart.
func decodePEM(data []byte) (*pem.Block, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty key file")
	}
	block, _ := pem.Decode(data)
	if block == nil {
		if bytes.Contains(data, []byte("-----BEGIN ")) {
			return nil, errors.New("malformed or truncated PEM block")
		}
		return nil, errors.New("not a PEM-encoded key (no -----BEGIN line)")
	}
	return block, nil
}

// envelope mirrors the JSON that go-securesystemslib's encrypted package
// writes. Checking it before decryption lets a damaged file be reported as
// such instead of as a wrong password.
type envelope struct {
	KDF struct {
		Name   string `json:"name"`
		Params struct {
			N int `json:"N"`
			R int `json:"r"`
			P int `json:"p"`
		} `json:"params"`
		Salt []byte `json:"salt"`
	} `json:"kdf"`
	Cipher struct {
		Name  string `json:"name"`
		Nonce []byte `json:"nonce"`
	} `json:"cipher"`
	Ciphertext []byte `json:"ciphertext"`
}

func checkEnvelope(data []byte) error {
	var e envelope
	if err := json.Unmarshal(data, &e); err != nil {
		return fmt.Errorf("encrypted envelope is not valid JSON: %w", err)
	}
	if e.KDF.Name != "scrypt" {
		return fmt.Errorf("unknown key derivation %q, want scrypt", e.KDF.Name)
	}
	// The parameters the encrypted package accepts; anything else would be
	// refused by it, and unbounded ones would let a crafted file exhaust memory.
	switch p := e.KDF.Params; {
	case p.R == 8 && p.P == 1 && (p.N == 1<<15 || p.N == 1<<16 || p.N == 1<<17):
	default:
		return fmt.Errorf("unsupported scrypt parameters N=%d r=%d p=%d", p.N, p.R, p.P)
	}
	if len(e.KDF.Salt) == 0 {
		return errors.New("scrypt salt is missing")
	}
	if e.Cipher.Name != "nacl/secretbox" {
		return fmt.Errorf("unknown cipher %q, want nacl/secretbox", e.Cipher.Name)
	}
	if len(e.Cipher.Nonce) != 24 {
		return fmt.Errorf("secretbox nonce has %d bytes, want 24", len(e.Cipher.Nonce))
	}
	if len(e.Ciphertext) <= secretbox.Overhead {
		return fmt.Errorf("ciphertext of %d bytes is too short", len(e.Ciphertext))
	}
	return nil
}

// ParsePublicKeys parses every PEM block of data, each a public key or a
// certificate as ParsePublic takes them, for files that pin several keys
// (one per node). A block that is not one refuses the whole file, naming
// the block by its number and line: a file trusted in part would leave the
// operator believing a key pinned that is not.
func ParsePublicKeys(data []byte) ([]crypto.PublicKey, error) {
	if _, err := decodePEM(data); err != nil {
		return nil, err
	}
	begin := []byte("-----BEGIN ")
	var out []crypto.PublicKey
	rest := data
	for len(bytes.TrimSpace(rest)) > 0 {
		n := len(out) + 1
		line := 1 + bytes.Count(data[:len(data)-len(rest)], []byte("\n"))
		start := bytes.Index(rest, begin)
		if start < 0 {
			return nil, fmt.Errorf("line %d: data after PEM block %d that is not a PEM block: remove it", line, n-1)
		}
		line += bytes.Count(rest[:start], []byte("\n"))
		// Decode the block alone: pem.Decode skips a malformed block to
		// the next one, which would drop it silently.
		end := len(rest)
		if next := bytes.Index(rest[start+1:], begin); next >= 0 {
			end = start + 1 + next
		}
		block, after := pem.Decode(rest[start:end])
		if block == nil {
			return nil, fmt.Errorf("PEM block %d (line %d) is malformed or truncated", n, line)
		}
		if end == len(rest) && len(bytes.TrimSpace(after)) > 0 {
			// Text before a block is commentary, as RFC 7468 allows;
			// text after the last one is a block cut short or pasted
			// wrong.
			return nil, fmt.Errorf("data after PEM block %d (line %d) that is not a PEM block: remove it", n, line)
		}
		pub, err := ParsePublic(pem.EncodeToMemory(block))
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (line %d): %w", n, line, err)
		}
		out = append(out, pub)
		rest = rest[end:]
	}
	return out, nil
}
