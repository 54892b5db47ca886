//go:build cgo && linux

package keys

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	tufmeta "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/internal/softhsmtest"
)

// pinEnv is a PasswordSource environment that holds only a PKCS#11 PIN.
func pinEnv(pin string) PasswordSource {
	return PasswordSource{Env: func(k string) string {
		if k == PKCS11PINEnv {
			return pin
		}
		return ""
	}}
}

// newTestHSM is a SoftHSM store for one test; the tokens the keys package
// opens in it are closed when the test ends.
func newTestHSM(t *testing.T) *softhsmtest.HSM {
	t.Helper()
	h := softhsmtest.New(t)
	t.Cleanup(func() {
		if err := ClosePKCS11(); err != nil {
			t.Errorf("ClosePKCS11: %v", err)
		}
	})
	return h
}

// signRoot signs a root that lists priv's key with it, checks that go-tuf
// accepts the signature, and returns the key ID the signature carries.
func signRoot(t *testing.T, priv crypto.Signer) string {
	t.Helper()
	s, err := Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	key, err := TUFKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	root := tufmeta.Root(time.Now().Add(time.Hour))
	if err := root.Signed.AddKey(key, tufmeta.ROOT); err != nil {
		t.Fatal(err)
	}
	sig, err := root.Sign(s)
	if err != nil {
		t.Fatalf("signing root: %v", err)
	}
	if err := root.VerifyDelegate(tufmeta.ROOT, root); err != nil {
		t.Fatalf("go-tuf refuses the root signed in the token: %v", err)
	}
	// A signature over other bytes must not verify: the check above is
	// a real one.
	root.Signed.Version++
	if err := root.VerifyDelegate(tufmeta.ROOT, root); err == nil {
		t.Fatal("a signature still verifies after the signed root changed")
	}
	return sig.KeyID
}

func TestPKCS11SignTUF(t *testing.T) {
	h := newTestHSM(t)
	tok := h.InitToken(t, "mtuf-test")
	generated := map[string]*softhsmtest.Key{
		"ecdsa-p256": tok.GenerateECDSA(t, "root-hsm", elliptic.P256()),
		"rsa-2048":   tok.GenerateRSA(t, "rsa-hsm", 2048),
	}
	for name, gen := range generated {
		t.Run(name, func(t *testing.T) {
			priv, err := LoadPrivate(context.Background(), tok.URI(gen.Object), pinEnv(softhsmtest.PIN))
			if err != nil {
				t.Fatal(err)
			}
			if !Equal(priv.Public(), gen.Public) {
				t.Fatal("the loaded key's public key is not the one generated in the token")
			}
			switch priv.Public().(type) {
			case *ecdsa.PublicKey, *rsa.PublicKey:
			default:
				t.Fatalf("public key is %T", priv.Public())
			}
			want, err := KeyID(gen.Public)
			if err != nil {
				t.Fatal(err)
			}
			if got := signRoot(t, priv); got != want {
				t.Fatalf("signature key ID %s, want %s (the generated public key's)", got, want)
			}

			// LoadPublic, as 'mtuf keys id' calls it, finds the same key
			// with the PIN from the environment.
			t.Setenv(PKCS11PINEnv, softhsmtest.PIN)
			pub, err := LoadPublic(tok.URI(gen.Object))
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := KeyID(pub); got != want {
				t.Fatalf("LoadPublic key ID %s, want %s", got, want)
			}
		})
	}
}

// TestPKCS11References loads one key through every way a URI can name it.
func TestPKCS11References(t *testing.T) {
	h := newTestHSM(t)
	tok := h.InitToken(t, "ceremony token")
	other := h.InitToken(t, "other")
	gen := tok.GenerateECDSA(t, "root key/1", elliptic.P256())
	other.GenerateECDSA(t, "root key/1", elliptic.P256()) // same label, other token
	module := softhsmtest.Escape(h.Module)
	id := pctEncode(gen.ID)
	tests := []struct {
		name string
		ref  string
		env  map[string]string
	}{
		{"token and object", tok.URI(gen.Object), nil},
		{"id only", "pkcs11:token=ceremony%20token;id=" + id + "?module-path=" + module, nil},
		{"object and id", "pkcs11:token=ceremony%20token;object=root%20key%2F1;id=" + id + ";type=private?module-path=" + module, nil},
		{"slot-id", "pkcs11:slot-id=" + strconv.FormatUint(uint64(tok.Slot), 10) + ";object=root%20key%2F1?module-path=" + module, nil},
		{"model and manufacturer as p11tool prints them", "pkcs11:model=SoftHSM%20v2;manufacturer=SoftHSM%20project;token=ceremony%20token;object=root%20key%2F1?module-path=" + module, nil},
		{"upper-case scheme, vendor attribute", "PKCS11:token=ceremony%20token;object=root%20key%2F1;x-vendor=1?module-path=" + module, nil},
		{"pin-value in the query", "pkcs11:token=ceremony%20token;object=root%20key%2F1?pin-value=" + softhsmtest.PIN + "&module-path=" + module, map[string]string{PKCS11PINEnv: ""}},
		{"module from the environment", "pkcs11:token=ceremony%20token;object=root%20key%2F1", map[string]string{PKCS11ModuleEnv: h.Module}},
		{"default module", "pkcs11:token=ceremony%20token;object=root%20key%2F1", map[string]string{PKCS11ModuleEnv: ""}},
	}
	want, err := KeyID(gen.Public)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{PKCS11PINEnv: softhsmtest.PIN}
			for k, v := range tt.env {
				env[k] = v
			}
			pw := PasswordSource{Env: func(k string) string { return env[k] }}
			priv, err := LoadPrivate(context.Background(), tt.ref, pw)
			if err != nil {
				t.Fatal(err)
			}
			if got := signRoot(t, priv); got != want {
				t.Fatalf("signed with key %s, want the ceremony token's %s", got, want)
			}
		})
	}
}

// TestPKCS11Refused checks that every reference a user can get wrong is
// refused with a message that names the token or key and says what to do,
// and that no message shows a PIN.
func TestPKCS11Refused(t *testing.T) {
	h := newTestHSM(t)
	tok := h.InitToken(t, "mtuf-test")
	second := h.InitToken(t, "second")
	tok.GenerateECDSA(t, "root-hsm", elliptic.P256())
	tok.GenerateECDSA(t, "twin", elliptic.P256())
	tok.GenerateECDSA(t, "twin", elliptic.P256())
	tok.GenerateECDSA(t, "p384", elliptic.P384())
	second.GenerateECDSA(t, "root-hsm", elliptic.P256())
	module := softhsmtest.Escape(h.Module)
	const wrongPIN = "wrong-pin-0000"
	tests := []struct {
		name   string
		ref    string
		pin    string // $MTUF_PKCS11_PIN; the right PIN when empty
		public bool   // through LoadPublic, which cannot prompt, with no PIN
		want   []string
	}{
		{name: "wrong PIN", ref: tok.URI("root-hsm"), pin: wrongPIN,
			want: []string{`wrong PIN for PKCS#11 token "mtuf-test"`, PKCS11PINEnv, "CKR_PIN_INCORRECT"}},
		{name: "wrong pin-value", ref: tok.URI("root-hsm") + "&pin-value=" + wrongPIN,
			want: []string{`wrong PIN for PKCS#11 token "mtuf-test"`, "pin-value=***"}},
		{name: "no such token", ref: "pkcs11:token=nosuch;object=root-hsm?module-path=" + module,
			want: []string{`no PKCS#11 token with token="nosuch"`, `"mtuf-test" (serial`, `"second" (serial`, "correct the URI's token attributes"}},
		{name: "no such slot", ref: "pkcs11:slot-id=4242;object=root-hsm?module-path=" + module,
			want: []string{"no PKCS#11 token with slot-id=4242", `"mtuf-test"`}},
		{name: "token not given, two tokens", ref: "pkcs11:object=root-hsm?module-path=" + module,
			want: []string{"2 PKCS#11 tokens match any token", "add token= or serial="}},
		{name: "no such object", ref: tok.URI("nosuch"),
			want: []string{`no key pair with object="nosuch" in PKCS#11 token "mtuf-test"`, `object="root-hsm" id=%`, "correct object= or id="}},
		{name: "no such id", ref: "pkcs11:token=mtuf-test;id=%00%01?module-path=" + module,
			want: []string{`no key pair with id=%00%01 in PKCS#11 token "mtuf-test"`}},
		{name: "two keys with one label", ref: tok.URI("twin"),
			want: []string{`2 key pairs match object="twin" in PKCS#11 token "mtuf-test"`, "add id= to pick one"}},
		{name: "unsupported curve", ref: tok.URI("p384"),
			want: []string{`PKCS#11 key object="p384" in token "mtuf-test"`, "curve P-384 is not supported"}},
		{name: "module missing", ref: "pkcs11:token=mtuf-test;object=root-hsm?module-path=/nonexistent/libpkcs11.so",
			want: []string{"PKCS#11 module /nonexistent/libpkcs11.so (from module-path) does not exist", "install the module or correct the path"}},
		{name: "module not a library", ref: "pkcs11:token=mtuf-test;object=root-hsm?module-path=" + softhsmtest.Escape(h.Conf),
			want: []string{"cannot load PKCS#11 module " + h.Conf}},
		{name: "no PIN for a public key", ref: tok.URI("root-hsm"), public: true,
			want: []string{`no PIN for PKCS#11 token "mtuf-test"`, "set " + PKCS11PINEnv}},
		{name: "unknown attribute", ref: "pkcs11:token=mtuf-test;objct=root-hsm",
			want: []string{`unknown attribute "objct"`}},
		{name: "no key named", ref: "pkcs11:token=mtuf-test",
			want: []string{"names no key: add object=LABEL or id=ID"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case starts from a process that has opened no token.
			if err := ClosePKCS11(); err != nil {
				t.Fatal(err)
			}
			var err error
			pin := tt.pin
			if pin == "" {
				pin = softhsmtest.PIN
			}
			if tt.public {
				t.Setenv(PKCS11PINEnv, "")
				_, err = LoadPublic(tt.ref)
			} else {
				// Stdin is not a terminal under go test, and no
				// controlling terminal is reachable, so nothing prompts.
				pw := pinEnv(pin)
				pw.tty = "/nonexistent-tty"
				_, err = LoadPrivate(context.Background(), tt.ref, pw)
			}
			if err == nil {
				t.Fatalf("%s was accepted", tt.ref)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), wrongPIN) || strings.Contains(err.Error(), softhsmtest.PIN) {
				t.Errorf("error %q shows a PIN", err)
			}
		})
	}
}

// TestPKCS11PINOncePerToken checks the session cache: a second key of an
// open token needs no PIN, but a different PIN is still refused, and
// keys stop signing once their token is closed.
func TestPKCS11PINOncePerToken(t *testing.T) {
	h := newTestHSM(t)
	tok := h.InitToken(t, "mtuf-test")
	tok.GenerateECDSA(t, "a", elliptic.P256())
	tok.GenerateECDSA(t, "b", elliptic.P256())
	ctx := context.Background()

	noPIN := PasswordSource{Env: func(string) string { return "" }, tty: "/nonexistent-tty"}
	if _, err := LoadPrivate(ctx, tok.URI("a"), noPIN); err == nil || !strings.Contains(err.Error(), `no PIN for PKCS#11 token "mtuf-test": set `+PKCS11PINEnv) {
		t.Fatalf("load without any PIN: error = %v, want a request for the PIN", err)
	}
	a, err := LoadPrivate(ctx, tok.URI("a"), pinEnv(softhsmtest.PIN))
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadPrivate(ctx, tok.URI("b"), noPIN)
	if err != nil {
		t.Fatalf("second key of a logged-in token: %v", err)
	}
	if _, err := LoadPrivate(ctx, tok.URI("b"), pinEnv("wrong-pin-0000")); err == nil || !strings.Contains(err.Error(), `wrong PIN for PKCS#11 token "mtuf-test"`) {
		t.Fatalf("wrong PIN for a logged-in token: error = %v, want a refusal", err)
	}
	for _, k := range []crypto.Signer{a, b} {
		signRoot(t, k)
	}

	if err := ClosePKCS11(); err != nil {
		t.Fatal(err)
	}
	s, err := Signer(a)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignMessage(bytes.NewReader([]byte("data"))); err == nil || !strings.Contains(err.Error(), "its token was closed") {
		t.Fatalf("signing after ClosePKCS11: error = %v, want a refusal", err)
	}
	again, err := LoadPrivate(ctx, tok.URI("a"), pinEnv(softhsmtest.PIN))
	if err != nil {
		t.Fatalf("loading again after ClosePKCS11: %v", err)
	}
	signRoot(t, again)
}

// TestPKCS11PINPrompt types the PIN on a terminal when neither the URI
// nor the environment has it.
func TestPKCS11PINPrompt(t *testing.T) {
	h := newTestHSM(t)
	tok := h.InitToken(t, "mtuf-test")
	tok.GenerateECDSA(t, "root-hsm", elliptic.P256())
	for _, tt := range []struct {
		typed, wantErr string
	}{
		{typed: "wrong-pin-0000\n", wantErr: `wrong PIN for PKCS#11 token "mtuf-test"`},
		{typed: softhsmtest.PIN + "\n"},
	} {
		master, slave := openPTY(t)
		var prompt bytes.Buffer
		pw := PasswordSource{Env: func(string) string { return "" }, Stdin: slave, Prompt: &prompt}
		if _, err := master.WriteString(tt.typed); err != nil {
			t.Fatal(err)
		}
		priv, err := LoadPrivate(context.Background(), tok.URI("root-hsm"), pw)
		if want := "Enter PIN for PKCS#11 token \"mtuf-test\": \n"; prompt.String() != want {
			t.Errorf("prompt = %q, want %q", prompt.String(), want)
		}
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("PIN typed %q: error = %v, want it to contain %q", tt.typed, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		signRoot(t, priv)
	}
}

// TestPKCS11ConcurrentSign signs from several goroutines with one token
// key, as a publish that signs several roles at once does.
func TestPKCS11ConcurrentSign(t *testing.T) {
	h := newTestHSM(t)
	tok := h.InitToken(t, "mtuf-test")
	gen := tok.GenerateECDSA(t, "online", elliptic.P256())
	priv, err := LoadPrivate(context.Background(), tok.URI(gen.Object), pinEnv(softhsmtest.PIN))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	v, err := signature.LoadECDSAVerifier(gen.Public.(*ecdsa.PublicKey), crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := []byte{byte(i), 'm', 's', 'g'}
			sig, err := s.SignMessage(bytes.NewReader(msg))
			if err == nil {
				err = v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg))
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

func TestPKCS11ParseURI(t *testing.T) {
	tests := []struct {
		ref     string
		wantErr string
		check   func(t *testing.T, u *pkcs11URI)
	}{
		{ref: "pkcs11:token=a%20b;object=k;id=%01%ff;slot-id=7?pin-value=12%2634&module-path=/m.so", check: func(t *testing.T, u *pkcs11URI) {
			if u.tokenAttrs["token"] != "a b" || *u.object != "k" || !bytes.Equal(u.id, []byte{1, 0xff}) || *u.slotID != 7 || *u.pin != "12&34" || u.modulePath != "/m.so" {
				t.Fatalf("parsed %+v", u)
			}
		}},
		{ref: "pkcs11:object=k;pin-value=1234", check: func(t *testing.T, u *pkcs11URI) {
			if *u.pin != "1234" || len(u.tokenAttrs) != 0 {
				t.Fatalf("parsed %+v", u)
			}
		}},
		{ref: "pkcs11:object=k;library-manufacturer=x;x-foo=y;", check: func(t *testing.T, u *pkcs11URI) {
			if *u.object != "k" {
				t.Fatalf("parsed %+v", u)
			}
		}},
		{ref: "pkcs11:token=t", wantErr: "names no key"},
		{ref: "pkcs11:token=t;object=k;object=j", wantErr: "attribute object is given twice"},
		{ref: "pkcs11:object=k;pin-value=1?pin-value=2", wantErr: "attribute pin-value is given twice"},
		{ref: "pkcs11:object=k;slot-id=x1", wantErr: "slot-id=x1 is not a decimal slot number"},
		{ref: "pkcs11:object=%zz", wantErr: "object=%zz: invalid percent-encoding"},
		{ref: "pkcs11:object=k;type=cert", wantErr: "type=cert: a key reference names a key pair"},
		{ref: "pkcs11:object=k;id=", wantErr: "attribute id is empty"},
		{ref: "pkcs11:object=k;token", wantErr: `attribute "token" has no value`},
		{ref: "pkcs11:object=k;module-path=/m.so", wantErr: "module-path belongs in the query"},
		{ref: "pkcs11:token=t?object=k", wantErr: "object belongs in the path"},
		{ref: "pkcs11:object=k?module-name=softhsm2", wantErr: "module-name is not supported: give the module's file with module-path="},
		{ref: "pkcs11:object=k?pin-source=file:/pin", wantErr: "pin-source is not supported: set " + PKCS11PINEnv},
		{ref: "pkcs11:object=k?module-path=", wantErr: "module-path is empty"},
		{ref: "pkcs11:objekt=k", wantErr: `unknown attribute "objekt"`},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			u, err := parsePKCS11URI(tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, u)
		})
	}
	if got := redactPIN("pkcs11:object=k;pin-value=1234?PIN-VALUE=5678&module-path=/m.so"); got != "pkcs11:object=k;pin-value=***?PIN-VALUE=***&module-path=/m.so" {
		t.Errorf("redactPIN = %s", got)
	}
}
