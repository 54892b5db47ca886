package attest

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	attestpb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/mtuf/mtuf/keys"
)

// maxCAFileBytes bounds a CA bundle file: a certificate is a few kilobytes,
// and a bundle holds a handful.
const maxCAFileBytes = 1 << 20

// oidSubjectAltName is the subjectAltName extension. Cloud AK certificates
// mark it critical with names Go's parser does not read (TPM manufacturer
// info, GCE instance names), which leaves it "unhandled" although nothing
// in it matters to an AK's trust; go-tpm-tools' verifier ignores it too.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// LoadAKRoots reads the CA certificates (PEM, one or more CERTIFICATE
// blocks) that certify attestation keys, for Policy.AKRoots.
func LoadAKRoots(path string) ([]*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("AK CA: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCAFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("AK CA %s: %w", path, err)
	}
	if len(data) > maxCAFileBytes {
		return nil, fmt.Errorf("AK CA %s: larger than %d bytes: is this a PEM certificate file?", path, maxCAFileBytes)
	}
	certs, err := ParseAKRoots(data)
	if err != nil {
		return nil, fmt.Errorf("AK CA %s: %w", path, err)
	}
	return certs, nil
}

// ParseAKRoots parses PEM CA certificates: every block must be a
// CERTIFICATE of a CA, so that a key or a leaf certificate given by mistake
// is refused rather than trusted.
func ParseAKRoots(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("PEM block %q in a CA file: want CERTIFICATE blocks only", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		if !c.BasicConstraintsValid || !c.IsCA {
			return nil, fmt.Errorf("certificate %d (%s) is not a CA certificate: give the CA that issues AK certificates, not an AK certificate", len(certs)+1, c.Subject)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("data after the last PEM block")
	}
	return certs, nil
}

// checkAKRoot refuses a CA that cannot certify anything now: a certificate
// that is not a CA's, or one that has expired.
func checkAKRoot(c *x509.Certificate, now time.Time) error {
	switch {
	case c == nil:
		return errors.New("no certificate")
	case !c.BasicConstraintsValid || !c.IsCA:
		return fmt.Errorf("%s is not a CA certificate", c.Subject)
	case now.After(c.NotAfter):
		return fmt.Errorf("%s expired on %s", c.Subject, c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return fmt.Errorf("%s is not valid before %s", c.Subject, c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// trustAK returns the attestation's key and why it is trusted, or an error
// saying why it is not. The quote is verified with the key of the TPM
// public area, and a certificate counts only for that same key.
func (v *Verifier) trustAK(att *attestpb.Attestation) (ak crypto.PublicKey, trust, fp string, err error) {
	if len(att.GetAkPub()) == 0 {
		return nil, "", "", errors.New("the attestation holds no attestation key")
	}
	pub, err := tpm2.DecodePublic(att.GetAkPub())
	if err != nil {
		return nil, "", "", fmt.Errorf("attestation key: %v", err)
	}
	if ak, err = pub.Key(); err != nil {
		return nil, "", "", fmt.Errorf("attestation key: %v", err)
	}
	der, err := x509.MarshalPKIXPublicKey(ak)
	if err != nil {
		return nil, "", "", fmt.Errorf("attestation key: %v", err)
	}
	fp = fingerprintDER(der)
	for _, k := range v.pinned {
		if bytes.Equal(der, k) {
			return ak, "pinned", fp, nil
		}
	}
	if len(att.GetAkCert()) == 0 {
		if v.roots == nil {
			return nil, "", fp, fmt.Errorf("attestation key %s is not trusted: not among the pinned keys (--trusted-ak), and the node sent no AK certificate", fp)
		}
		return nil, "", fp, fmt.Errorf("attestation key %s is neither pinned (--trusted-ak) nor certified: the node sent no AK certificate for the trusted CA (--ak-ca) to vouch for", fp)
	}
	cert, err := x509.ParseCertificate(att.GetAkCert())
	if err != nil {
		return nil, "", fp, fmt.Errorf("AK certificate is malformed: %v", err)
	}
	if !keys.Equal(cert.PublicKey, ak) {
		return nil, "", fp, fmt.Errorf("AK certificate (%s) is for another key than attestation key %s", cert.Subject, fp)
	}
	if v.roots == nil {
		return nil, "", fp, fmt.Errorf("attestation key %s is not pinned (--trusted-ak), and no CA is trusted (--ak-ca) to check its certificate from %s", fp, cert.Issuer)
	}
	if err := v.verifyAKCert(cert, att.GetIntermediateCerts()); err != nil {
		return nil, "", fp, err
	}
	return ak, fmt.Sprintf("certified by %s until %s", cert.Issuer, cert.NotAfter.UTC().Format(time.RFC3339)), fp, nil
}

// verifyAKCert checks that the AK certificate chains to a trusted root and
// is valid now, naming what is wrong when not.
func (v *Verifier) verifyAKCert(cert *x509.Certificate, rawIntermediates [][]byte) error {
	now := v.now()
	switch {
	case now.After(cert.NotAfter):
		return fmt.Errorf("AK certificate (%s, from %s) expired on %s", cert.Subject, cert.Issuer, cert.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return fmt.Errorf("AK certificate (%s, from %s) is not valid before %s", cert.Subject, cert.Issuer, cert.NotBefore.UTC().Format(time.RFC3339))
	case len(rawIntermediates) > maxIntermediates:
		return fmt.Errorf("AK certificate chain of %d intermediates: at most %d are accepted", len(rawIntermediates), maxIntermediates)
	}
	inter := x509.NewCertPool()
	for i, raw := range rawIntermediates {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return fmt.Errorf("AK certificate chain: intermediate %d is malformed: %v", i+1, err)
		}
		inter.AddCert(c)
	}
	var unhandled []asn1.ObjectIdentifier
	for _, ext := range cert.UnhandledCriticalExtensions {
		if !ext.Equal(oidSubjectAltName) {
			unhandled = append(unhandled, ext)
		}
	}
	cert.UnhandledCriticalExtensions = unhandled
	_, err := cert.Verify(x509.VerifyOptions{
		Roots:         v.roots,
		Intermediates: inter,
		CurrentTime:   now,
		// AK certificates carry the TCG's key usage (2.23.133.8.3), not a
		// TLS one.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ua):
		return fmt.Errorf("AK certificate (%s) is issued by %s, which does not chain to a trusted CA (--ak-ca)", cert.Subject, cert.Issuer)
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return fmt.Errorf("AK certificate chain: %s is expired or not yet valid", ci.Cert.Subject)
	default:
		return fmt.Errorf("AK certificate (%s, from %s) does not verify: %v", cert.Subject, cert.Issuer, err)
	}
}

// fingerprintDER is a short, stable name for a public key: the first bytes
// of the SHA-256 of its PKIX encoding.
func fingerprintDER(der []byte) string {
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:8])
}
