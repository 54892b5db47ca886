package pemkey

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

func TestRoundTrip(t *testing.T) {
	t.Parallel()
	ec, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ed, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, pub := range []any{ec.Public(), ed} {
		data, err := Encode(pub)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(data)
		if err != nil {
			t.Fatalf("Decode(Encode(%T)): %v", pub, err)
		}
		if err := cryptoutils.EqualKeys(pub, got); err != nil {
			t.Errorf("%T: %v", pub, err)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	ed, _, _ := ed25519.GenerateKey(rand.Reader)
	good, err := Encode(ed)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		data, want string
	}{
		"empty":       {"", "no PEM block"},
		"not PEM":     {"hello", "no PEM block"},
		"private key": {"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", `"PRIVATE KEY", want PUBLIC KEY`},
		"two keys":    {string(good) + string(good), "data after the PEM block"},
		"corrupt DER": {"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "asn1"},
	} {
		if _, err := Decode([]byte(tc.data)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, tc.want)
		}
	}
	if _, err := Decode(append(good, "\n\n"...)); err != nil {
		t.Errorf("white space after the block: %v", err)
	}
}
