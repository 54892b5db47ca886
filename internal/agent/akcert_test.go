package agent

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/tpm"
)

// testCA makes a CA certificate and key, issued by parent or self-signed.
func testCA(t *testing.T, name string, parent *CA, isCA bool, notBefore, notAfter time.Time) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  isCA,
	}
	issuer, signer := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, signer = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key}
}

func TestAKCertificate(t *testing.T) {
	now := time.Now()
	root := testCA(t, "test root", nil, true, now.Add(-time.Hour), now.Add(24*time.Hour))
	intermediate := testCA(t, "test intermediate", root, true, now.Add(-time.Hour), now.Add(12*time.Hour))

	for _, tc := range []struct {
		name              string
		issuer            *CA
		wantIntermediates int
	}{
		{"root issues", root, 0},
		{"intermediate issues", intermediate, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rw, err := tpm.Open("sim")
			if err != nil {
				t.Fatal(err)
			}
			defer rw.Close()
			ca := *tc.issuer
			ca.Validity = time.Hour
			s, err := New(Config{TPM: rw, AKCA: &ca})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			cert := s.AKCertificate()
			if cert == nil {
				t.Fatal("no AK certificate")
			}
			if !cert.PublicKey.(equaler).Equal(s.AKPublic()) {
				t.Error("the AK certificate is for another key")
			}
			if cert.IsCA {
				t.Error("the AK certificate is a CA certificate")
			}
			if len(cert.UnknownExtKeyUsage) != 1 || !cert.UnknownExtKeyUsage[0].Equal(oidTCGAKCertificate) {
				t.Errorf("extended key usage %v, want tcg-kp-AIKCertificate", cert.UnknownExtKeyUsage)
			}
			if d := time.Until(cert.NotAfter); d > time.Hour || d < 50*time.Minute {
				t.Errorf("certificate valid for %v more, want about an hour", d)
			}

			ts := httptest.NewServer(s)
			defer ts.Close()
			n := nonce(t, 32)
			att, err := agentapi.Fetch(context.Background(), ts.Client(), ts.URL, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(att.GetIntermediateCerts()) != tc.wantIntermediates {
				t.Errorf("%d intermediate certificates, want %d", len(att.GetIntermediateCerts()), tc.wantIntermediates)
			}
			// go-tpm-tools' own verifier trusts the key through the root alone.
			if _, err := server.VerifyAttestation(att, server.VerifyOpts{
				Nonce: n, TrustedRootCerts: []*x509.Certificate{root.Cert}, HashAlgo: tpm2.AlgSHA256,
			}); err != nil {
				t.Fatalf("VerifyAttestation with the CA root: %v", err)
			}
			other := testCA(t, "other root", nil, true, now.Add(-time.Hour), now.Add(time.Hour))
			if _, err := server.VerifyAttestation(att, server.VerifyOpts{
				Nonce: n, TrustedRootCerts: []*x509.Certificate{other.Cert}, HashAlgo: tpm2.AlgSHA256,
			}); err == nil {
				t.Error("attestation verified with another CA as root")
			}
		})
	}
}

func TestAKCertificateNeverOutlivesTheCA(t *testing.T) {
	now := time.Now()
	ca := testCA(t, "short-lived CA", nil, true, now.Add(-time.Hour), now.Add(10*time.Minute))
	ca.Validity = 48 * time.Hour
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	cert, err := ca.Issue(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Errorf("certificate valid until %v, the CA only until %v", cert.NotAfter, ca.Cert.NotAfter)
	}
}

func TestCACheck(t *testing.T) {
	now := time.Now()
	good := testCA(t, "good", nil, true, now.Add(-time.Hour), now.Add(time.Hour))
	notCA := testCA(t, "leaf", nil, false, now.Add(-time.Hour), now.Add(time.Hour))
	expired := testCA(t, "old", nil, true, now.Add(-2*time.Hour), now.Add(-time.Hour))
	future := testCA(t, "future", nil, true, now.Add(time.Hour), now.Add(2*time.Hour))
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	for _, tc := range []struct {
		name string
		ca   *CA
		want string
	}{
		{"no CA", nil, "certificate and its private key"},
		{"no key", &CA{Cert: good.Cert}, "certificate and its private key"},
		{"not a CA", notCA, "not a CA certificate"},
		{"key of another CA", &CA{Cert: good.Cert, Key: otherKey}, "does not belong"},
		{"expired", expired, "expired on"},
		{"not yet valid", future, "not valid before"},
		{"negative validity", &CA{Cert: good.Cert, Key: good.Key, Validity: -time.Second}, "negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.ca.Check()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Check() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
	if err := good.Check(); err != nil {
		t.Errorf("a good CA: %v", err)
	}

	// New refuses to start with a CA that cannot issue.
	rw, err := tpm.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := New(Config{TPM: rw, AKCA: expired}); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("New with an expired CA: %v", err)
	}
}
