//go:build cgo

package repo

import (
	"bytes"
	"context"
	"crypto"
	"crypto/elliptic"
	"os"
	"path/filepath"
	"strings"
	"testing"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/internal/softhsmtest"
	"github.com/mtuf/mtuf/internal/testkeys"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// TestPKCS11RootCeremony creates a repository whose root needs two
// signatures, one by a key file and one by a key that never leaves a
// PKCS#11 token, publishes through it, and updates a client from it.
func TestPKCS11RootCeremony(t *testing.T) {
	h := softhsmtest.New(t)
	t.Cleanup(func() {
		if err := keys.ClosePKCS11(); err != nil {
			t.Errorf("ClosePKCS11: %v", err)
		}
	})
	tok := h.InitToken(t, "root-ceremony")
	hsmKey := tok.GenerateECDSA(t, "root-hsm", elliptic.P256())
	hsmRef := tok.URI(hsmKey.Object)
	hsmID, err := keys.KeyID(hsmKey.Public)
	if err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	dir := t.TempDir()
	cfg, _, mem := testInitConfig(t, dir)
	rootFile, _ := testkeys.Write(t, dir, "root-test", keys.ED25519)
	cfg.Root = RoleKeys{Keys: []string{rootFile, hsmRef}, Threshold: 2}
	// The key file's password and the token's PIN, as MTUF_PASSWORD and
	// MTUF_PKCS11_PIN would give them.
	pw := testkeys.PasswordSource()
	pw.Env = func(name string) string {
		if name == keys.PKCS11PINEnv {
			return softhsmtest.PIN
		}
		return testkeys.PasswordSource().Env(name)
	}
	// The roles this test is not about sign with keys in memory.
	ws, err := Init(ctx, filepath.Join(dir, "ws"), cfg, memoryOr{mem, keys.Files{Password: pw}}, nil)
	if err != nil {
		t.Fatalf("Init with a root key in the token: %v", err)
	}

	root := readMeta[tuf.RootType](t, ws.Storage, "metadata/1.root.json")
	if got := root.Signed.Roles[tuf.ROOT]; got.Threshold != 2 || len(got.KeyIDs) != 2 || !contains(got.KeyIDs, hsmID) {
		t.Fatalf("root role = %+v, want threshold 2 with the token's key %s", got, hsmID)
	}
	if err := root.VerifyDelegate(tuf.ROOT, root); err != nil {
		t.Fatalf("root does not meet its own threshold: %v", err)
	}
	// The token's signature is one of the two that count: without it the
	// root falls short of its threshold.
	var fileOnly []tuf.Signature
	for _, s := range root.Signatures {
		if s.KeyID != hsmID {
			fileOnly = append(fileOnly, s)
		}
	}
	if len(fileOnly) != len(root.Signatures)-1 {
		t.Fatalf("root has no signature by the token's key %s", hsmID)
	}
	root.Signatures = fileOnly
	if err := root.VerifyDelegate(tuf.ROOT, root); err == nil {
		t.Fatal("root verifies without the token's signature")
	}

	// The token's key is offline: the workspace keeps no reference to it.
	wsData, err := os.ReadFile(filepath.Join(dir, "ws", WorkspaceFile))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(wsData), "pkcs11:") {
		t.Errorf("the workspace records the root key in the token:\n%s", wsData)
	}

	m := testMeasurements("v1.0.0", "qemu-vtpm", 0x30)
	if _, err := ws.Publish(ctx, PublishRequest{Measurements: m}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	got, err := metadata.Parse(fetch(t, cfg.Storage, "measurements/v1.0.0/qemu-vtpm/measurements.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.PCRs[4].Expected, m.PCRs[4].Expected) {
		t.Errorf("client got %+v, want the published measurements", got)
	}
}

// memoryOr resolves the names its Memory holds from memory, and every
// other reference as its Files does.
type memoryOr struct {
	mem   keys.Memory
	files keys.Files
}

func (r memoryOr) Private(ctx context.Context, ref string) (crypto.Signer, error) {
	if _, ok := r.mem[ref]; ok {
		return r.mem.Private(ctx, ref)
	}
	return r.files.Private(ctx, ref)
}

func (r memoryOr) Public(ctx context.Context, ref string) (crypto.PublicKey, error) {
	if _, ok := r.mem[ref]; ok {
		return r.mem.Public(ctx, ref)
	}
	return r.files.Public(ctx, ref)
}
