package keys

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"
)

func TestParseType(t *testing.T) {
	tests := []struct {
		in      string
		want    Type
		wantErr string
	}{
		{in: "ed25519", want: ED25519},
		{in: "ecdsa-p256", want: ECDSAP256},
		{in: "rsa-3072", want: RSA3072},
		{in: " ECDSA-P256 ", want: ECDSAP256},
		{in: "rsa", wantErr: `unknown key type "rsa": valid types are ed25519, ecdsa-p256, rsa-3072`},
		{in: "", wantErr: `unknown key type ""`},
		{in: "ecdsa-p384", wantErr: "valid types are ed25519, ecdsa-p256, rsa-3072"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseType(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseType(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseType(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestGenerate(t *testing.T) {
	tests := []struct {
		typ   Type
		check func(t *testing.T, pub any)
	}{
		{ED25519, func(t *testing.T, pub any) {
			if _, ok := pub.(ed25519.PublicKey); !ok {
				t.Fatalf("public key is %T, want ed25519.PublicKey", pub)
			}
		}},
		{ECDSAP256, func(t *testing.T, pub any) {
			k, ok := pub.(*ecdsa.PublicKey)
			if !ok || k.Curve != elliptic.P256() {
				t.Fatalf("public key is %T, want *ecdsa.PublicKey on P-256", pub)
			}
		}},
		{RSA3072, func(t *testing.T, pub any) {
			k, ok := pub.(*rsa.PublicKey)
			if !ok || k.N.BitLen() != 3072 {
				t.Fatalf("public key is %T, want a 3072-bit *rsa.PublicKey", pub)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.typ), func(t *testing.T) {
			priv, err := Generate(tt.typ)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, priv.Public())
		})
	}
	if _, err := Generate("dsa"); err == nil || !strings.Contains(err.Error(), `unknown key type "dsa"`) {
		t.Fatalf("Generate(dsa) error = %v, want unknown key type", err)
	}
}

func TestUnsupportedKeys(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		pub     any
		wantErr string
	}{
		{"ecdsa-p384", &p384.PublicKey, "curve P-384 is not supported"},
		{"rsa-1024", &rsa1024.PublicKey, "RSA key of 1024 bits is too small"},
		{"private key as public", p384, "unsupported key type *ecdsa.PrivateKey"},
		{"nil", nil, "unsupported key type <nil>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for what, f := range map[string]func() error{
				"TUFKey":        func() error { _, err := TUFKey(tt.pub); return err },
				"KeyID":         func() error { _, err := KeyID(tt.pub); return err },
				"MarshalPublic": func() error { _, err := MarshalPublic(tt.pub); return err },
			} {
				if err := f(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("%s error = %v, want it to contain %q", what, err, tt.wantErr)
				}
			}
		})
	}
	if _, err := MarshalPrivate(p384, []byte("pw")); err == nil || !strings.Contains(err.Error(), "P-384") {
		t.Errorf("MarshalPrivate(P-384) error = %v, want a refusal naming the curve", err)
	}
	if _, err := Signer(rsa1024); err == nil || !strings.Contains(err.Error(), "too small") {
		t.Errorf("Signer(RSA-1024) error = %v, want a refusal", err)
	}
}
