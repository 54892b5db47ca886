package keys

import (
	"context"
	"crypto"
	"fmt"
)

// A Resolver turns key references, the strings that name keys in flags and
// in a repository workspace, into keys. Files is what the mtuf commands
// use; an integrator whose keys live elsewhere (its own KMS or HSM client,
// keys already in memory) gives its own.
type Resolver interface {
	// Private returns the private key that ref names, unlocking it if it
	// must.
	Private(ctx context.Context, ref string) (crypto.Signer, error)
	// Public returns the public key that ref names without unlocking any
	// private key; it may fail for a reference that names a private key
	// only.
	Public(ctx context.Context, ref string) (crypto.PublicKey, error)
}

// Files resolves references as LoadPrivate and LoadPublic do: paths of key
// files (ours or cosign's) and pkcs11: URIs, unlocked with passwords from
// Password. The zero value reads passwords from the real environment and
// terminal.
type Files struct {
	Password PasswordSource
}

// Private implements Resolver with LoadPrivate.
func (f Files) Private(ctx context.Context, ref string) (crypto.Signer, error) {
	return LoadPrivate(ctx, ref, f.Password)
}

// Public implements Resolver with LoadPublic.
func (f Files) Public(_ context.Context, ref string) (crypto.PublicKey, error) {
	return LoadPublic(ref)
}

// Memory resolves references to keys held in memory, by the names the
// caller chose for them. Public gives the public half of a named key, so
// one name serves wherever a private or a public key is asked for. A
// Memory must not be changed while it is in use.
type Memory map[string]crypto.Signer

// Private implements Resolver.
func (m Memory) Private(ctx context.Context, ref string) (crypto.Signer, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k, ok := m[ref]
	if !ok || k == nil {
		return nil, fmt.Errorf("private key %s: no key of that name is held in memory", ref)
	}
	return k, nil
}

// Public implements Resolver.
func (m Memory) Public(ctx context.Context, ref string) (crypto.PublicKey, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	k, ok := m[ref]
	if !ok || k == nil {
		return nil, fmt.Errorf("public key %s: no key of that name is held in memory", ref)
	}
	return k.Public(), nil
}
