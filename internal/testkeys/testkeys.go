// Package testkeys gives tests encrypted key files without paying for their
// encryption in every test. An encrypted key file costs a deliberately slow
// scrypt derivation to write and another to read (seconds under the race
// detector), so each named key is generated and encrypted once per test
// binary, and every test that asks for it gets a copy of the same files in
// its own directory.
//
// Tests that are not about key files should not use files at all: they
// give their keys to the code under test through a keys.Memory.
package testkeys

import (
	"crypto"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/mtuf/mtuf/keys"
)

// Password encrypts every key file this package writes.
const Password = "test-password"

// PasswordSource gives Password and nothing else: no environment, no
// prompt.
func PasswordSource() keys.PasswordSource {
	return keys.PasswordSource{Env: func(name string) string {
		if name == keys.PasswordEnv {
			return Password
		}
		return ""
	}}
}

type pair struct {
	priv         crypto.Signer
	privPEM, pub []byte
	err          error
}

var (
	mu    sync.Mutex
	pairs = map[string]func() pair{}
)

func load(name string, typ keys.Type) pair {
	id := string(typ) + "/" + name
	mu.Lock()
	get, ok := pairs[id]
	if !ok {
		get = sync.OnceValue(func() pair { return generate(typ) })
		pairs[id] = get
	}
	mu.Unlock()
	return get()
}

func generate(typ keys.Type) pair {
	priv, err := keys.Generate(typ)
	if err != nil {
		return pair{err: err}
	}
	privPEM, err := keys.MarshalPrivate(priv, []byte(Password))
	if err != nil {
		return pair{err: err}
	}
	pub, err := keys.MarshalPublic(priv.Public())
	if err != nil {
		return pair{err: err}
	}
	return pair{priv: priv, privPEM: privPEM, pub: pub}
}

// Write puts the key pair called name, of type typ, into dir as NAME.key
// (encrypted with Password, mode 0600) and NAME.pub, and returns the path
// of NAME.key with the private key itself. Within one test binary a name
// and type always give the same key: tests that need distinct keys use
// distinct names. The name must say that the key is a test key.
func Write(t testing.TB, dir, name string, typ keys.Type) (string, crypto.Signer) {
	t.Helper()
	if !strings.Contains(name, "test") {
		t.Fatalf("test key name %q does not say it is a test key", name)
	}
	p := load(name, typ)
	if p.err != nil {
		t.Fatalf("test key %s (%s): %v", name, typ, p.err)
	}
	base := filepath.Join(dir, name)
	if err := writeNew(base+".key", p.privPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := writeNew(base+".pub", p.pub, 0o644); err != nil {
		t.Fatal(err)
	}
	return base + ".key", p.priv
}

// writeNew writes a file that must not exist yet, as keys.WriteKeyPair
// would refuse to overwrite one.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("writing test key: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("writing test key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing test key %s: %w", path, err)
	}
	return nil
}
