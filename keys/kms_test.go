package keys

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	kmstypes "github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/mtuf/mtuf/internal/kmstest"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"
)

// TestKMS signs TUF metadata with a key held in a real KMS emulator, and
// checks that the key's ID is the same however it is reached: through the
// KMS reference as a private key, as a public key, and as the public key
// written to a file.
func TestKMS(t *testing.T) {
	srv := kmstest.Start(t)
	srv.Setenv(t)
	ctx := context.Background()
	ref, err := srv.CreateKey(ctx, "alias/mtuf-online")
	if err != nil {
		t.Fatal(err)
	}

	priv, err := LoadPrivate(ctx, ref, PasswordSource{})
	if err != nil {
		t.Fatal(err)
	}
	s, err := Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	key, err := TUFKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	if key.Type != tufmeta.KeyTypeECDSA_SHA2_P256 {
		t.Fatalf("KMS key type %s, want %s", key.Type, tufmeta.KeyTypeECDSA_SHA2_P256)
	}
	ts := tufmeta.Timestamp(time.Now().Add(time.Hour))
	root := tufmeta.Root(time.Now().Add(time.Hour))
	if err := root.Signed.AddKey(key, tufmeta.TIMESTAMP); err != nil {
		t.Fatal(err)
	}
	sig, err := ts.Sign(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := root.VerifyDelegate(tufmeta.TIMESTAMP, ts); err != nil {
		t.Fatalf("go-tuf rejects the KMS signature: %v", err)
	}
	ts.Signed.Version++
	if err := root.VerifyDelegate(tufmeta.TIMESTAMP, ts); err == nil {
		t.Fatal("go-tuf accepts the KMS signature over changed metadata")
	}

	pub, err := LoadPublic(ref)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublic(pub)
	if err != nil {
		t.Fatal(err)
	}
	fromFile, err := ParsePublic(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	for name, k := range map[string]any{"private": priv.Public(), "public": pub, "file": fromFile} {
		id, err := KeyID(k)
		if err != nil {
			t.Fatal(err)
		}
		if id != sig.KeyID {
			t.Errorf("key ID through the %s key is %s, the signature's %s", name, id, sig.KeyID)
		}
	}
}

// TestKMSErrors: a reference the KMS cannot serve fails when the key is
// loaded, before anything is signed, and says what to check.
func TestKMSErrors(t *testing.T) {
	srv := kmstest.Start(t)
	srv.Setenv(t)
	ctx := context.Background()
	if _, err := srv.CreateKey(ctx, "alias/mtuf-online"); err != nil {
		t.Fatal(err)
	}
	rsaKey, err := srv.Client().CreateKey(ctx, &kms.CreateKeyInput{
		KeySpec: kmstypes.KeySpecRsa2048, KeyUsage: kmstypes.KeyUsageTypeSignVerify})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		ref      string
		endpoint string
		want     []string
	}{
		{name: "wrong alias", ref: "awskms:///alias/mtuf-typo",
			want: []string{"KMS key awskms:///alias/mtuf-typo: the KMS has no such key or alias", "NotFoundException"}},
		{name: "unreachable", ref: "awskms:///alias/mtuf-online", endpoint: "http://127.0.0.1:1",
			want: []string{"KMS key awskms:///alias/mtuf-online: the KMS did not answer", "AWS_ENDPOINT_URL_KMS", "connection refused"}},
		{name: "RSA key", ref: "awskms:///" + *rsaKey.KeyMetadata.KeyId,
			want: []string{"rsa.PublicKey is not supported", "ECC_NIST_P256"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.endpoint != "" {
				t.Setenv("AWS_ENDPOINT_URL_KMS", tt.endpoint)
			}
			_, err := LoadPrivate(ctx, tt.ref, PasswordSource{})
			checkErr(t, "LoadPrivate", err, tt.want)
			_, err = LoadPublic(tt.ref)
			checkErr(t, "LoadPublic", err, tt.want)
		})
	}
}

func checkErr(t *testing.T, what string, err error, want []string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error, want one with %q", what, want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("%s: error %q does not contain %q", what, err, w)
		}
	}
}
