//go:build cgo

package keys

import (
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ThalesIgnite/crypto11"
	"github.com/miekg/pkcs11"
)

// openTokens holds the PKCS#11 tokens this process has logged in to, one
// crypto11.Context per module and slot. A key found on a token signs only
// while its context is open, and a context per key would log in, and ask
// for the PIN, once per key: a ceremony that signs with two keys of one
// token asks once. The contexts stay open until ClosePKCS11; a CLI calls it
// before it exits, a long-running program or a test when it is done with
// hardware keys.
var openTokens = tokenSet{open: map[tokenKey]*tokenSession{}}

type tokenSet struct {
	mu   sync.Mutex
	open map[tokenKey]*tokenSession
}

type tokenKey struct {
	module string
	slot   uint
}

type tokenSession struct {
	ctx   *crypto11.Context
	label string
	// pinHash is the SHA-256 of the PIN that logged in. A token stays
	// logged in for the whole process, so a later, different PIN would be
	// accepted by the token without a check; it is compared here instead.
	pinHash [sha256.Size]byte
	closed  atomic.Bool
}

// ClosePKCS11 logs out of every PKCS#11 token that this process opened to
// load a key, and unloads their modules. Keys loaded from them stop
// signing; loading a key again opens its token again. A program that loads
// keys from pkcs11: references calls it once it is done signing.
func ClosePKCS11() error {
	return openTokens.closeAll()
}

func (s *tokenSet) closeAll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for k, t := range s.open {
		t.closed.Store(true)
		if err := t.ctx.Close(); err != nil {
			errs = append(errs, fmt.Errorf("closing PKCS#11 token %q of module %s: %w", t.label, k.module, err))
		}
		delete(s.open, k)
	}
	return errors.Join(errs...)
}

// pinSource says where the PIN of a token comes from: the URI's pin-value,
// then $MTUF_PKCS11_PIN, then prompt (nil where none is possible).
type pinSource struct {
	uri    *string
	getenv func(string) string
	prompt func(token string) (string, error)
}

func (p pinSource) given() (string, bool) {
	if p.uri != nil {
		return *p.uri, true
	}
	if v := p.getenv(PKCS11PINEnv); v != "" {
		return v, true
	}
	return "", false
}

func loadPrivatePKCS11(ref string, pw PasswordSource) (crypto.Signer, error) {
	getenv := pw.Env
	if getenv == nil {
		getenv = os.Getenv
	}
	k, err := loadPKCS11(ref, getenv, pw.pinPrompt)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", redactPIN(ref), err)
	}
	return k, nil
}

func loadPublicPKCS11(ref string) (crypto.PublicKey, error) {
	k, err := loadPKCS11(ref, os.Getenv, nil)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", redactPIN(ref), err)
	}
	return k.Public(), nil
}

// loadPKCS11 finds the key pair that ref names, logging in to its token
// unless this process already has.
func loadPKCS11(ref string, getenv func(string) string, prompt func(string) (string, error)) (*pkcs11Key, error) {
	u, err := parsePKCS11URI(ref)
	if err != nil {
		return nil, err
	}
	module, err := u.module(getenv)
	if err != nil {
		return nil, err
	}
	t, err := openTokens.session(module, u, pinSource{uri: u.pin, getenv: getenv, prompt: prompt})
	if err != nil {
		return nil, err
	}
	signer, err := t.find(u)
	if err != nil {
		return nil, err
	}
	k := &pkcs11Key{signer: signer, token: t, name: fmt.Sprintf("PKCS#11 key %s in token %q", u.describeKey(), t.label)}
	if err := checkPublic(signer.Public()); err != nil {
		return nil, fmt.Errorf("%s: %w", k.name, err)
	}
	return k, nil
}

// session returns the open token that u selects in module, logging in to
// it first if this process has not.
func (s *tokenSet) session(module string, u *pkcs11URI, pins pinSource) (*tokenSession, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	slot, label, err := findToken(module, u)
	if err != nil {
		return nil, err
	}
	key := tokenKey{module: module, slot: slot}
	pin, havePIN := pins.given()
	if t, ok := s.open[key]; ok {
		if havePIN && sha256.Sum256([]byte(pin)) != t.pinHash {
			return nil, fmt.Errorf("wrong PIN for PKCS#11 token %q: it differs from the PIN this process logged in with; give the token's user PIN in %s", label, PKCS11PINEnv)
		}
		return t, nil
	}
	if !havePIN {
		if pins.prompt == nil {
			return nil, fmt.Errorf("no PIN for PKCS#11 token %q: set %s or add pin-value to the URI's query", label, PKCS11PINEnv)
		}
		if pin, err = pins.prompt(label); err != nil {
			return nil, err
		}
	}
	if err := checkPIN(module, slot, label, pin); err != nil {
		return nil, err
	}
	n := int(slot)
	ctx, err := crypto11.Configure(&crypto11.Config{Path: module, SlotNumber: &n, Pin: pin})
	if err != nil {
		return nil, fmt.Errorf("opening PKCS#11 token %q: %w", label, pkcs11Cause(err))
	}
	t := &tokenSession{ctx: ctx, label: label, pinHash: sha256.Sum256([]byte(pin))}
	s.open[key] = t
	return t, nil
}

// withModule runs f with module loaded and initialized. PKCS#11 allows one
// initialization of a module per process: when a token of the module is
// already open, f shares that initialization and leaves it in place.
func withModule(module string, f func(*pkcs11.Ctx) error) error {
	p := pkcs11.New(module)
	if p == nil {
		return fmt.Errorf("cannot load PKCS#11 module %s: it is not a PKCS#11 library for this system", module)
	}
	defer p.Destroy()
	switch err := p.Initialize(); {
	case err == nil:
		defer p.Finalize()
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED)):
	default:
		return fmt.Errorf("initializing PKCS#11 module %s: %w (check the module's configuration, such as SOFTHSM2_CONF for SoftHSM)", module, err)
	}
	return f(p)
}

type tokenDesc struct {
	slot uint
	info pkcs11.TokenInfo
}

func (t tokenDesc) String() string {
	return fmt.Sprintf("%q (serial %s, slot-id %d)", trimP11(t.info.Label), trimP11(t.info.SerialNumber), t.slot)
}

// trimP11 removes the blank (or, from some modules, NUL) padding of a
// PKCS#11 text field.
func trimP11(s string) string {
	return strings.TrimRight(s, " \x00")
}

// findToken returns the slot and label of the one initialized token that
// u selects.
func findToken(module string, u *pkcs11URI) (uint, string, error) {
	var tokens []tokenDesc
	err := withModule(module, func(p *pkcs11.Ctx) error {
		slots, err := p.GetSlotList(true)
		if err != nil {
			return fmt.Errorf("listing the tokens of PKCS#11 module %s: %w", module, err)
		}
		for _, slot := range slots {
			info, err := p.GetTokenInfo(slot)
			if err != nil {
				return fmt.Errorf("reading the token in slot %d of PKCS#11 module %s: %w", slot, module, err)
			}
			if info.Flags&pkcs11.CKF_TOKEN_INITIALIZED != 0 {
				tokens = append(tokens, tokenDesc{slot: slot, info: info})
			}
		}
		return nil
	})
	if err != nil {
		return 0, "", err
	}
	var match []tokenDesc
	for _, t := range tokens {
		if u.selects(t) {
			match = append(match, t)
		}
	}
	switch {
	case len(match) == 1:
		return match[0].slot, trimP11(match[0].info.Label), nil
	case len(tokens) == 0:
		return 0, "", fmt.Errorf("PKCS#11 module %s has no initialized token: initialize one (softhsm2-util --init-token for SoftHSM, or the HSM's own tools)", module)
	case len(match) == 0:
		return 0, "", fmt.Errorf("no PKCS#11 token with %s in module %s (its tokens: %s): correct the URI's token attributes", u.describeToken(), module, listTokens(tokens))
	default:
		return 0, "", fmt.Errorf("%d PKCS#11 tokens match %s in module %s (%s): add token= or serial= to pick one", len(match), u.describeToken(), module, listTokens(match))
	}
}

func listTokens(tokens []tokenDesc) string {
	s := make([]string, len(tokens))
	for i, t := range tokens {
		s[i] = t.String()
	}
	return strings.Join(s, ", ")
}

// selects tells whether the token t has every token attribute of u.
func (u *pkcs11URI) selects(t tokenDesc) bool {
	fields := map[string]string{
		"token":        t.info.Label,
		"serial":       t.info.SerialNumber,
		"manufacturer": t.info.ManufacturerID,
		"model":        t.info.Model,
	}
	for a, want := range u.tokenAttrs {
		if trimP11(fields[a]) != want {
			return false
		}
	}
	return u.slotID == nil || *u.slotID == t.slot
}

// checkPIN logs in to the token and out again, so that a wrong PIN is
// reported as such before crypto11 sees it: on a failed login crypto11
// finalizes the module, even while other tokens of this process use it.
func checkPIN(module string, slot uint, label, pin string) error {
	return withModule(module, func(p *pkcs11.Ctx) error {
		sh, err := p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION)
		if err != nil {
			return fmt.Errorf("opening a session on PKCS#11 token %q: %w", label, err)
		}
		defer p.CloseSession(sh)
		switch err := p.Login(sh, pkcs11.CKU_USER, pin); {
		case err == nil:
			return p.Logout(sh)
		case errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_ALREADY_LOGGED_IN)):
			// Another part of this process holds the login; leave it.
			return nil
		default:
			return loginError(label, err)
		}
	})
}

func loginError(label string, err error) error {
	switch {
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_INCORRECT)):
		return fmt.Errorf("wrong PIN for PKCS#11 token %q: give the token's user PIN in %s; each wrong PIN counts towards locking the token (%w)", label, PKCS11PINEnv, err)
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LEN_RANGE)):
		return fmt.Errorf("PKCS#11 token %q does not accept a PIN of that length: give the token's user PIN in %s (%w)", label, PKCS11PINEnv, err)
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_LOCKED)):
		return fmt.Errorf("the user PIN of PKCS#11 token %q is locked after too many wrong PINs: have the security officer set a new one (pkcs11-tool --init-pin --login --login-type so) (%w)", label, err)
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_PIN_EXPIRED)):
		return fmt.Errorf("the user PIN of PKCS#11 token %q has expired: set a new one with the token's tools (%w)", label, err)
	case errors.Is(err, pkcs11.Error(pkcs11.CKR_USER_PIN_NOT_INITIALIZED)):
		return fmt.Errorf("PKCS#11 token %q has no user PIN: have the security officer set one (pkcs11-tool --init-pin) (%w)", label, err)
	default:
		return fmt.Errorf("logging in to PKCS#11 token %q: %w", label, err)
	}
}

// pkcs11Cause makes the PKCS#11 error inside crypto11's wrapping, which
// predates errors.Unwrap, reachable with errors.Is and errors.As.
func pkcs11Cause(err error) error {
	for c := err; c != nil; {
		if p, ok := c.(pkcs11.Error); ok {
			if c == err {
				return err
			}
			return &causeError{msg: err.Error(), cause: p}
		}
		next, ok := c.(interface{ Cause() error })
		if !ok {
			break
		}
		c = next.Cause()
	}
	return err
}

type causeError struct {
	msg   string
	cause error
}

func (e *causeError) Error() string { return e.msg }
func (e *causeError) Unwrap() error { return e.cause }

// find returns the one key pair of the token that u selects.
func (t *tokenSession) find(u *pkcs11URI) (crypto11.Signer, error) {
	var label []byte
	if u.object != nil {
		label = []byte(*u.object)
	}
	found, err := t.ctx.FindKeyPairs(u.id, label)
	if err != nil {
		return nil, fmt.Errorf("searching PKCS#11 token %q for %s: %w", t.label, u.describeKey(), pkcs11Cause(err))
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		return nil, fmt.Errorf("no key pair with %s in PKCS#11 token %q (%s): correct object= or id=", u.describeKey(), t.label, t.inventory(nil))
	default:
		return nil, fmt.Errorf("%d key pairs match %s in PKCS#11 token %q (%s): add id= to pick one", len(found), u.describeKey(), t.label, t.inventory(found))
	}
}

// maxListed bounds the key pairs a message lists: an HSM may hold
// thousands.
const maxListed = 20

// inventory describes key pairs of the token (all of them when keys is
// nil) for a message that must help pick the right one.
func (t *tokenSession) inventory(keys []crypto11.Signer) string {
	if keys == nil {
		all, err := t.ctx.FindAllKeyPairs()
		if err != nil {
			return fmt.Sprintf("its key pairs could not be listed: %v", pkcs11Cause(err))
		}
		if len(all) == 0 {
			return "the token holds no key pair"
		}
		keys = all
	}
	var names []string
	for _, k := range keys {
		attrs, err := t.ctx.GetAttributes(k, []crypto11.AttributeType{crypto11.CkaLabel, crypto11.CkaId})
		if err != nil {
			names = append(names, "?")
			continue
		}
		var label, id []byte
		if a := attrs[crypto11.CkaLabel]; a != nil {
			label = a.Value
		}
		if a := attrs[crypto11.CkaId]; a != nil {
			id = a.Value
		}
		names = append(names, fmt.Sprintf("object=%q id=%s", label, pctEncode(id)))
	}
	sort.Strings(names)
	if len(names) > maxListed {
		names = append(names[:maxListed], fmt.Sprintf("and %d more", len(names)-maxListed))
	}
	return "key pairs in the token: " + strings.Join(names, ", ")
}

// pkcs11Key is a key pair held by a PKCS#11 token. It signs only while the
// token is open (until ClosePKCS11).
type pkcs11Key struct {
	signer crypto11.Signer
	token  *tokenSession
	name   string
}

func (k *pkcs11Key) Public() crypto.PublicKey {
	return k.signer.Public()
}

// Sign signs digest in the token. The token draws its own randomness, so
// rand is not used.
func (k *pkcs11Key) Sign(rand io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	if k.token.closed.Load() {
		return nil, fmt.Errorf("%s: its token was closed (keys.ClosePKCS11); load the key again", k.name)
	}
	sig, err := k.signer.Sign(rand, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("signing with %s: %w", k.name, pkcs11Cause(err))
	}
	return sig, nil
}
