package repo

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/internal/testtool"
	"github.com/mtuf/mtuf/keys"
)

// A user verifies a first download of mtuf with stock cosign and the
// published releases key, before mtuf is there to verify anything.
func TestReleaseSignatureVerifiesWithCosign(t *testing.T) {
	t.Parallel()
	cosign := testtool.NewCosign(t)
	r := newTestRepo(t)
	bin := []byte("#!/bin/sh\necho mtuf\n")
	if _, err := r.ws.Publish(context.Background(), PublishRequest{Release: &Release{Binary: bin, Version: "v1.0.0", OS: "linux", Arch: "amd64"}}); err != nil {
		t.Fatal(err)
	}
	dir := cosign.Dir
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pub, err := keys.MarshalPublic(r.signers[r.keys["releases"]].Public())
	if err != nil {
		t.Fatal(err)
	}
	pubFile := write("releases.pub", pub)
	blob := write("mtuf", fetch(t, r.storage, "cli/v1.0.0/linux-amd64/mtuf"))
	sig := write("mtuf.sig", fetch(t, r.storage, "cli/v1.0.0/linux-amd64/mtuf.sig"))
	if out, err := cosign.VerifyBlob(t, pubFile, sig, blob); err != nil || !strings.Contains(out, "Verified OK") {
		t.Fatalf("cosign verify-blob: %v\n%s", err, out)
	}
	// A tampered download fails.
	write("mtuf", bytes.ToUpper(bin))
	if out, err := cosign.VerifyBlob(t, pubFile, sig, blob); err == nil {
		t.Fatalf("cosign accepted a tampered binary:\n%s", out)
	}
}
