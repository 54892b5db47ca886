//go:build cgo

// Package softhsmtest gives tests real PKCS#11 tokens: Debian's SoftHSM
// (package softhsm2), with its token store in a temporary directory so
// that a test neither sees nor changes the machine's tokens. A test on a
// machine without SoftHSM skips; under CI=true, where 'make test' has
// installed it, it fails instead.
//
// SoftHSM finds its store through the SOFTHSM2_CONF environment variable,
// which New sets for the test with t.Setenv: tests that use it cannot run
// in parallel. SoftHSM reads the variable when its module is initialized,
// so every PKCS#11 context a test opens must be closed by the end of the
// test (keys.ClosePKCS11), or the next test would still see this store.
package softhsmtest

import (
	"crypto"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ThalesIgnite/crypto11"

	"github.com/mtuf/mtuf/internal/testtool"
)

// The PINs of every test token. They are test material only.
const (
	PIN   = "test-pin-1234"
	SOPIN = "test-so-pin-5678"
)

// modules are where Debian (and other distributions) install SoftHSM's
// PKCS#11 module.
var modules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
	"/usr/lib64/pkcs11/libsofthsm2.so",
}

const installHint = "apt-get install softhsm2 (make test-deps installs it as root)"

// Module returns the path of SoftHSM's PKCS#11 module with symbolic links
// resolved, or ends the test: a skip, or a failure under CI=true.
func Module(t testing.TB) string {
	t.Helper()
	for _, m := range modules {
		if real, err := filepath.EvalSymlinks(m); err == nil {
			return real
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("SoftHSM's libsofthsm2.so not found in %s; CI must have it: %s", strings.Join(modules, ", "), installHint)
	}
	t.Skipf("SoftHSM's libsofthsm2.so not found (%s)", installHint)
	return ""
}

// HSM is a SoftHSM token store that exists for one test.
type HSM struct {
	// Module is the path of SoftHSM's PKCS#11 module.
	Module string
	// Conf is the SoftHSM configuration file that SOFTHSM2_CONF names.
	Conf string
	util string
}

// New creates an empty token store in a temporary directory and points
// SOFTHSM2_CONF at it for the rest of the test.
func New(t testing.TB) *HSM {
	t.Helper()
	h := &HSM{Module: Module(t), util: testtool.Find(t, "softhsm2-util", installHint)}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	h.Conf = filepath.Join(dir, "softhsm2.conf")
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", tokens)
	if err := os.WriteFile(h.Conf, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", h.Conf)
	return h
}

// Token is an initialized token of an HSM, with user PIN PIN.
type Token struct {
	HSM   *HSM
	Label string
	// Slot is the slot SoftHSM gave the token, its slot-id in a URI.
	Slot uint
}

var slotLine = regexp.MustCompile(`reassigned to slot (\d+)`)

// InitToken initializes a new token labelled label, with user PIN PIN and
// security officer PIN SOPIN.
func (h *HSM) InitToken(t testing.TB, label string) *Token {
	t.Helper()
	cmd := exec.Command(h.util, "--init-token", "--free", "--label", label, "--so-pin", SOPIN, "--pin", PIN)
	cmd.Env = append(os.Environ(), "SOFTHSM2_CONF="+h.Conf)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token --label %s: %v\n%s", label, err, out)
	}
	m := slotLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("softhsm2-util --init-token printed no slot number:\n%s", out)
	}
	slot, err := strconv.ParseUint(string(m[1]), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return &Token{HSM: h, Label: label, Slot: uint(slot)}
}

// Key is a key pair generated in a token.
type Key struct {
	Object string
	// ID is the key's CKA_ID.
	ID     []byte
	Public crypto.PublicKey
}

// GenerateECDSA generates an ECDSA key pair on curve in the token, with
// label object and a random CKA_ID.
func (tok *Token) GenerateECDSA(t testing.TB, object string, curve elliptic.Curve) *Key {
	t.Helper()
	return tok.generate(t, object, func(c *crypto11.Context, id []byte) (crypto11.Signer, error) {
		return c.GenerateECDSAKeyPairWithLabel(id, []byte(object), curve)
	})
}

// GenerateRSA generates an RSA key pair of bits bits in the token, with
// label object and a random CKA_ID.
func (tok *Token) GenerateRSA(t testing.TB, object string, bits int) *Key {
	t.Helper()
	return tok.generate(t, object, func(c *crypto11.Context, id []byte) (crypto11.Signer, error) {
		return c.GenerateRSAKeyPairWithLabel(id, []byte(object), bits)
	})
}

func (tok *Token) generate(t testing.TB, object string, gen func(*crypto11.Context, []byte) (crypto11.Signer, error)) *Key {
	t.Helper()
	c, err := crypto11.Configure(&crypto11.Config{Path: tok.HSM.Module, TokenLabel: tok.Label, Pin: PIN})
	if err != nil {
		t.Fatalf("opening token %s: %v", tok.Label, err)
	}
	defer func() {
		if err := c.Close(); err != nil {
			t.Errorf("closing token %s: %v", tok.Label, err)
		}
	}()
	id := make([]byte, 8)
	if _, err := rand.Read(id); err != nil {
		t.Fatal(err)
	}
	k, err := gen(c, id)
	if err != nil {
		t.Fatalf("generating key %s in token %s: %v", object, tok.Label, err)
	}
	return &Key{Object: object, ID: id, Public: k.Public()}
}

// URI returns the pkcs11: reference of the key labelled object in the
// token, naming the module explicitly and leaving the PIN out.
func (tok *Token) URI(object string) string {
	return fmt.Sprintf("pkcs11:token=%s;object=%s?module-path=%s", Escape(tok.Label), Escape(object), Escape(tok.HSM.Module))
}

// Escape percent-encodes s for a PKCS#11 URI attribute value: every byte
// but RFC 3986's unreserved characters and '/'.
func Escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
