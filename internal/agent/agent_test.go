package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm-tools/quote"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/tpm"
)

type equaler interface{ Equal(crypto.PublicKey) bool }

// bootedAgent starts an agent on a fresh simulator booted with the v1.0.0
// image and serves it over httptest.
func bootedAgent(t *testing.T, kt KeyType) (*Server, *httptest.Server, *tpm.BootChain) {
	t.Helper()
	rw, err := tpm.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	chain, err := tpm.LoadBootChain(filepath.Join("..", "..", "testdata", "boot", "image-v1.0.0.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	log, err := tpm.Boot(rw, chain)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{TPM: rw, EventLog: log, KeyType: kt})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(func() {
		ts.Close()
		if err := s.Close(); err != nil {
			t.Error(err)
		}
		if err := rw.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, ts, chain
}

func nonce(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAttestationVerifies(t *testing.T) {
	for _, kt := range []KeyType{ECC, RSA} {
		t.Run(kt.String(), func(t *testing.T) {
			s, ts, chain := bootedAgent(t, kt)
			ctx := context.Background()

			ak, err := agentapi.FetchAK(ctx, ts.Client(), ts.URL)
			if err != nil {
				t.Fatal(err)
			}
			if !ak.(equaler).Equal(s.AKPublic()) {
				t.Fatal("FetchAK returned another key than the agent's AK")
			}
			switch kt {
			case ECC:
				if _, ok := ak.(*ecdsa.PublicKey); !ok {
					t.Fatalf("AK is %T, want ECDSA", ak)
				}
			case RSA:
				if _, ok := ak.(*rsa.PublicKey); !ok {
					t.Fatalf("AK is %T, want RSA", ak)
				}
			}

			n := nonce(t, 32)
			att, err := agentapi.Fetch(ctx, ts.Client(), ts.URL, n)
			if err != nil {
				t.Fatal(err)
			}
			for _, bank := range []crypto.Hash{crypto.SHA256, crypto.SHA384} {
				alg, _ := tpm2.HashToAlgorithm(bank)
				ms, err := server.VerifyAttestation(att, server.VerifyOpts{
					Nonce:      n,
					TrustedAKs: []crypto.PublicKey{ak},
					HashAlgo:   alg,
				})
				if err != nil {
					t.Fatalf("VerifyAttestation(%s): %v", tpm.BankName(bank), err)
				}
				if got := len(ms.GetRawEvents()); got != len(chain.Events) {
					t.Errorf("%s: verified %d events, want %d", tpm.BankName(bank), got, len(chain.Events))
				}
			}

			// The quote of the sha256 bank verifies on its own and holds the
			// PCRs that Boot produced.
			q := quoteOf(t, att, tpm2.AlgSHA256)
			if err := quote.Verify(q, ak, n); err != nil {
				t.Fatalf("quote.Verify: %v", err)
			}
			want, err := chain.ExpectedPCRs(crypto.SHA256)
			if err != nil {
				t.Fatal(err)
			}
			for idx, w := range want {
				if got := q.GetPcrs().GetPcrs()[idx]; !bytes.Equal(got, w) {
					t.Errorf("quoted sha256 PCR %d = %x, want %x", idx, got, w)
				}
			}
			if len(q.GetPcrs().GetPcrs()) != tpm.NumPCRs {
				t.Errorf("quote covers %d PCRs, want %d", len(q.GetPcrs().GetPcrs()), tpm.NumPCRs)
			}

			// Another nonce does not verify: the attestation is not replayable.
			other := nonce(t, 32)
			if _, err := server.VerifyAttestation(att, server.VerifyOpts{Nonce: other, TrustedAKs: []crypto.PublicKey{ak}, HashAlgo: tpm2.AlgSHA256}); err == nil {
				t.Error("attestation verified with another nonce")
			}
			if err := quote.Verify(q, ak, other); err == nil {
				t.Error("quote verified with another nonce")
			}
		})
	}
}

func quoteOf(t *testing.T, att *attest.Attestation, alg tpm2.Algorithm) *tpmpb.Quote {
	t.Helper()
	for _, q := range att.GetQuotes() {
		if tpm2.Algorithm(q.GetPcrs().GetHash()) == alg {
			return q
		}
	}
	t.Fatalf("no %v quote among %d", alg, len(att.GetQuotes()))
	return nil
}

func TestAttestationQuotesEveryBank(t *testing.T) {
	s, ts, _ := bootedAgent(t, ECC)
	att, err := agentapi.Fetch(context.Background(), ts.Client(), ts.URL, nonce(t, agentapi.MinNonce))
	if err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	banks, err := tpm.Banks(s.tpm)
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if len(att.GetQuotes()) != len(banks) {
		t.Fatalf("%d quotes for %d allocated banks", len(att.GetQuotes()), len(banks))
	}
	if len(att.GetEventLog()) == 0 {
		t.Error("attestation has no event log")
	}
}

func TestAttestationWithoutEventLog(t *testing.T) {
	rw, err := tpm.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	s, err := New(Config{TPM: rw})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ts := httptest.NewServer(s)
	defer ts.Close()
	n := nonce(t, agentapi.MaxNonce)
	att, err := agentapi.Fetch(context.Background(), ts.Client(), ts.URL, n)
	if err != nil {
		t.Fatal(err)
	}
	if len(att.GetEventLog()) != 0 {
		t.Errorf("attestation carries a %d-byte event log, want none", len(att.GetEventLog()))
	}
	if _, err := server.VerifyAttestation(att, server.VerifyOpts{Nonce: n, TrustedAKs: []crypto.PublicKey{s.AKPublic()}, HashAlgo: tpm2.AlgSHA256}); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentRequests(t *testing.T) {
	s, ts, _ := bootedAgent(t, ECC)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := make([]byte, 20)
			_, _ = rand.Read(n)
			att, err := agentapi.Fetch(context.Background(), ts.Client(), ts.URL, n)
			if err == nil {
				_, err = server.VerifyAttestation(att, server.VerifyOpts{Nonce: n, TrustedAKs: []crypto.PublicKey{s.AKPublic()}, HashAlgo: tpm2.AlgSHA256})
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestBadRequests(t *testing.T) {
	_, ts, _ := bootedAgent(t, ECC)
	good, _ := json.Marshal(agentapi.Request{Nonce: make([]byte, 32)})
	short, _ := json.Marshal(agentapi.Request{Nonce: make([]byte, agentapi.MinNonce-1)})
	long, _ := json.Marshal(agentapi.Request{Nonce: make([]byte, agentapi.MaxNonce+1)})
	tests := []struct {
		name, method, path, ctype, body string
		status                          int
		want                            string
	}{
		{"get attestation", "GET", agentapi.AttestationPath, "", "", http.StatusMethodNotAllowed, "POST"},
		{"put attestation", "PUT", agentapi.AttestationPath, "application/json", string(good), http.StatusMethodNotAllowed, "POST"},
		{"post ak", "POST", agentapi.AKPath, "application/json", string(good), http.StatusMethodNotAllowed, "GET"},
		{"unknown path", "GET", "/v2/attestation", "", "", http.StatusNotFound, "/v1/attestation"},
		{"no content type", "POST", agentapi.AttestationPath, "", string(good), http.StatusUnsupportedMediaType, "application/json"},
		{"form", "POST", agentapi.AttestationPath, "application/x-www-form-urlencoded", "nonce=abc", http.StatusUnsupportedMediaType, "application/json"},
		{"not json", "POST", agentapi.AttestationPath, "application/json", "nonce", http.StatusBadRequest, "JSON"},
		{"nonce not base64", "POST", agentapi.AttestationPath, "application/json", `{"nonce":"!!"}`, http.StatusBadRequest, "JSON"},
		{"unknown field", "POST", agentapi.AttestationPath, "application/json", `{"nonce":"AAAAAAAAAAAAAAAAAAAAAA==","pcrs":[1]}`, http.StatusBadRequest, "pcrs"},
		{"two objects", "POST", agentapi.AttestationPath, "application/json", string(good) + string(good), http.StatusBadRequest, "more than one"},
		{"no nonce", "POST", agentapi.AttestationPath, "application/json", `{}`, http.StatusBadRequest, "0 bytes"},
		{"short nonce", "POST", agentapi.AttestationPath, "application/json", string(short), http.StatusBadRequest, "15 bytes"},
		{"long nonce", "POST", agentapi.AttestationPath, "application/json", string(long), http.StatusBadRequest, "65 bytes"},
		{"huge body", "POST", agentapi.AttestationPath, "application/json", `{"nonce":"` + strings.Repeat("A", agentapi.MaxRequestBytes) + `"}`, http.StatusRequestEntityTooLarge, "larger than 4096"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, ts.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if tc.ctype != "" {
				req.Header.Set("Content-Type", tc.ctype)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tc.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("error Content-Type %q, want application/json", ct)
			}
			var e agentapi.ErrorResponse
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("error body %q is not JSON: %v", body, err)
			}
			if !strings.Contains(e.Error, tc.want) {
				t.Errorf("error %q does not mention %q", e.Error, tc.want)
			}
			if tc.status == http.StatusMethodNotAllowed && resp.Header.Get("Allow") == "" {
				t.Error("405 without an Allow header")
			}
		})
	}
}

func TestClosedServerRefuses(t *testing.T) {
	s, ts, _ := bootedAgent(t, ECC)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := agentapi.Fetch(context.Background(), ts.Client(), ts.URL, nonce(t, 32))
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "shutting down") {
		t.Fatalf("Fetch from a closed agent: %v, want a 503 saying it is shutting down", err)
	}
}

func TestAttestDirect(t *testing.T) {
	s, _, chain := bootedAgent(t, ECC)
	n := nonce(t, agentapi.MinNonce)
	att, err := s.Attest(n)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := server.VerifyAttestation(att, server.VerifyOpts{Nonce: n, TrustedAKs: []crypto.PublicKey{s.AKPublic()}, HashAlgo: tpm2.AlgSHA256}); err != nil {
		t.Fatalf("VerifyAttestation: %v", err)
	}
	if len(att.GetEventLog()) == 0 || len(chain.Events) == 0 {
		t.Error("attestation without the boot's event log")
	}
	if s.AKCertificate() != nil || len(att.GetAkCert()) != 0 {
		t.Error("an agent without a CA has an AK certificate")
	}
	if _, err := s.Attest(make([]byte, agentapi.MinNonce-1)); err == nil || !strings.Contains(err.Error(), "nonce of 15 bytes") {
		t.Errorf("Attest with a short nonce: %v", err)
	}
	s.Close()
	if _, err := s.Attest(n); err == nil || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("Attest after Close: %v", err)
	}
}

func TestAKIsStableForAFixedSeed(t *testing.T) {
	pub := func() crypto.PublicKey {
		rw, err := tpm.Open("sim:42")
		if err != nil {
			t.Fatal(err)
		}
		defer rw.Close()
		s, err := New(Config{TPM: rw})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		return s.AKPublic()
	}
	a, b := pub(), pub()
	if !a.(equaler).Equal(b) {
		t.Fatal("two agents on sim:42 have different attestation keys")
	}
	// It is the key go-tpm-tools' AttestationKeyECC gives, so tools built on
	// it agree on the node's identity.
	rw, err := tpm.Open("sim:42")
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	k, err := client.AttestationKeyECC(rw)
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	if !a.(equaler).Equal(k.PublicKey()) {
		t.Fatal("the agent's AK differs from client.AttestationKeyECC's")
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "no TPM") {
		t.Errorf("New without TPM: %v", err)
	}
	rw, err := tpm.Open("sim")
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := New(Config{TPM: rw, KeyType: KeyType(9)}); err == nil || !strings.Contains(err.Error(), "unknown attestation key type") {
		t.Errorf("New with key type 9: %v", err)
	}
}

func TestParseKeyType(t *testing.T) {
	for _, kt := range []KeyType{ECC, RSA} {
		got, err := ParseKeyType(kt.String())
		if err != nil || got != kt {
			t.Errorf("ParseKeyType(%q) = %v, %v", kt, got, err)
		}
	}
	if _, err := ParseKeyType("dsa"); err == nil || !strings.Contains(err.Error(), `"dsa"`) {
		t.Errorf("ParseKeyType(dsa) = %v", err)
	}
}
