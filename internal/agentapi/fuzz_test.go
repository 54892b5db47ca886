package agentapi

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"testing"

	"github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"google.golang.org/protobuf/proto"
)

// bodyTransport answers every request with a 200 of one content type and
// body, as a hostile agent could, without a network.
type bodyTransport struct {
	contentType string
	body        []byte
}

func (b bodyTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode:    http.StatusOK,
		Status:        "200 OK",
		Header:        http.Header{"Content-Type": {b.contentType}},
		Body:          io.NopCloser(bytes.NewReader(b.body)),
		ContentLength: int64(len(b.body)),
		Request:       req,
	}, nil
}

// FuzzFetchAttestation feeds arbitrary bytes as an agent's attestation
// answer. Fetch must never panic; a body that does not decode is an
// ErrBadResponse with no attestation; a decoded attestation survives
// Marshal and Unmarshal unchanged.
func FuzzFetchAttestation(f *testing.F) {
	seed := &attest.Attestation{
		AkPub: []byte{0x00, 0x23, 0x00, 0x0b},
		Quotes: []*tpmpb.Quote{{
			Quote:  []byte("quote"),
			RawSig: []byte("sig"),
			Pcrs:   &tpmpb.PCRs{Hash: tpmpb.HashAlgo_SHA256, Pcrs: map[uint32][]byte{0: make([]byte, 32), 4: bytes.Repeat([]byte{1}, 32)}},
		}},
		EventLog:          []byte("log"),
		AkCert:            []byte("cert"),
		IntermediateCerts: [][]byte{[]byte("ca")},
	}
	data, err := proto.Marshal(seed)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add([]byte{})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	nonce := bytes.Repeat([]byte{7}, MinNonce)
	f.Fuzz(func(t *testing.T, body []byte) {
		hc := &http.Client{Transport: bodyTransport{contentType: ContentTypeProtobuf, body: body}}
		att, err := Fetch(context.Background(), hc, "http://agent:9000", nonce)
		if err != nil {
			if att != nil {
				t.Fatalf("attestation returned with an error: %v", err)
			}
			if !errors.Is(err, ErrBadResponse) {
				t.Fatalf("a body that does not decode is not a bad response: %v", err)
			}
			return
		}
		if att == nil {
			t.Fatal("no attestation and no error")
		}
		out, err := proto.Marshal(att)
		if err != nil {
			t.Fatalf("decoded attestation does not encode: %v", err)
		}
		var back attest.Attestation
		if err := proto.Unmarshal(out, &back); err != nil || !proto.Equal(&back, att) {
			t.Fatalf("attestation changed in the round trip: %v", err)
		}
	})
}

// FuzzParsePublicKeyPEM checks the reader of an agent's AK answer: an
// error and no key for what it refuses, and a key that re-encodes to the
// same key otherwise.
func FuzzParsePublicKeyPEM(f *testing.F) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(k.Public())
	if err != nil {
		f.Fatal(err)
	}
	good := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	f.Add(good)
	f.Add(append(append([]byte{}, good...), "x"...))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParsePublicKeyPEM(data)
		if err != nil {
			if pub != nil {
				t.Fatalf("key returned with an error: %v", err)
			}
			return
		}
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			t.Fatalf("accepted key does not encode: %v", err)
		}
		back, err := ParsePublicKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
		if err != nil {
			t.Fatalf("re-encoded key does not parse: %v", err)
		}
		if eq, ok := back.(interface{ Equal(crypto.PublicKey) bool }); !ok || !eq.Equal(pub) {
			t.Fatal("key changed in the round trip")
		}
	})
}
