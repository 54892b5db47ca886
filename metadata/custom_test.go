package metadata

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
)

// testKeyID stands in for the in-toto key ID, which this package does not compute.
func testKeyID(pub crypto.PublicKey) (string, error) {
	return hex.EncodeToString(pub.(ed25519.PublicKey)[:8]), nil
}

func newOwners(t *testing.T, n int) []crypto.PublicKey {
	t.Helper()
	out := make([]crypto.PublicKey, n)
	for i := range out {
		pub, _, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = pub
	}
	return out
}

func TestLayoutCustomRoundTrip(t *testing.T) {
	owners := newOwners(t, 2)
	raw, ids, err := NewLayoutCustom(owners, testKeyID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 {
		t.Fatalf("ids = %v", ids)
	}
	got, err := ParseLayoutCustom(raw)
	if err != nil {
		t.Fatal(err)
	}
	for i := range owners {
		if !owners[i].(ed25519.PublicKey).Equal(got[i]) {
			t.Errorf("owner key %d changed in the round trip", i+1)
		}
	}
}

func TestLayoutCustomLimits(t *testing.T) {
	many := newOwners(t, MaxLayoutOwners+1)
	if _, _, err := NewLayoutCustom(many, testKeyID); err == nil || !strings.Contains(err.Error(), "at most 16") {
		t.Errorf("NewLayoutCustom of %d keys: %v", len(many), err)
	}
	one := newOwners(t, 1)
	if _, _, err := NewLayoutCustom(append(one, one[0]), testKeyID); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("NewLayoutCustom of a key twice: %v", err)
	}
	var b strings.Builder
	b.WriteString(`{"kind":"layout","ownerKeys":[`)
	for i := range MaxLayoutOwners + 1 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"keyid":"x","publicKey":""}`)
	}
	b.WriteString("]}")
	for _, tt := range []struct{ name, raw, want string }{
		{"too many", b.String(), "at most 16"},
		{"none", `{"kind":"layout","ownerKeys":[]}`, "names no layout owner key"},
		{"not PEM", `{"kind":"layout","ownerKeys":[{"keyid":"k","publicKey":"nope"}]}`, "not a PEM public key"},
		{"not JSON", `[`, "custom metadata"},
	} {
		if _, err := ParseLayoutCustom([]byte(tt.raw)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseLayoutCustom = %v, want an error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestMeasurementsCustom(t *testing.T) {
	c, err := ParseMeasurementsCustom([]byte(`{"kind":"measurements","image":"v1","platform":"p","links":["a","b"]}`))
	if err != nil || c.Kind != KindMeasurements || c.Image != "v1" || len(c.Links) != 2 {
		t.Errorf("ParseMeasurementsCustom = %+v, %v", c, err)
	}
}
