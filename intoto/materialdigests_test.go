package intoto

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"strings"
	"testing"
)

// TestNewLinkMaterialDigests checks that a link made from a material's
// digest is byte for byte the link made from its content (ed25519 signs
// deterministically), and that material names are checked the same way.
func TestNewLinkMaterialDigests(t *testing.T) {
	t.Parallel()
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	image := []byte("a disk image")
	products := map[string][]byte{"measurements.json": []byte("{}\n")}
	want, wantID, err := NewLink("precalculate-measurements", map[string][]byte{"disk.raw": image}, products, key)
	if err != nil {
		t.Fatal(err)
	}
	got, gotID, err := NewLinkMaterialDigests("precalculate-measurements",
		map[string][sha256.Size]byte{"disk.raw": sha256.Sum256(image)}, products, key)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) || gotID != wantID {
		t.Errorf("links differ:\n%s\n%s", got, want)
	}
	_, _, err = NewLinkMaterialDigests("precalculate-measurements",
		map[string][sha256.Size]byte{"../disk.raw": {}}, products, key)
	if err == nil || !strings.Contains(err.Error(), "material") {
		t.Errorf("a material named ../disk.raw: error %v", err)
	}
}
