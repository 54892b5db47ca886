package keys

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Keys held in hardware are named by PKCS#11 URIs (RFC 7512), such as
//
//	pkcs11:token=ceremony;object=root-1
//	pkcs11:token=ceremony;id=%01%a2?module-path=/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so
//
// The path attributes token, serial, manufacturer, model and slot-id pick
// the token (a token URI as p11tool --list-tokens prints it works, with
// ";object=..." added); object (the key's label) and id (its CKA_ID,
// percent-encoded) pick the key pair in it. The query attribute module-path names the PKCS#11 module; without it,
// $MTUF_PKCS11_MODULE, then SoftHSM's module at the usual Debian paths. The
// PIN is the URI's pin-value, else $MTUF_PKCS11_PIN, else (for a private
// key) a prompt on the terminal. A pin-value lands in shell history and in
// every file that records the reference, so the environment is the better
// place for it. ECDSA P-256 and RSA (2048 bits or more) keys sign TUF
// metadata; the token signs, the private key never leaves it.
const (
	// PKCS11PINEnv holds the user PIN of PKCS#11 tokens for unattended use.
	PKCS11PINEnv = "MTUF_PKCS11_PIN"
	// PKCS11ModuleEnv names the PKCS#11 module used when a key reference
	// has no module-path.
	PKCS11ModuleEnv = "MTUF_PKCS11_MODULE"
)

// softHSMModules are the places where distributions install SoftHSM's
// module, the default when nothing names one: Debian's /usr/lib/softhsm
// link first, then its multiarch directories, then other layouts.
func softHSMModules() []string {
	out := []string{"/usr/lib/softhsm/libsofthsm2.so"}
	multiarch, _ := filepath.Glob("/usr/lib/*-linux-gnu*/softhsm/libsofthsm2.so")
	sort.Strings(multiarch)
	out = append(out, multiarch...)
	return append(out, "/usr/local/lib/softhsm/libsofthsm2.so", "/usr/lib64/pkcs11/libsofthsm2.so", "/usr/lib/pkcs11/libsofthsm2.so")
}

// pkcs11URI is a parsed pkcs11: key reference.
type pkcs11URI struct {
	// tokenAttrs are the token attributes given (token, serial,
	// manufacturer, model), by their URI names.
	tokenAttrs map[string]string
	slotID     *uint
	object     *string
	id         []byte // nil when not given
	pin        *string
	modulePath string
}

// Attributes as RFC 7512 names them. Vendor attributes (x-...) and the
// library-* attributes, which describe the module rather than pick a key,
// are accepted and ignored.
var (
	pkcs11TokenAttrs = []string{"token", "serial", "manufacturer", "model"}
	pkcs11PathAttrs  = []string{"token", "serial", "manufacturer", "model", "slot-id", "object", "id", "type", "pin-value"}
	pkcs11QueryAttrs = []string{"pin-value", "module-path"}
)

var pinValue = regexp.MustCompile(`(?i)(pin-value=)[^;&?]*`)

// redactPIN hides the value of a pin-value attribute in ref.
func redactPIN(ref string) string {
	return pinValue.ReplaceAllString(ref, "${1}***")
}

// parsePKCS11URI parses a pkcs11: key reference. It refuses what it does
// not understand rather than ignore it: a misspelt attribute would
// otherwise widen the search to some other key.
func parsePKCS11URI(ref string) (*pkcs11URI, error) {
	u := &pkcs11URI{tokenAttrs: map[string]string{}}
	rest, ok := cutPrefixFold(ref, "pkcs11:")
	if !ok {
		return nil, errors.New("not a pkcs11: URI")
	}
	path, query, _ := strings.Cut(rest, "?")
	if err := u.parseAttrs(path, ";", pkcs11PathAttrs); err != nil {
		return nil, err
	}
	if err := u.parseAttrs(query, "&", pkcs11QueryAttrs); err != nil {
		return nil, err
	}
	if u.object == nil && u.id == nil {
		return nil, errors.New("the URI names no key: add object=LABEL or id=ID (the key's CKA_ID, percent-encoded)")
	}
	return u, nil
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return s, false
	}
	return s[len(prefix):], true
}

func (u *pkcs11URI) parseAttrs(s, sep string, allowed []string) error {
	part := "path"
	if sep == "&" {
		part = "query"
	}
	seen := map[string]bool{}
	for _, attr := range strings.Split(s, sep) {
		if attr == "" {
			continue
		}
		name, raw, ok := strings.Cut(attr, "=")
		if !ok {
			return fmt.Errorf("attribute %q has no value: write NAME=VALUE", redactPIN(attr))
		}
		name = strings.ToLower(name)
		if strings.HasPrefix(name, "x-") || strings.HasPrefix(name, "library-") {
			continue
		}
		if !slices.Contains(allowed, name) {
			return unknownPKCS11Attr(part, name)
		}
		if seen[name] || (name == "pin-value" && u.pin != nil) {
			return fmt.Errorf("attribute %s is given twice", name)
		}
		seen[name] = true
		value, err := url.PathUnescape(raw)
		if err != nil {
			if name == "pin-value" {
				return errors.New("attribute pin-value has an invalid percent-encoding")
			}
			return fmt.Errorf("attribute %s=%s: invalid percent-encoding", name, raw)
		}
		switch name {
		case "object":
			u.object = &value
		case "id":
			if value == "" {
				return errors.New("attribute id is empty: give the key's CKA_ID, percent-encoded (id=%01)")
			}
			u.id = []byte(value)
		case "slot-id":
			n, err := strconv.ParseUint(value, 10, 64)
			if err != nil {
				return fmt.Errorf("attribute slot-id=%s is not a decimal slot number", raw)
			}
			slot := uint(n)
			u.slotID = &slot
		case "type":
			if value != "private" && value != "public" {
				return fmt.Errorf("type=%s: a key reference names a key pair (type=private or type=public)", value)
			}
		case "pin-value":
			u.pin = &value
		case "module-path":
			if value == "" {
				return errors.New("attribute module-path is empty: give the path of the PKCS#11 module")
			}
			u.modulePath = value
		default:
			u.tokenAttrs[name] = value
		}
	}
	return nil
}

func unknownPKCS11Attr(part, name string) error {
	switch name {
	case "module-name":
		return errors.New("module-name is not supported: give the module's file with module-path=/path/to/module.so")
	case "pin-source":
		return fmt.Errorf("pin-source is not supported: set %s or give pin-value", PKCS11PINEnv)
	case "pin-value", "module-path", "token", "serial", "manufacturer", "model", "slot-id", "object", "id", "type":
		if part == "path" {
			return fmt.Errorf("attribute %s belongs in the query, after '?' (pkcs11:token=T;object=K?%s=...)", name, name)
		}
		return fmt.Errorf("attribute %s belongs in the path, before '?' (pkcs11:token=T;object=K)", name)
	}
	return fmt.Errorf("unknown attribute %q: use token, serial, manufacturer, model, slot-id, object, id, type, and in the query pin-value, module-path", name)
}

// describeKey names the key that u selects, for messages.
func (u *pkcs11URI) describeKey() string {
	var parts []string
	if u.object != nil {
		parts = append(parts, fmt.Sprintf("object=%q", *u.object))
	}
	if u.id != nil {
		parts = append(parts, "id="+pctEncode(u.id))
	}
	return strings.Join(parts, " ")
}

// describeToken names the token that u selects, for messages.
func (u *pkcs11URI) describeToken() string {
	var parts []string
	for _, a := range pkcs11TokenAttrs {
		if v, ok := u.tokenAttrs[a]; ok {
			parts = append(parts, fmt.Sprintf("%s=%q", a, v))
		}
	}
	if u.slotID != nil {
		parts = append(parts, fmt.Sprintf("slot-id=%d", *u.slotID))
	}
	if len(parts) == 0 {
		return "any token"
	}
	return strings.Join(parts, " ")
}

// pctEncode writes b as a URI attribute value in which every byte is
// percent-encoded, as RFC 7512 recommends for id.
func pctEncode(b []byte) string {
	var sb strings.Builder
	for _, c := range b {
		fmt.Fprintf(&sb, "%%%02x", c)
	}
	return sb.String()
}

// module returns the PKCS#11 module for u, with symbolic links resolved so
// that one module loaded under two names is still known as one.
func (u *pkcs11URI) module(getenv func(string) string) (string, error) {
	path, from := u.modulePath, "module-path"
	if path == "" {
		path, from = getenv(PKCS11ModuleEnv), "$"+PKCS11ModuleEnv
	}
	if path == "" {
		candidates := softHSMModules()
		for _, c := range candidates {
			if real, err := filepath.EvalSymlinks(c); err == nil {
				return real, nil
			}
		}
		return "", fmt.Errorf("no PKCS#11 module: give module-path=/path/to/module.so in the URI's query or set %s (SoftHSM's module was not found at %s; on Debian: apt-get install softhsm2)", PKCS11ModuleEnv, strings.Join(candidates, ", "))
	}
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("PKCS#11 module %s (from %s) does not exist: install the module or correct the path", path, from)
		}
		return "", fmt.Errorf("PKCS#11 module %s (from %s): %w", path, from, err)
	}
	if fi, err := os.Stat(real); err != nil {
		return "", fmt.Errorf("PKCS#11 module %s (from %s): %w", path, from, err)
	} else if fi.IsDir() {
		return "", fmt.Errorf("PKCS#11 module %s (from %s) is a directory: give the module's .so file", path, from)
	}
	return real, nil
}

// pinPrompt asks for the PIN of a PKCS#11 token on the terminal.
func (p PasswordSource) pinPrompt(token string) (string, error) {
	in, out, done, err := p.terminal()
	if err != nil {
		return "", fmt.Errorf("no PIN for PKCS#11 token %q: set %s, add pin-value to the URI's query, or run on a terminal", token, PKCS11PINEnv)
	}
	defer done()
	pin, err := readPassword(in, out, fmt.Sprintf("Enter PIN for PKCS#11 token %q: ", token))
	if err != nil {
		return "", err
	}
	return string(pin), nil
}
