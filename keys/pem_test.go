package keys

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/encrypted"
)

// TestPrivateEnvelope checks the encrypted envelope against what cosign
// writes, and that every encryption draws a fresh salt and nonce.
func TestPrivateEnvelope(t *testing.T) {
	t.Parallel()
	priv := testKey(t, ED25519)
	var salts, nonces []any
	for i := range 2 {
		// The cached encryption of the key, and a fresh one.
		data := testKeyFile(t, ED25519)
		if i > 0 {
			var err error
			if data, err = MarshalPrivate(priv, []byte(testPassword)); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.HasPrefix(data, []byte("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")) {
			t.Fatalf("key file starts with %q, want the cosign PEM header", data[:min(60, len(data))])
		}
		editEnvelope(t, data, func(env map[string]any) {
			kdf := env["kdf"].(map[string]any)
			params := kdf["params"].(map[string]any)
			if kdf["name"] != "scrypt" || params["N"] != float64(65536) || params["r"] != float64(8) || params["p"] != float64(1) {
				t.Errorf("kdf = %v, want scrypt N=65536 r=8 p=1 as cosign writes", kdf)
			}
			c := env["cipher"].(map[string]any)
			if c["name"] != "nacl/secretbox" {
				t.Errorf("cipher = %v, want nacl/secretbox", c)
			}
			salts = append(salts, kdf["salt"])
			nonces = append(nonces, c["nonce"])
		})
	}
	if salts[0] == salts[1] || nonces[0] == nonces[1] {
		t.Fatal("two encryptions of one key share a salt or nonce")
	}
}

func TestParsePrivateErrors(t *testing.T) {
	t.Parallel()
	priv := testKey(t, ECDSAP256)
	good := testKeyFile(t, ECDSAP256)
	pub, err := MarshalPublic(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	notPKCS8, err := encrypted.Encrypt([]byte("not a key"), []byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		data      []byte
		password  string
		wantErr   string
		wantWrong bool // errors.Is(err, ErrWrongPassword)
	}{
		{name: "wrong password", data: good, password: "nope", wantErr: "wrong password", wantWrong: true},
		{name: "empty password", data: good, password: "", wantErr: "wrong password", wantWrong: true},
		{name: "empty file", data: []byte("\n"), wantErr: "empty key file"},
		{name: "not PEM", data: []byte("ssh-ed25519 AAAA... me@host\n"), wantErr: "not a PEM-encoded key"},
		{name: "truncated", data: good[:len(good)/2], wantErr: "malformed or truncated PEM block"},
		{name: "public key", data: pub, wantErr: `this is a public key (PEM "PUBLIC KEY"), not a private key`},
		{name: "unencrypted", data: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}), wantErr: "unencrypted private key"},
		{name: "other PEM type", data: pem.EncodeToMemory(&pem.Block{Type: "OPENSSH PRIVATE KEY", Bytes: []byte{1}}), wantErr: `PEM block "OPENSSH PRIVATE KEY" is not an encrypted private key`},
		{name: "envelope not JSON", data: pem.EncodeToMemory(&pem.Block{Type: pemSigstorePrivate, Bytes: []byte("{garbage")}), wantErr: "private key is corrupt: encrypted envelope is not valid JSON"},
		{name: "scrypt parameters raised", password: testPassword, wantErr: "unsupported scrypt parameters N=1048576",
			data: editEnvelope(t, good, func(env map[string]any) {
				env["kdf"].(map[string]any)["params"].(map[string]any)["N"] = 1 << 20
			})},
		{name: "unknown kdf", password: testPassword, wantErr: `unknown key derivation "argon2"`,
			data: editEnvelope(t, good, func(env map[string]any) { env["kdf"].(map[string]any)["name"] = "argon2" })},
		{name: "short nonce", password: testPassword, wantErr: "nonce has 3 bytes",
			data: editEnvelope(t, good, func(env map[string]any) {
				env["cipher"].(map[string]any)["nonce"] = base64.StdEncoding.EncodeToString([]byte{1, 2, 3})
			})},
		{name: "ciphertext cut", password: testPassword, wantErr: "too short",
			data: editEnvelope(t, good, func(env map[string]any) { env["ciphertext"] = base64.StdEncoding.EncodeToString([]byte{1, 2}) })},
		{name: "ciphertext altered", password: testPassword, wantErr: "wrong password", wantWrong: true,
			data: editEnvelope(t, good, func(env map[string]any) {
				ct, _ := base64.StdEncoding.DecodeString(env["ciphertext"].(string))
				ct[len(ct)-1] ^= 1
				env["ciphertext"] = base64.StdEncoding.EncodeToString(ct)
			})},
		{name: "decrypts to garbage", password: testPassword, wantErr: "decrypted data is not a PKCS#8 key",
			data: pem.EncodeToMemory(&pem.Block{Type: pemSigstorePrivate, Bytes: notPKCS8})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePrivate(tt.data, []byte(tt.password))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParsePrivate error = %v, want it to contain %q", err, tt.wantErr)
			}
			if got := errors.Is(err, ErrWrongPassword); got != tt.wantWrong {
				t.Fatalf("errors.Is(%v, ErrWrongPassword) = %v, want %v", err, got, tt.wantWrong)
			}
		})
	}
}

func TestParsePrivateLegacyCosignType(t *testing.T) {
	t.Parallel()
	priv := testKey(t, ED25519)
	block, _ := pem.Decode(testKeyFile(t, ED25519))
	legacy := pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED COSIGN PRIVATE KEY", Bytes: block.Bytes})
	got, err := ParsePrivate(legacy, []byte(testPassword))
	if err != nil {
		t.Fatal(err)
	}
	if !got.(ed25519.PrivateKey).Equal(priv) {
		t.Fatal("legacy cosign key parsed to a different key")
	}
}

func TestParsePublic(t *testing.T) {
	t.Parallel()
	priv := testKey(t, ECDSAP256)
	pubPEM, err := MarshalPublic(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mtuf test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	certDER, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER})
	privPEM := testKeyFile(t, ECDSAP256)
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{name: "public key", data: pubPEM},
		{name: "public key after text", data: append([]byte("# root key\n"), pubPEM...)},
		{name: "certificate", data: certPEM},
		{name: "encrypted private key", data: privPEM, wantErr: "this is a private key (PEM \"ENCRYPTED SIGSTORE PRIVATE KEY\"), not a public key: pass the public key file (NAME.pub)"},
		{name: "empty", data: nil, wantErr: "empty key file"},
		{name: "not PEM", data: []byte("hello"), wantErr: "not a PEM-encoded key"},
		{name: "truncated", data: pubPEM[:len(pubPEM)-10], wantErr: "malformed or truncated PEM block"},
		{name: "corrupt DER", data: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 0x01}}), wantErr: "public key is corrupt"},
		{name: "corrupt certificate", data: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x01}}), wantErr: "certificate is corrupt"},
		{name: "other PEM type", data: pem.EncodeToMemory(&pem.Block{Type: "SSH2 PUBLIC KEY", Bytes: []byte{1}}), wantErr: `PEM block "SSH2 PUBLIC KEY" is not a public key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePublic(tt.data)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParsePublic error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !got.(*ecdsa.PublicKey).Equal(priv.Public()) {
				t.Fatal("parsed public key differs from the original")
			}
		})
	}
}

func TestParsePublicKeys(t *testing.T) {
	t.Parallel()
	var pubs []crypto.PublicKey
	var file []byte
	for range 3 {
		priv := testKey(t, ECDSAP256)
		pubPEM, err := MarshalPublic(priv.Public())
		if err != nil {
			t.Fatal(err)
		}
		pubs = append(pubs, priv.Public())
		file = append(append(file, "# node key\n"...), pubPEM...)
	}
	got, err := ParsePublicKeys(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(pubs) {
		t.Fatalf("%d keys, want every one of the file's %d", len(got), len(pubs))
	}
	for i := range pubs {
		if !Equal(got[i], pubs[i]) {
			t.Errorf("key %d differs from the file's block %d", i+1, i+1)
		}
	}

	// Each public key block is 4 lines, after a comment line: block 2
	// starts on line 7.
	blocks := bytes.SplitAfter(file, []byte("-----END PUBLIC KEY-----\n"))
	corrupt := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 0x01}})
	truncated := bytes.Replace(blocks[1], []byte("-----END PUBLIC KEY-----\n"), nil, 1)
	for _, tt := range []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"corrupt block", bytes.Join([][]byte{blocks[0], []byte("# node key\n"), corrupt, blocks[2]}, nil), "PEM block 2 (line 7): public key is corrupt"},
		{"truncated block", bytes.Join([][]byte{blocks[0], truncated, blocks[2]}, nil), "PEM block 2 (line 7) is malformed or truncated"},
		{"private key", bytes.Join([][]byte{blocks[0], testKeyFile(t, ECDSAP256)}, nil), "PEM block 2 (line 6): this is a private key"},
		{"trailing text", append(bytes.Clone(file), "junk\n"...), "data after PEM block 3 (line 12)"},
		{"empty", nil, "empty key file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := ParsePublicKeys(tt.data); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParsePublicKeys = %d keys, %v; want error %q", len(got), err, tt.wantErr)
			}
		})
	}
}
