package agentcmd

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/tpm"
	"github.com/mtuf/mtuf/metadata"
)

var akCADir = filepath.Join("..", "..", "testdata", "ak-ca")

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("%s: no PEM certificate", path)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestAKCertificateFromDevelopmentCA(t *testing.T) {
	t.Setenv("MTUF_PASSWORD", "test-password")
	dir := t.TempDir()
	certOut := filepath.Join(dir, "ak-cert.pem")
	a := startAgent(t, "--tpm", "sim", "--boot-log", filepath.Join(bootDir, "image-v1.0.0.yaml"),
		"--ak-ca-key", filepath.Join(akCADir, "test-ak-ca.key"), "--ak-ca-cert", filepath.Join(akCADir, "test-ak-ca.pem"),
		"--ak-cert-validity", "2h", "--ak-cert-out", certOut)

	root := readCert(t, filepath.Join(akCADir, "test-ak-ca.pem"))
	cert := readCert(t, certOut)
	if err := cert.CheckSignatureFrom(root); err != nil {
		t.Fatalf("--ak-cert-out certificate is not signed by the CA: %v", err)
	}
	if d := time.Until(cert.NotAfter); d > 2*time.Hour || d < 110*time.Minute {
		t.Errorf("certificate valid for %v more, want about 2h", d)
	}
	ak, err := agentapi.FetchAK(context.Background(), http.DefaultClient, "http://"+a.addr)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }).Equal(ak) {
		t.Fatal("the certificate is for another key than the served AK")
	}

	n := make([]byte, 32)
	att, err := agentapi.Fetch(context.Background(), http.DefaultClient, "http://"+a.addr, n)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(att.GetAkCert(), cert.Raw) {
		t.Error("the attestation does not carry the AK certificate")
	}
	// An independent verifier trusts the key through the CA alone.
	if _, err := server.VerifyAttestation(att, server.VerifyOpts{Nonce: n, TrustedRootCerts: []*x509.Certificate{root}, HashAlgo: tpm2.AlgSHA256}); err != nil {
		t.Fatalf("VerifyAttestation with the development CA: %v", err)
	}
	other := readCert(t, filepath.Join(akCADir, "other-test-ak-ca.pem"))
	if _, err := server.VerifyAttestation(att, server.VerifyOpts{Nonce: n, TrustedRootCerts: []*x509.Certificate{other}, HashAlgo: tpm2.AlgSHA256}); err == nil {
		t.Error("the attestation verified with another CA")
	}
	if code := a.shutdown(t); code != 0 {
		t.Fatalf("exit %d: %s", code, a.stderr)
	}
	if !strings.Contains(a.stderr.String(), "ak_cert_issuer=") {
		t.Errorf("the start-up log does not name the AK certificate's issuer:\n%s", a.stderr)
	}
}

func TestClusterID(t *testing.T) {
	const id = "prod-eu-1"
	dir := t.TempDir()
	logOut := filepath.Join(dir, "events.bin")
	a := startAgent(t, "--tpm", "sim", "--boot-log", filepath.Join(bootDir, "image-v1.0.0.yaml"), "--cluster-id", id, "--event-log-out", logOut)

	ak, err := agentapi.FetchAK(context.Background(), http.DefaultClient, "http://"+a.addr)
	if err != nil {
		t.Fatal(err)
	}
	n := make([]byte, 32)
	att, err := agentapi.Fetch(context.Background(), http.DefaultClient, "http://"+a.addr, n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.VerifyAttestation(att, server.VerifyOpts{Nonce: n, TrustedAKs: []crypto.PublicKey{ak}, HashAlgo: tpm2.AlgSHA256}); err != nil {
		t.Fatalf("VerifyAttestation: %v (the cluster ID event must replay)", err)
	}
	for _, q := range att.GetQuotes() {
		var bank string
		switch q.GetPcrs().GetHash() {
		case tpmpb.HashAlgo_SHA256:
			bank = metadata.HashSHA256
		case tpmpb.HashAlgo_SHA384:
			bank = metadata.HashSHA384
		default:
			continue
		}
		want, err := metadata.ClusterIDPCR(bank, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := q.GetPcrs().GetPcrs()[metadata.ClusterIDPCRIndex]; !bytes.Equal(got, want) {
			t.Errorf("%s PCR 15 = %x, want ClusterIDPCR = %x", bank, got, want)
		}
	}

	// --event-log-out wrote the log the agent serves, with the cluster ID
	// as the last event.
	written, err := os.ReadFile(logOut)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(written, att.GetEventLog()) {
		t.Error("--event-log-out differs from the served event log")
	}
	el, err := tcg.ParseEventLog(written, tcg.ParseOpts{})
	if err != nil {
		t.Fatal(err)
	}
	events := el.Events(register.HashSHA256)
	last := events[len(events)-1]
	digest, _ := metadata.ClusterIDDigest(metadata.HashSHA256, id)
	if last.Index != metadata.ClusterIDPCRIndex || string(last.Data) != id || !bytes.Equal(last.Digest, digest) {
		t.Errorf("last event: PCR %d data %q digest %x, want PCR 15, %q, %x", last.Index, last.Data, last.Digest, id, digest)
	}

	// Without a boot chain, the cluster ID is the only event. The simulator
	// is one per process: the first agent gives it back first.
	if code := a.shutdown(t); code != 0 {
		t.Fatalf("exit %d: %s", code, a.stderr)
	}
	b := startAgent(t, "--tpm", "sim", "--cluster-id", id)
	att, err = agentapi.Fetch(context.Background(), http.DefaultClient, "http://"+b.addr, n)
	if err != nil {
		t.Fatal(err)
	}
	el, err = tcg.ParseEventLog(att.GetEventLog(), tcg.ParseOpts{})
	if err != nil {
		t.Fatal(err)
	}
	if ev := el.Events(register.HashSHA256); len(ev) != 1 || ev[0].Index != metadata.ClusterIDPCRIndex {
		t.Errorf("log of a node with only a cluster ID: %d events", len(ev))
	}
}

func TestNewFlagErrors(t *testing.T) {
	dir := t.TempDir()
	chain15 := filepath.Join(dir, "pcr15.yaml")
	if err := os.WriteFile(chain15, []byte("name: x\nevents:\n  - {pcr: 15, type: EV_IPL, description: id, data: k}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notCert := filepath.Join(dir, "not-cert.pem")
	if err := os.WriteFile(notCert, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	caKey := filepath.Join(akCADir, "test-ak-ca.key")
	caCert := filepath.Join(akCADir, "test-ak-ca.pem")
	otherCert := filepath.Join(akCADir, "other-test-ak-ca.pem")
	sim := []string{"--tpm", "sim", "--listen", "127.0.0.1:0"}

	tests := []struct {
		name     string
		args     []string
		password string
		code     int
		want     []string
	}{
		{"cluster ID on a device", []string{"--tpm", "/dev/tpmrm0", "--cluster-id", "c"}, "", cli.ExitUsage,
			[]string{"--cluster-id", "test TPM", "initialization"}},
		{"cluster ID with spaces", append(sim, "--cluster-id", "prod "), "", cli.ExitUsage, []string{"--cluster-id", "white space"}},
		{"cluster ID with a newline", append(sim, "--cluster-id", "a\nb"), "", cli.ExitUsage, []string{"--cluster-id", "control character"}},
		{"cluster ID too long", append(sim, "--cluster-id", strings.Repeat("x", MaxClusterIDBytes+1)), "", cli.ExitUsage, []string{"at most 1024"}},
		{"chain measures PCR 15", append(sim, "--boot-log", chain15, "--cluster-id", "c"), "", cli.ExitUsage,
			[]string{"already measures into PCR 15", "events[0]"}},
		{"CA key without certificate", append(sim, "--ak-ca-key", caKey), "", cli.ExitUsage, []string{"--ak-ca-key and --ak-ca-cert go together"}},
		{"CA certificate without key", append(sim, "--ak-ca-cert", caCert), "", cli.ExitUsage, []string{"go together"}},
		{"certificate out without CA", append(sim, "--ak-cert-out", filepath.Join(dir, "c.pem")), "", cli.ExitUsage, []string{"--ak-cert-out", "--ak-ca-key"}},
		{"zero validity", append(sim, "--ak-cert-validity", "0s"), "", cli.ExitUsage, []string{"--ak-cert-validity", "positive"}},
		{"CA key of another certificate", append(sim, "--ak-ca-key", caKey, "--ak-ca-cert", otherCert), "test-password", cli.ExitUsage,
			[]string{"does not belong to the AK CA certificate"}},
		{"wrong CA key password", append(sim, "--ak-ca-key", caKey, "--ak-ca-cert", caCert), "nope", cli.ExitUsage,
			[]string{"--ak-ca-key", "wrong password"}},
		{"CA certificate not PEM", append(sim, "--ak-ca-key", caKey, "--ak-ca-cert", notCert), "test-password", cli.ExitUsage,
			[]string{"--ak-ca-cert", "no PEM block"}},
		{"CA certificate is a key", append(sim, "--ak-ca-key", caKey, "--ak-ca-cert", caKey), "test-password", cli.ExitUsage,
			[]string{"--ak-ca-cert", `"ENCRYPTED SIGSTORE PRIVATE KEY", want CERTIFICATE`}},
		{"CA key is a certificate", append(sim, "--ak-ca-key", caCert, "--ak-ca-cert", caCert), "test-password", cli.ExitUsage,
			[]string{"--ak-ca-key", "public key"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MTUF_PASSWORD", tc.password)
			var stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			code := run(ctx, tc.args, &bytes.Buffer{}, &stderr)
			if code != tc.code {
				t.Fatalf("exit status %d, want %d: %s", code, tc.code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not mention %q", stderr.String(), w)
				}
			}
		})
	}
	// A boot chain plus the cluster ID still checks that PCR 15 is fresh.
	if _, err := withClusterID(&tpm.BootChain{Name: "n", Events: []tpm.BootEvent{{PCR: 4, Type: tcg.Ipl, Description: "k", Data: []byte("k")}}}, "c"); err != nil {
		t.Errorf("withClusterID: %v", err)
	}
}
