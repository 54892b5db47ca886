package intoto

import (
	"crypto"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

// FuzzInTotoLayout feeds arbitrary bytes as the layout of an otherwise
// good chain: verification must fail cleanly, never panic, and never
// accept a layout whose signed content differs from the owner's.
func FuzzInTotoLayout(f *testing.F) {
	c := newTestChain(f, "ed25519")
	_, want, err := parseLayout(c.layout)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.layout)
	if data, err := os.ReadFile(filepath.Join("testdata", "intoto", "root.layout")); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"signed":{"_type":"layout"},"signatures":[]}`))
	f.Add([]byte(`{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[]}`))
	owners := []crypto.PublicKey{c.owner.Public()}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, _, err := parseLayout(data); err != nil {
			if VerifySupplyChain(data, owners, c.links, c.doc, time.Now()) == nil {
				t.Fatalf("accepted a layout that does not parse: %v", err)
			}
			return
		}
		if err := VerifySupplyChain(data, owners, c.links, c.doc, time.Now()); err != nil {
			return
		}
		_, got, err := parseLayout(data)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("accepted a layout that is not the owner's: %q", data)
		}
	})
}

// FuzzInTotoMetablocks checks the link and layout readers on the files
// in-toto's own tools wrote: no panic, and nothing returned with an
// error.
func FuzzInTotoMetablocks(f *testing.F) {
	for _, name := range []string{"root.layout", "read-measurements.f776e69e.link", "publish.68b95178.link"} {
		data, err := os.ReadFile(filepath.Join("testdata", "intoto", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if mb, _, err := parseLink(data); err != nil && mb != nil {
			t.Fatalf("link returned with an error: %v", err)
		}
		if mb, _, err := parseLayout(data); err != nil && mb != nil {
			t.Fatalf("layout returned with an error: %v", err)
		}
		step, keyID, products, err := LinkProducts(data)
		if err != nil && (step != "" || keyID != "" || products != nil) {
			t.Fatalf("link products returned with an error: %v", err)
		}
	})
}

// FuzzParsePublicKey checks that an in-toto public key file either is
// refused with an error and no key, or gives a key that ExportPublicKey
// writes back in a form ParsePublicKey reads to the same key with the same
// key ID.
func FuzzParsePublicKey(f *testing.F) {
	for _, name := range []string{"owner-test.pub", "reader-test.pub", "publisher-test.pub"} {
		data, err := os.ReadFile(filepath.Join("testdata", "intoto", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, typ := range []string{"ed25519", "ecdsa-p256", "ecdsa-p384"} {
		data, err := ExportPublicKey(newTestKey(f, typ).Public())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"00","private":"00"}}`))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		pub, err := ParsePublicKey(data)
		if err != nil {
			if pub != nil {
				t.Fatalf("key returned with an error: %v", err)
			}
			return
		}
		id, err := KeyID(pub)
		if err != nil {
			t.Fatalf("accepted key has no key ID: %v", err)
		}
		out, err := ExportPublicKey(pub)
		if err != nil {
			t.Fatalf("accepted key does not export: %v", err)
		}
		back, err := ParsePublicKey(out)
		if err != nil {
			t.Fatalf("exported key does not parse: %v\n%s", err, out)
		}
		if again, err := KeyID(back); err != nil || again != id {
			t.Fatalf("key ID changed in the round trip: %s, then %s (%v)", id, again, err)
		}
	})
}
