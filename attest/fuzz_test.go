//go:build simulator

package attest_test

import (
	"bytes"
	"context"
	"crypto"
	"crypto/x509"
	"testing"
	"time"

	attestpb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"google.golang.org/protobuf/proto"

	"github.com/mtuf/mtuf/attest"
	"github.com/mtuf/mtuf/internal/agentapi"
)

// FuzzVerifyMutatedAttestation takes a real attestation of a simulated
// node, with an AK certificate, and verifies mutations of its encoding
// with the AK pinned and with the AK certified by a CA. Verification must
// never panic, and must never trust an attestation whose signed parts
// (the AK, the SHA-256 quote and the PCR values it covers) differ from
// the node's.
func FuzzVerifyMutatedAttestation(f *testing.F) {
	ca := newTestCA(f, "fuzz AK CA", nil, time.Hour)
	n := startNode(f, nodeSpec{chain: bootV1, ca: ca.agentCA(time.Hour)})
	nonce := bytes.Repeat([]byte{0x5a}, agentapi.MinNonce)
	orig, err := agentapi.Fetch(context.Background(), nil, n.srv.URL, nonce)
	if err != nil {
		f.Fatal(err)
	}
	ref := n.reference()
	ak := n.ak
	n.close() // the simulator is free again for other tests
	data, err := proto.Marshal(orig)
	if err != nil {
		f.Fatal(err)
	}
	origQuote := quoteOf(orig, tpmpb.HashAlgo_SHA256)
	if origQuote == nil {
		f.Fatal("the node gave no SHA-256 quote")
	}

	var verifiers []*attest.Verifier
	for _, p := range []attest.Policy{
		{Measurements: ref, TrustedAKs: []crypto.PublicKey{ak}},
		{Measurements: ref, AKRoots: []*x509.Certificate{ca.Cert}},
	} {
		v, err := attest.NewVerifier(p, attest.Options{})
		if err != nil {
			f.Fatal(err)
		}
		if r := v.VerifyAttestation("node", orig, nonce); r.Status != attest.Trusted {
			f.Fatalf("the original attestation is not trusted: %s", r)
		}
		verifiers = append(verifiers, v)
	}

	f.Add(data)
	stripped := proto.Clone(orig).(*attestpb.Attestation)
	stripped.EventLog = nil
	if b, err := proto.Marshal(stripped); err == nil {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var att attestpb.Attestation
		if err := proto.Unmarshal(b, &att); err != nil {
			return
		}
		for _, v := range verifiers {
			r := v.VerifyAttestation("node", &att, nonce)
			if r.Status != attest.Trusted && r.Status != attest.TrustedWithWarnings {
				continue
			}
			q := quoteOf(&att, tpmpb.HashAlgo_SHA256)
			if !bytes.Equal(att.GetAkPub(), orig.GetAkPub()) || q == nil || !bytes.Equal(q.GetQuote(), origQuote.GetQuote()) {
				t.Fatalf("trusted an attestation with another AK or quote: %s", r)
			}
			for idx := range ref.PCRs {
				if !bytes.Equal(q.GetPcrs().GetPcrs()[idx], origQuote.GetPcrs().GetPcrs()[idx]) {
					t.Fatalf("trusted an attestation with another PCR %d: %s", idx, r)
				}
			}
		}
	})
}
