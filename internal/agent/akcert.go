package agent

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// DefaultAKCertValidity is how long an AK certificate issued at start-up is
// valid. A development CA's certificates should not outlive a test run by
// much; an agent running longer is restarted, or given a longer validity.
const DefaultAKCertValidity = 24 * time.Hour

// clockSkew backdates an issued certificate so that a verifier whose clock
// is slightly behind the node's still accepts it.
const clockSkew = 5 * time.Minute

// oidTCGAKCertificate is tcg-kp-AIKCertificate (2.23.133.8.3), the extended
// key usage the TCG gives attestation key certificates, so that the
// certificate cannot pass for a TLS or code-signing one.
var oidTCGAKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 3}

// CA is a certificate authority that issues the agent's attestation key a
// certificate at start-up, as a cloud provider certifies its vTPMs' keys.
// It is meant for development CAs: a production CA signs AK certificates
// after checking the TPM's endorsement key, which a CA inside the agent
// cannot do.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// Validity of issued certificates; 0 means DefaultAKCertValidity.
	Validity time.Duration
	// Now is the issuing time; nil means time.Now.
	Now func() time.Time
}

// Check tells whether the CA can issue certificates: its certificate is a CA
// certificate for signing certificates, the key is its key, and it is valid
// now.
func (ca *CA) Check() error {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return errors.New("AK CA: a certificate and its private key are both needed")
	}
	c := ca.Cert
	if !c.BasicConstraintsValid || !c.IsCA {
		return fmt.Errorf("AK CA certificate %q is not a CA certificate (basic constraints CA:TRUE are missing)", c.Subject)
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("AK CA certificate %q does not allow signing certificates (key usage keyCertSign is missing)", c.Subject)
	}
	if cryptoutils.EqualKeys(c.PublicKey, ca.Key.Public()) != nil {
		return fmt.Errorf("the AK CA private key does not belong to the AK CA certificate %q", c.Subject)
	}
	now := ca.now()
	if now.After(c.NotAfter) {
		return fmt.Errorf("AK CA certificate %q expired on %s", c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("AK CA certificate %q is not valid before %s", c.Subject, c.NotBefore.UTC().Format(time.RFC3339))
	}
	if ca.Validity < 0 {
		return fmt.Errorf("AK certificate validity %v is negative", ca.Validity)
	}
	return nil
}

func (ca *CA) now() time.Time {
	if ca.Now != nil {
		return ca.Now()
	}
	return time.Now()
}

// Issue returns a certificate for the attestation key ak. Its subject names
// the key by the SHA-256 of its public key, so that certificates of
// different nodes are told apart in logs. It never outlives the CA.
func (ca *CA) Issue(ak crypto.PublicKey) (*x509.Certificate, error) {
	if err := ca.Check(); err != nil {
		return nil, err
	}
	spki, err := x509.MarshalPKIXPublicKey(ak)
	if err != nil {
		return nil, fmt.Errorf("encode attestation key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial number: %w", err)
	}
	validity := ca.Validity
	if validity == 0 {
		validity = DefaultAKCertValidity
	}
	now := ca.now()
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	sum := sha256.Sum256(spki)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mtuf-agent AK " + hex.EncodeToString(sum[:8])},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		UnknownExtKeyUsage:    []asn1.ObjectIdentifier{oidTCGAKCertificate},
		BasicConstraintsValid: true,
		IsCA:                  false,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, ak, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("issue AK certificate with CA %q: %w", ca.Cert.Subject, err)
	}
	return x509.ParseCertificate(der)
}

// selfSigned tells whether a certificate is a root: issued by itself and
// signed by its own key. An issuing CA that is not a root travels with the
// attestation, so that the verifier can build the chain to its root.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}
