package keys

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/mtuf/mtuf/internal/safefile"
)

// WriteKeyPair writes priv, encrypted with password, to NAME.key (mode 0600)
// and its public key to NAME.pub. It never overwrites an existing file: a
// key file that is replaced by mistake loses a key for good. Each file is
// written to a temporary file in the same directory and then moved into
// place, so a failure leaves neither a partial file nor half of a pair.
func WriteKeyPair(name string, priv crypto.Signer, password []byte) error {
	if name == "" {
		return errors.New("no key name given: want a path such as keys/root (writes keys/root.key and keys/root.pub)")
	}
	if priv == nil {
		return errors.New("no private key to write")
	}
	keyPath, pubPath := name+".key", name+".pub"
	// Refuse a missing directory or an existing file before the deliberately
	// slow encryption. publishFile checks again, without a race.
	dir := filepath.Dir(name)
	if fi, err := os.Stat(dir); err != nil {
		return fmt.Errorf("key directory: %w", err)
	} else if !fi.IsDir() {
		return fmt.Errorf("key directory %s is not a directory", dir)
	}
	for _, p := range []string{keyPath, pubPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%s already exists: remove it or choose another name", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("checking %s: %w", p, err)
		}
	}
	privPEM, err := MarshalPrivate(priv, password)
	if err != nil {
		return fmt.Errorf("key %s: %w", name, err)
	}
	pubPEM, err := MarshalPublic(priv.Public())
	if err != nil {
		return fmt.Errorf("key %s: %w", name, err)
	}
	if err := publishFile(keyPath, privPEM, 0o600); err != nil {
		return err
	}
	if err := publishFile(pubPath, pubPEM, 0o644); err != nil {
		if rmErr := os.Remove(keyPath); rmErr != nil {
			return fmt.Errorf("%w (and removing %s failed: %v)", err, keyPath, rmErr)
		}
		return err
	}
	return nil
}

// publishFile writes data to path, never over an existing file: a key
// file replaced by mistake would lose the key for good.
func publishFile(path string, data []byte, mode fs.FileMode) error {
	if err := safefile.Create(path, data, mode); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("%s already exists: remove it or choose another name", path)
		}
		return err
	}
	return nil
}

// uriScheme matches the scheme of a key reference such as
// "pkcs11:token=...". A scheme has at least two characters so that a
// Windows drive letter ("C:\keys\root.key") stays a path.
var uriScheme = regexp.MustCompile(`^([a-zA-Z][a-zA-Z0-9+.-]+):`)

// refScheme returns the scheme of ref, or "" when ref is a file path. A
// path that happens to contain a colon is still a path when the file exists.
func refScheme(ref string) string {
	m := uriScheme.FindStringSubmatch(ref)
	if m == nil {
		return ""
	}
	if _, err := os.Stat(ref); err == nil {
		return ""
	}
	return strings.ToLower(m[1])
}

// LoadPrivate loads the private key that ref names. A reference is the path
// of an encrypted key file (ours or cosign's); the password comes from pw and
// is asked for only once the file is known to be an encrypted private key.
// A pkcs11: URI names a key held in a PKCS#11 token (see ClosePKCS11), an
// awskms:// reference a key held in AWS KMS.
func LoadPrivate(ctx context.Context, ref string, pw PasswordSource) (crypto.Signer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	switch scheme := refScheme(ref); scheme {
	case "":
		return loadPrivateFile(ref, pw)
	case "pkcs11":
		return loadPrivatePKCS11(ref, pw)
	case kmsSchemeAWS:
		return loadKMS(ctx, ref)
	default:
		return nil, fmt.Errorf("private key %s: unsupported key reference scheme %q: give the path of a key file, a pkcs11: URI or an awskms:// reference", ref, scheme)
	}
}

func loadPrivateFile(path string, pw PasswordSource) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// A .pub file where a private key is needed is the likelier
		// mistake than a missing key, whether or not the file is here.
		if base, ok := strings.CutSuffix(path, ".pub"); ok {
			return nil, fmt.Errorf("private key %s: this names a public key, not a private key: give %s.key", path, base)
		}
		return nil, fmt.Errorf("reading private key: %w", err)
	}
	// Refuse a file that cannot be an encrypted key before asking for a
	// password that would be typed for nothing.
	if block, err := decodePEM(data); err != nil || (block.Type != pemSigstorePrivate && block.Type != pemCosignPrivate) {
		_, err := ParsePrivate(data, nil)
		if base, ok := strings.CutSuffix(path, ".pub"); ok && block != nil && block.Type == pemPublic {
			return nil, fmt.Errorf("private key %s: this is a public key, not a private key: give %s.key", path, base)
		}
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	password, err := pw.Password(path, false)
	if err != nil {
		return nil, err
	}
	defer clear(password)
	priv, err := ParsePrivate(data, password)
	if err != nil {
		return nil, fmt.Errorf("private key %s: %w", path, err)
	}
	return priv, nil
}

// LoadPublic loads the public key that ref names: a PEM public key file
// (NAME.pub), an X.509 certificate, or a pkcs11: URI of a key held in a
// PKCS#11 token (whose PIN must then be in the URI or $MTUF_PKCS11_PIN), or
// an awskms:// reference of a key held in AWS KMS.
func LoadPublic(ref string) (crypto.PublicKey, error) {
	switch scheme := refScheme(ref); scheme {
	case "":
		return loadPublicFile(ref)
	case "pkcs11":
		return loadPublicPKCS11(ref)
	case kmsSchemeAWS:
		// The KMS hands out a key's public half without unlocking
		// anything; there is no context to pass down here, and each KMS
		// call has its own timeout.
		k, err := loadKMS(context.Background(), ref)
		if err != nil {
			return nil, err
		}
		return k.Public(), nil
	default:
		return nil, fmt.Errorf("public key %s: unsupported key reference scheme %q: give the path of a public key file, a pkcs11: URI or an awskms:// reference", ref, scheme)
	}
}

// LoadPublicKeys reads every public key of a PEM file of several blocks
// (public keys or certificates), as ParsePublicKeys; the error names the
// file and the block.
func LoadPublicKeys(path string) ([]crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading public keys: %w", err)
	}
	pubs, err := ParsePublicKeys(data)
	if err != nil {
		return nil, fmt.Errorf("public keys %s: %w", path, err)
	}
	return pubs, nil
}

func loadPublicFile(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading public key: %w", err)
	}
	if block, err := decodePEM(data); err == nil && (block.Type == pemSigstorePrivate || block.Type == pemCosignPrivate) {
		return nil, fmt.Errorf("%s is a private key; pass %s", path, strings.TrimSuffix(path, ".key")+".pub")
	}
	pub, err := ParsePublic(data)
	if err != nil {
		return nil, fmt.Errorf("public key %s: %w", path, err)
	}
	return pub, nil
}
