package keys

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestMemoryResolver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	priv := testKey(t, ED25519)
	m := Memory{"root-test": priv}
	got, err := m.Private(ctx, "root-test")
	if err != nil || !Equal(got.Public(), priv.Public()) {
		t.Fatalf("Private(root-test) = %v, %v; want the key held", got, err)
	}
	pub, err := m.Public(ctx, "root-test")
	if err != nil || !Equal(pub, priv.Public()) {
		t.Fatalf("Public(root-test) = %v, %v; want the key's public half", pub, err)
	}
	for _, ref := range []string{"other", "root-test.pub", ""} {
		if _, err := m.Private(ctx, ref); err == nil || !strings.Contains(err.Error(), "no key of that name") {
			t.Errorf("Private(%q) error = %v, want no key of that name", ref, err)
		}
		if _, err := m.Public(ctx, ref); err == nil || !strings.Contains(err.Error(), "no key of that name") {
			t.Errorf("Public(%q) error = %v, want no key of that name", ref, err)
		}
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := m.Private(cancelled, "root-test"); !errors.Is(err, context.Canceled) {
		t.Errorf("Private with a cancelled context: %v", err)
	}
}

// Files is LoadPrivate and LoadPublic; reading an encrypted file is
// tested with LoadPrivate, so only what needs no scrypt is repeated here.
func TestFilesResolver(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	priv := testKey(t, ECDSAP256)
	pubPEM, err := MarshalPublic(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pubFile := filepath.Join(dir, "ci-test.pub")
	if err := os.WriteFile(pubFile, pubPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	var r Resolver = Files{Password: envPassword(t, testPassword)}
	pub, err := r.Public(ctx, pubFile)
	if err != nil || !Equal(pub, priv.Public()) {
		t.Fatalf("Public(%s) = %v, %v", pubFile, pub, err)
	}
	if _, err := r.Private(ctx, pubFile); err == nil || !strings.Contains(err.Error(), "this is a public key") {
		t.Errorf("Private of a public key file: %v", err)
	}
	missing := filepath.Join(dir, "nope.key")
	if _, err := r.Private(ctx, missing); err == nil || !strings.Contains(err.Error(), "nope.key") {
		t.Errorf("Private of a missing file: %v", err)
	}
}
