package intoto

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/mtuf/mtuf/metadata"
)

// Key types the tests run with; RSA keys are 2048 bits to keep tests fast.
var intotoKeyTypes = []string{"ed25519", "ecdsa-p256", "ecdsa-p384", "rsa"}

func newTestKey(t testing.TB, typ string) crypto.Signer {
	t.Helper()
	switch typ {
	case "ed25519":
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "ecdsa-p256", "ecdsa-p384":
		curve := elliptic.P256()
		if typ == "ecdsa-p384" {
			curve = elliptic.P384()
		}
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	case "rsa":
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	t.Fatalf("unknown key type %q", typ)
	return nil
}

// testChain is a complete supply chain: keys, a layout and the links of
// both steps for one measurements document.
type testChain struct {
	owner, reader, publisher crypto.Signer
	layout                   []byte
	doc                      []byte
	links                    map[string][]byte
	readKeyID, publishKeyID  string
	expires                  time.Time
}

const testDoc = `{"image":"v2.15.0","platform":"qemu-vtpm","hash":"sha256","pcrs":{"4":{"expected":"` +
	"1111111111111111111111111111111111111111111111111111111111111111" + `","warnOnly":false}}}` + "\n"

func newTestChain(t testing.TB, keyType string) *testChain {
	t.Helper()
	c := &testChain{
		owner:     newTestKey(t, keyType),
		reader:    newTestKey(t, keyType),
		publisher: newTestKey(t, keyType),
		doc:       []byte(testDoc),
		links:     map[string][]byte{},
		expires:   time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second),
	}
	var err error
	c.layout, err = NewLayout(c.owner, LayoutOptions{
		ReadFunctionaries:    []crypto.PublicKey{c.reader.Public()},
		PublishFunctionaries: []crypto.PublicKey{c.publisher.Public()},
		Expires:              c.expires,
	})
	if err != nil {
		t.Fatalf("NewLayout: %v", err)
	}
	c.readKeyID = c.addLink(t, StepReadMeasurements, nil, map[string][]byte{metadata.MeasurementsFile: c.doc}, c.reader)
	c.publishKeyID = c.addLink(t, StepPublish, map[string][]byte{metadata.MeasurementsFile: c.doc}, nil, c.publisher)
	return c
}

// addLink makes a link with NewLink and stores it under its in-toto name.
func (c *testChain) addLink(t testing.TB, step string, materials, products map[string][]byte, signer crypto.Signer) string {
	t.Helper()
	data, keyID, err := NewLink(step, materials, products, signer)
	if err != nil {
		t.Fatalf("NewLink(%s): %v", step, err)
	}
	name, err := metadata.LinkFileName(step, keyID)
	if err != nil {
		t.Fatal(err)
	}
	c.links[name] = data
	return keyID
}

func (c *testChain) verify(now time.Time) error {
	return VerifySupplyChain(c.layout, []crypto.PublicKey{c.owner.Public()}, c.links, c.doc, now)
}

func linkName(t testing.TB, step, keyID string) string {
	t.Helper()
	name, err := metadata.LinkFileName(step, keyID)
	if err != nil {
		t.Fatal(err)
	}
	return name
}

func TestInToto_VerifySupplyChain(t *testing.T) {
	for _, typ := range intotoKeyTypes {
		t.Run(typ, func(t *testing.T) {
			c := newTestChain(t, typ)
			if err := c.verify(time.Now()); err != nil {
				t.Fatalf("VerifySupplyChain: %v", err)
			}
			// Links may also be given under their repository target names.
			byTarget := map[string][]byte{}
			for name, data := range c.links {
				byTarget["measurements/v2.15.0/qemu-vtpm/"+name] = data
			}
			if err := VerifySupplyChain(c.layout, []crypto.PublicKey{c.owner.Public()}, byTarget, c.doc, time.Now()); err != nil {
				t.Fatalf("VerifySupplyChain with target names: %v", err)
			}
		})
	}
}

// TestInToto_GolangVerify checks the layout and links with in-toto-golang's
// complete verification routine (files on disk, system clock), independent of
// this package's verifier.
func TestInToto_GolangVerify(t *testing.T) {
	for _, typ := range intotoKeyTypes {
		t.Run(typ, func(t *testing.T) {
			c := newTestChain(t, typ)
			dir := t.TempDir()
			for name, data := range c.links {
				if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			layoutPath := filepath.Join(dir, "root.layout")
			if err := os.WriteFile(layoutPath, c.layout, 0o644); err != nil {
				t.Fatal(err)
			}
			md, err := in_toto.LoadMetadata(layoutPath)
			if err != nil {
				t.Fatalf("in_toto.LoadMetadata: %v", err)
			}
			ownerKey, err := intotoKey(c.owner.Public())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := in_toto.InTotoVerify(md, map[string]in_toto.Key{ownerKey.KeyID: ownerKey}, dir, "", nil, nil, false); err != nil {
				t.Fatalf("in_toto.InTotoVerify: %v", err)
			}
		})
	}
}

func TestInToto_Threshold(t *testing.T) {
	owner, r1, r2, p1, p2 := newTestKey(t, "ed25519"), newTestKey(t, "ed25519"), newTestKey(t, "ecdsa-p256"), newTestKey(t, "ed25519"), newTestKey(t, "ed25519")
	layout, err := NewLayout(owner, LayoutOptions{
		ReadFunctionaries:    []crypto.PublicKey{r1.Public(), r2.Public()},
		PublishFunctionaries: []crypto.PublicKey{p1.Public(), p2.Public()},
		Expires:              time.Now().Add(time.Hour),
		Threshold:            2,
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &testChain{owner: owner, layout: layout, doc: []byte(testDoc), links: map[string][]byte{}}
	c.addLink(t, StepReadMeasurements, nil, map[string][]byte{metadata.MeasurementsFile: c.doc}, r1)
	c.addLink(t, StepPublish, map[string][]byte{metadata.MeasurementsFile: c.doc}, nil, p1)
	c.addLink(t, StepPublish, map[string][]byte{metadata.MeasurementsFile: c.doc}, nil, p2)
	err = c.verify(time.Now())
	if !errors.Is(err, ErrLinkMissing) || !strings.Contains(err.Error(), "step read-measurements needs 2 link(s) signed by distinct functionaries, found 1") {
		t.Fatalf("one of two read-measurements links: got %v, want ErrLinkMissing naming the step", err)
	}
	c.addLink(t, StepReadMeasurements, nil, map[string][]byte{metadata.MeasurementsFile: c.doc}, r2)
	if err := c.verify(time.Now()); err != nil {
		t.Fatalf("two links per step: %v", err)
	}

	// Two functionaries that disagree on the product: in-toto refuses.
	c.addLink(t, StepReadMeasurements, nil, map[string][]byte{metadata.MeasurementsFile: []byte("other")}, r2)
	if err := c.verify(time.Now()); !errors.Is(err, ErrArtifactRules) || !strings.Contains(err.Error(), "different artifacts") {
		t.Fatalf("disagreeing links: got %v, want ErrArtifactRules", err)
	}
}

// TestInToto_VerifyRefuses changes one thing in a good chain and checks
// that verification fails with the right error, naming what failed.
func TestInToto_VerifyRefuses(t *testing.T) {
	stranger := newTestKey(t, "ed25519")
	strangerID, err := KeyID(stranger.Public())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name   string
		change func(t *testing.T, c *testChain) (now time.Time)
		want   error
		msg    []string
	}{
		{
			name: "measurements differ from the product",
			change: func(t *testing.T, c *testChain) time.Time {
				c.doc = []byte(strings.Replace(testDoc, "1111", "2222", 1))
				return time.Now()
			},
			want: ErrMeasurementsMismatch,
			msg:  []string{"measurements.json is not the measurements.json that step read-measurements produced", "sha256 is"},
		},
		{
			name: "publish link records other measurements",
			change: func(t *testing.T, c *testChain) time.Time {
				c.addLink(t, StepPublish, map[string][]byte{metadata.MeasurementsFile: []byte("tampered")}, nil, c.publisher)
				return time.Now()
			},
			want: ErrArtifactRules,
			msg:  []string{"step publish records measurements.json as a material with sha256 " + sha256Hex("tampered"), "but step read-measurements produced sha256 " + sha256Hex(testDoc)},
		},
		{
			name: "publish link changes the measurements",
			change: func(t *testing.T, c *testChain) time.Time {
				c.addLink(t, StepPublish, map[string][]byte{metadata.MeasurementsFile: c.doc}, map[string][]byte{metadata.MeasurementsFile: []byte("x")}, c.publisher)
				return time.Now()
			},
			want: ErrArtifactRules,
			msg:  []string{"step publish records measurements.json as a product"},
		},
		{
			name: "read-measurements produces another file",
			change: func(t *testing.T, c *testChain) time.Time {
				c.addLink(t, StepReadMeasurements, nil, map[string][]byte{metadata.MeasurementsFile: c.doc, "extra.bin": nil}, c.reader)
				return time.Now()
			},
			want: ErrArtifactRules,
			msg:  []string{"read-measurements", "extra.bin", "DISALLOW"},
		},
		{
			name: "read-measurements does not create the measurements",
			change: func(t *testing.T, c *testChain) time.Time {
				c.addLink(t, StepReadMeasurements, map[string][]byte{metadata.MeasurementsFile: c.doc}, map[string][]byte{metadata.MeasurementsFile: c.doc}, c.reader)
				return time.Now()
			},
			want: ErrArtifactRules,
			msg:  []string{"read-measurements", "measurements.json", "DISALLOW"},
		},
		{
			name: "read-measurements produces no measurements",
			change: func(t *testing.T, c *testChain) time.Time {
				c.addLink(t, StepReadMeasurements, nil, nil, c.reader)
				return time.Now()
			},
			want: ErrArtifactRules,
			msg:  []string{"step read-measurements produced no measurements.json"},
		},
		{
			name: "link signed by a non-functionary",
			change: func(t *testing.T, c *testChain) time.Time {
				delete(c.links, linkName(t, StepReadMeasurements, c.readKeyID))
				c.addLink(t, StepReadMeasurements, nil, map[string][]byte{metadata.MeasurementsFile: c.doc}, stranger)
				return time.Now()
			},
			want: ErrLinkUnauthorized,
			msg:  []string{"read-measurements." + strangerID[:8] + ".link is signed by key " + strangerID + ", which is not a functionary of step read-measurements"},
		},
		{
			name: "link signed by the functionary of the other step",
			change: func(t *testing.T, c *testChain) time.Time {
				delete(c.links, linkName(t, StepReadMeasurements, c.readKeyID))
				c.addLink(t, StepReadMeasurements, nil, map[string][]byte{metadata.MeasurementsFile: c.doc}, c.publisher)
				return time.Now()
			},
			want: ErrLinkUnauthorized,
			msg:  []string{"not a functionary of step read-measurements"},
		},
		{
			name: "missing read-measurements link",
			change: func(t *testing.T, c *testChain) time.Time {
				delete(c.links, linkName(t, StepReadMeasurements, c.readKeyID))
				return time.Now()
			},
			want: ErrLinkMissing,
			msg:  []string{"step read-measurements needs 1 link(s) signed by distinct functionaries, found 0", "expected file name(s): read-measurements.<ID8>.link"},
		},
		{
			name: "missing publish link",
			change: func(t *testing.T, c *testChain) time.Time {
				delete(c.links, linkName(t, StepPublish, c.publishKeyID))
				return time.Now()
			},
			want: ErrLinkMissing,
			msg:  []string{"step publish needs 1 link(s) signed by distinct functionaries, found 0"},
		},
		{
			name: "link changed after signing",
			change: func(t *testing.T, c *testChain) time.Time {
				name := linkName(t, StepReadMeasurements, c.readKeyID)
				c.links[name] = []byte(strings.Replace(string(c.links[name]), sha256Hex(testDoc), sha256Hex("forged"), 1))
				c.doc = []byte("forged")
				return time.Now()
			},
			want: ErrLinkSignature,
			msg:  []string{"signature by functionary key <READ>"},
		},
		{
			name: "link of one step named as the other",
			change: func(t *testing.T, c *testChain) time.Time {
				// A key that is functionary of both steps must not turn its
				// read-measurements link into a publish link by renaming it.
				name := linkName(t, StepReadMeasurements, c.readKeyID)
				c.links[linkName(t, StepPublish, c.readKeyID)] = c.links[name]
				delete(c.links, linkName(t, StepPublish, c.publishKeyID))
				return time.Now()
			},
			want: ErrLinkInvalid,
			msg:  []string{`records step "read-measurements", not "publish"`},
		},
		{
			name: "file name names another key",
			change: func(t *testing.T, c *testChain) time.Time {
				name := linkName(t, StepReadMeasurements, c.readKeyID)
				c.links["read-measurements.0123abcd.link"] = c.links[name]
				delete(c.links, name)
				return time.Now()
			},
			want: ErrLinkSignature,
			msg:  []string{"read-measurements.0123abcd.link carries no signature by a key whose ID starts with 0123abcd"},
		},
		{
			name: "link is not JSON",
			change: func(t *testing.T, c *testChain) time.Time {
				c.links[linkName(t, StepReadMeasurements, c.readKeyID)] = []byte("not json")
				return time.Now()
			},
			want: ErrLinkInvalid,
			msg:  []string{"read-measurements.<READ8>.link: in-toto link: not JSON"},
		},
		{
			name: "link is a layout",
			change: func(t *testing.T, c *testChain) time.Time {
				c.links[linkName(t, StepReadMeasurements, c.readKeyID)] = c.layout
				return time.Now()
			},
			want: ErrLinkInvalid,
			msg:  []string{`signed part has _type "layout", want "link"`},
		},
		{
			name: "badly named link file",
			change: func(t *testing.T, c *testChain) time.Time {
				c.links["read-measurements.link"] = []byte("{}")
				return time.Now()
			},
			want: ErrLinkInvalid,
			msg:  []string{`file "read-measurements.link" is not named <step>.<keyid8>.link`},
		},
		{
			name: "too many links",
			change: func(t *testing.T, c *testChain) time.Time {
				for i := range maxLinks {
					c.links[fmt.Sprintf("other-%d.%08x.link", i, i)] = nil
				}
				return time.Now()
			},
			want: ErrLinkInvalid,
			msg:  []string{"at most 64 are accepted"},
		},
		{
			name: "expired layout",
			change: func(t *testing.T, c *testChain) time.Time {
				return c.expires.Add(time.Minute)
			},
			want: ErrLayoutExpired,
			msg:  []string{"it expired at " + "<EXPIRES>", "the layout owner must sign a new layout"},
		},
		{
			name: "layout expires at the verification time",
			change: func(t *testing.T, c *testChain) time.Time {
				return c.expires
			},
			want: ErrLayoutExpired,
		},
		{
			name: "layout signed by an untrusted key",
			change: func(t *testing.T, c *testChain) time.Time {
				var err error
				c.layout, err = NewLayout(stranger, LayoutOptions{
					ReadFunctionaries:    []crypto.PublicKey{c.reader.Public()},
					PublishFunctionaries: []crypto.PublicKey{c.publisher.Public()},
					Expires:              c.expires,
				})
				if err != nil {
					t.Fatal(err)
				}
				return time.Now()
			},
			want: ErrLayoutSignature,
			msg:  []string{"it is signed by key(s) " + strangerID + ", but the trusted layout key(s) are <OWNER>"},
		},
		{
			name: "layout changed after signing",
			change: func(t *testing.T, c *testChain) time.Time {
				c.layout = []byte(strings.Replace(string(c.layout), `"DISALLOW"`, `"ALLOW"`, 1))
				return time.Now()
			},
			want: ErrLayoutSignature,
			msg:  []string{"signature by key <OWNER>"},
		},
		{
			name: "layout is not JSON",
			change: func(t *testing.T, c *testChain) time.Time {
				c.layout = []byte("{")
				return time.Now()
			},
			want: ErrLayoutInvalid,
			msg:  []string{"not JSON"},
		},
		{
			name: "layout is a DSSE envelope",
			change: func(t *testing.T, c *testChain) time.Time {
				c.layout = []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"","signatures":[]}`)
				return time.Now()
			},
			want: ErrLayoutInvalid,
			msg:  []string{"DSSE envelope"},
		},
		{
			name: "layout is a link",
			change: func(t *testing.T, c *testChain) time.Time {
				c.layout = c.links[linkName(t, StepPublish, c.publishKeyID)]
				return time.Now()
			},
			want: ErrLayoutInvalid,
			msg:  []string{`_type "link", want "layout"`},
		},
		{
			name: "layout with an unknown field",
			change: func(t *testing.T, c *testChain) time.Time {
				c.layout = []byte(strings.Replace(string(c.layout), `"readme":`, `"extra": 1, "readme":`, 1))
				return time.Now()
			},
			want: ErrLayoutInvalid,
			msg:  []string{`unknown field "extra"`},
		},
		{
			name: "layout without signatures",
			change: func(t *testing.T, c *testChain) time.Time {
				var mb map[string]json.RawMessage
				if err := json.Unmarshal(c.layout, &mb); err != nil {
					t.Fatal(err)
				}
				mb["signatures"] = json.RawMessage("[]")
				c.layout, _ = json.Marshal(mb)
				return time.Now()
			},
			want: ErrLayoutSignature,
			msg:  []string{"the layout carries no signature"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestChain(t, "ed25519")
			now := tt.change(t, c)
			err := c.verify(now)
			if !errors.Is(err, tt.want) {
				t.Fatalf("VerifySupplyChain: got %v, want %v", err, tt.want)
			}
			ownerID, _ := KeyID(c.owner.Public())
			r := strings.NewReplacer("<ID8>", c.readKeyID[:8], "<READ8>", c.readKeyID[:8], "<READ>", c.readKeyID,
				"<OWNER>", ownerID, "<EXPIRES>", c.expires.Format("2006-01-02T15:04:05Z"))
			for _, m := range tt.msg {
				if m = r.Replace(m); !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not contain %q", err, m)
				}
			}
		})
	}
}

func sha256Hex(s string) string {
	d := sha256.Sum256([]byte(s))
	return hex.EncodeToString(d[:])
}

func TestInToto_VerifyArguments(t *testing.T) {
	c := newTestChain(t, "ed25519")
	if err := VerifySupplyChain(c.layout, []crypto.PublicKey{c.owner.Public()}, c.links, c.doc, time.Time{}); err == nil || !strings.Contains(err.Error(), "no verification time") {
		t.Errorf("zero time: got %v", err)
	}
	if err := VerifySupplyChain(c.layout, nil, c.links, c.doc, time.Now()); !errors.Is(err, ErrLayoutSignature) || !strings.Contains(err.Error(), "no trusted layout keys") {
		t.Errorf("no layout keys: got %v", err)
	}
	bad := &ecdsa.PublicKey{Curve: elliptic.P224()}
	if err := VerifySupplyChain(c.layout, []crypto.PublicKey{bad}, c.links, c.doc, time.Now()); err == nil || !strings.Contains(err.Error(), "trusted layout key 1: ECDSA curve P-224") {
		t.Errorf("unsupported layout key: got %v", err)
	}
	// Any one of several trusted keys is enough.
	other := newTestKey(t, "ecdsa-p256")
	if err := VerifySupplyChain(c.layout, []crypto.PublicKey{other.Public(), c.owner.Public()}, c.links, c.doc, time.Now()); err != nil {
		t.Errorf("owner key second of two: %v", err)
	}
	// Links of steps the layout does not name are ignored.
	c.addLink(t, "unrelated", nil, map[string][]byte{"x": nil}, other)
	if err := c.verify(time.Now()); err != nil {
		t.Errorf("with a link of an unknown step: %v", err)
	}
}

// signedLayout signs a hand-made layout, for layouts NewLayout never makes.
func signedLayout(t *testing.T, owner crypto.Signer, lay in_toto.Layout) []byte {
	t.Helper()
	mb := &in_toto.Metablock{Signed: lay, Signatures: []in_toto.Signature{}}
	if _, err := signMetablock(mb, owner); err != nil {
		t.Fatal(err)
	}
	data, err := marshalMetablock(mb)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func parsedLayout(t *testing.T, data []byte) in_toto.Layout {
	t.Helper()
	_, lay, err := parseLayout(data)
	if err != nil {
		t.Fatal(err)
	}
	return lay
}

// TestInToto_UnsupportedLayouts checks that layouts signed by the owner but
// using features mtuf does not verify are refused, not half-verified.
func TestInToto_UnsupportedLayouts(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(l *in_toto.Layout)
		msg    string
	}{
		{"inspection", func(l *in_toto.Layout) {
			l.Inspect = []in_toto.Inspection{{Type: "inspection", Run: []string{"touch", "/tmp/pwned"},
				SupplyChainItem: in_toto.SupplyChainItem{Name: "untar", ExpectedMaterials: [][]string{}, ExpectedProducts: [][]string{}}}}
		}, "the layout has inspections (untar); mtuf does not run commands from a layout"},
		{"threshold 0", func(l *in_toto.Layout) { l.Steps[1].Threshold = 0 }, "step publish has threshold 0; it must be at least 1"},
		{"threshold above keys", func(l *in_toto.Layout) { l.Steps[0].Threshold = 2 }, "step read-measurements has threshold 2 but only 1 functionary key(s)"},
		{"no read step", func(l *in_toto.Layout) { l.Steps = l.Steps[1:] }, "the layout has no step read-measurements"},
		{"step key not listed", func(l *in_toto.Layout) {
			l.Steps[0].PubKeys = []string{strings.Repeat("ab", 32)}
		}, "step read-measurements names functionary key " + strings.Repeat("ab", 32) + ", which the layout does not list"},
		{"certificate constraints", func(l *in_toto.Layout) {
			l.Steps[0].CertificateConstraints = []in_toto.CertificateConstraint{{CommonName: "*"}}
		}, "step read-measurements has certificate constraints"},
		{"root CAs", func(l *in_toto.Layout) {
			for id, k := range l.Keys {
				l.RootCas = map[string]in_toto.Key{id: k}
				break
			}
		}, "certificate authorities"},
		{"wrong key ID", func(l *in_toto.Layout) {
			for id, k := range l.Keys {
				k.KeyVal.Public = strings.Repeat("00", 32)
				l.Keys[id] = k
			}
		}, "its key ID is"},
		{"short ed25519 key", func(l *in_toto.Layout) {
			for id, k := range l.Keys {
				k.KeyVal.Public = "abcd"
				l.Keys[id] = k
			}
		}, "ed25519 public key is 2 bytes, want 32"},
		{"bad expiry", func(l *in_toto.Layout) { l.Expires = "tomorrow" }, "expiry time"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := newTestChain(t, "ed25519")
			lay := parsedLayout(t, c.layout)
			lay.Keys = maps.Clone(lay.Keys)
			tt.change(&lay)
			c.layout = signedLayout(t, c.owner, lay)
			err := c.verify(time.Now())
			if !errors.Is(err, ErrLayoutInvalid) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want ErrLayoutInvalid containing %q", err, tt.msg)
			}
		})
	}
}

func TestInToto_NewLayoutContent(t *testing.T) {
	c := newTestChain(t, "ed25519")
	lay := parsedLayout(t, c.layout)
	if lay.Expires != c.expires.Format("2006-01-02T15:04:05Z") {
		t.Errorf("expires = %q, want %q", lay.Expires, c.expires.Format("2006-01-02T15:04:05Z"))
	}
	if len(lay.Steps) != 2 || lay.Steps[0].Name != StepReadMeasurements || lay.Steps[1].Name != StepPublish {
		t.Fatalf("steps = %+v", lay.Steps)
	}
	wantRules := map[string][2]string{
		StepReadMeasurements: {`[]`, `[["CREATE","measurements.json"],["CREATE","pcrs/*"],["DISALLOW","*"]]`},
		StepPublish: {`[["MATCH","measurements.json","WITH","PRODUCTS","FROM","read-measurements"],["DISALLOW","*"]]`,
			`[["MATCH","measurements.json","WITH","PRODUCTS","FROM","read-measurements"],["DISALLOW","*"]]`},
	}
	for _, s := range lay.Steps {
		m, _ := json.Marshal(s.ExpectedMaterials)
		p, _ := json.Marshal(s.ExpectedProducts)
		if got := [2]string{string(m), string(p)}; got != wantRules[s.Name] {
			t.Errorf("step %s rules = %s, want %s", s.Name, got, wantRules[s.Name])
		}
		if s.Threshold != 1 {
			t.Errorf("step %s threshold = %d, want 1", s.Name, s.Threshold)
		}
	}
	if got := lay.Steps[0].PubKeys; len(got) != 1 || got[0] != c.readKeyID {
		t.Errorf("read-measurements functionaries = %v, want [%s]", got, c.readKeyID)
	}
	if got := lay.Steps[1].PubKeys; len(got) != 1 || got[0] != c.publishKeyID {
		t.Errorf("publish functionaries = %v, want [%s]", got, c.publishKeyID)
	}
	ownerID, _ := KeyID(c.owner.Public())
	if _, ok := lay.Keys[ownerID]; ok {
		t.Errorf("the owner key is listed as a functionary key")
	}
	// in-toto 1.3.1 refuses null where it expects a list or an object.
	for _, bad := range []string{"null"} {
		if strings.Contains(string(c.layout), bad) {
			t.Errorf("layout contains %s:\n%s", bad, c.layout)
		}
		for name, l := range c.links {
			if strings.Contains(string(l), bad) {
				t.Errorf("link %s contains %s:\n%s", name, bad, l)
			}
		}
	}
}

func TestInToto_NewLayoutErrors(t *testing.T) {
	owner := newTestKey(t, "ed25519")
	k1, k2 := newTestKey(t, "ed25519").Public(), newTestKey(t, "ed25519").Public()
	future := time.Now().Add(time.Hour)
	weakRSA, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		owner crypto.Signer
		opts  LayoutOptions
		msg   string
	}{
		{"no owner", nil, LayoutOptions{ReadFunctionaries: []crypto.PublicKey{k1}, PublishFunctionaries: []crypto.PublicKey{k2}, Expires: future}, "no layout owner key"},
		{"no read functionaries", owner, LayoutOptions{PublishFunctionaries: []crypto.PublicKey{k2}, Expires: future}, "step read-measurements has no functionary keys"},
		{"no publish functionaries", owner, LayoutOptions{ReadFunctionaries: []crypto.PublicKey{k1}, Expires: future}, "step publish has no functionary keys"},
		{"no expiry", owner, LayoutOptions{ReadFunctionaries: []crypto.PublicKey{k1}, PublishFunctionaries: []crypto.PublicKey{k2}}, "no expiry time"},
		{"expiry in the past", owner, LayoutOptions{ReadFunctionaries: []crypto.PublicKey{k1}, PublishFunctionaries: []crypto.PublicKey{k2}, Expires: time.Now().Add(-time.Hour)}, "is in the past"},
		{"threshold above keys", owner, LayoutOptions{ReadFunctionaries: []crypto.PublicKey{k1}, PublishFunctionaries: []crypto.PublicKey{k2}, Expires: future, Threshold: 2}, "step read-measurements has 1 functionary key(s), fewer than the threshold 2"},
		{"negative threshold", owner, LayoutOptions{ReadFunctionaries: []crypto.PublicKey{k1}, PublishFunctionaries: []crypto.PublicKey{k2}, Expires: future, Threshold: -1}, "threshold -1 is negative"},
		{"duplicate functionary", owner, LayoutOptions{ReadFunctionaries: []crypto.PublicKey{k1, k1}, PublishFunctionaries: []crypto.PublicKey{k2}, Expires: future}, "is listed twice for step read-measurements"},
		{"weak RSA functionary", owner, LayoutOptions{ReadFunctionaries: []crypto.PublicKey{k1}, PublishFunctionaries: []crypto.PublicKey{weakRSA.Public()}, Expires: future}, "functionary key 1 of step publish: RSA key has 1024 bits, at least 2048 are required"},
		{"P-224 functionary", owner, LayoutOptions{ReadFunctionaries: []crypto.PublicKey{p224.Public()}, PublishFunctionaries: []crypto.PublicKey{k2}, Expires: future}, "ECDSA curve P-224 is not supported"},
		{"unsupported owner", p224, LayoutOptions{ReadFunctionaries: []crypto.PublicKey{k1}, PublishFunctionaries: []crypto.PublicKey{k2}, Expires: future}, "signing key: ECDSA curve P-224"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewLayout(tt.owner, tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("NewLayout: got %v, want error containing %q", err, tt.msg)
			}
		})
	}
}

func TestInToto_NewLinkErrors(t *testing.T) {
	k := newTestKey(t, "ed25519")
	for _, tt := range []struct {
		name      string
		step      string
		materials map[string][]byte
		products  map[string][]byte
		signer    crypto.Signer
		msg       string
	}{
		{"empty step", "", nil, nil, k, "step name is empty"},
		{"step with slash", "a/b", nil, nil, k, `step name "a/b": character '/' is not allowed`},
		{"no signer", StepPublish, nil, nil, nil, "in-toto link of step publish: no functionary key"},
		{"absolute material", StepPublish, map[string][]byte{"/etc/passwd": nil}, nil, k, `material name "/etc/passwd" is absolute`},
		{"unclean product", StepPublish, nil, map[string][]byte{"./measurements.json": nil}, k, `product name "./measurements.json" is not a clean relative path`},
		{"parent product", StepPublish, nil, map[string][]byte{"../x": nil}, k, `product name "../x" is not a clean relative path`},
		{"backslash", StepPublish, nil, map[string][]byte{`a\b`: nil}, k, "contains a backslash"},
		{"empty name", StepPublish, nil, map[string][]byte{"": nil}, k, "product name is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := NewLink(tt.step, tt.materials, tt.products, tt.signer)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("NewLink: got %v, want error containing %q", err, tt.msg)
			}
		})
	}
}

// pkcs1Signer is a crypto.Signer that, like some hardware tokens, always
// pads RSA signatures with PKCS #1 v1.5 whatever it is asked for.
type pkcs1Signer struct{ *rsa.PrivateKey }

func (s pkcs1Signer) Sign(r io.Reader, digest []byte, _ crypto.SignerOpts) ([]byte, error) {
	return rsa.SignPKCS1v15(r, s.PrivateKey, crypto.SHA256, digest)
}

// opaqueSigner hides the concrete key type, as a key in a KMS or HSM does.
type opaqueSigner struct{ crypto.Signer }

func TestInToto_Signers(t *testing.T) {
	priv := newTestKey(t, "rsa").(*rsa.PrivateKey)
	_, _, err := NewLink(StepPublish, nil, nil, pkcs1Signer{priv})
	if err == nil || !strings.Contains(err.Error(), "does not verify with scheme rsassa-pss-sha256") {
		t.Fatalf("PKCS #1 v1.5 signer: got %v, want a scheme error", err)
	}
	for _, typ := range intotoKeyTypes {
		k := newTestKey(t, typ)
		_, keyID, err := NewLink(StepPublish, nil, nil, opaqueSigner{k})
		if err != nil {
			t.Fatalf("%s behind crypto.Signer: %v", typ, err)
		}
		if want, _ := KeyID(k.Public()); keyID != want {
			t.Errorf("%s: key ID %s, want %s", typ, keyID, want)
		}
	}
}

func TestInToto_LinkProducts(t *testing.T) {
	k := newTestKey(t, "ecdsa-p256")
	doc := []byte(testDoc)
	link, keyID, err := NewLink(StepReadMeasurements, map[string][]byte{"profile.json": []byte("p")},
		map[string][]byte{metadata.MeasurementsFile: doc, "dir/log.txt": []byte("log")}, k)
	if err != nil {
		t.Fatal(err)
	}
	step, gotID, products, err := LinkProducts(link)
	if err != nil {
		t.Fatalf("LinkProducts: %v", err)
	}
	if step != StepReadMeasurements || gotID != keyID {
		t.Errorf("LinkProducts = %q, %q; want %q, %q", step, gotID, StepReadMeasurements, keyID)
	}
	if len(products) != 2 || products["dir/log.txt"]["sha256"] != sha256Hex("log") {
		t.Errorf("products = %v", products)
	}
	if err := products[metadata.MeasurementsFile].Verify(doc); err != nil {
		t.Errorf("Verify(doc): %v", err)
	}
	if err := products[metadata.MeasurementsFile].Verify([]byte("other")); err == nil || !strings.Contains(err.Error(), "sha256 is "+sha256Hex("other")+", the link records "+sha256Hex(testDoc)) {
		t.Errorf("Verify(other): got %v", err)
	}

	unsigned := strings.Replace(string(link), `"signatures": [`, `"signatures": [], "x": [`, 1)
	for _, tt := range []struct {
		name, data, msg string
	}{
		{"garbage", "garbage", "in-toto link: not JSON"},
		{"no signatures field", `{"signed": {}}`, `"signed" and "signatures" are required`},
		{"null signed", `{"signed": null, "signatures": []}`, `"signed" and "signatures" are required`},
		{"missing field", `{"signed": {"_type": "link", "name": "x"}, "signatures": []}`, `link has no field "materials"`},
		{"bad hash", strings.Replace(string(link), sha256Hex("log"), "zz", 1), "in products of link 'read-measurements'"},
		{"unsigned", unsigned, `in-toto link of step "read-measurements" is not signed`},
		{"too large", strings.Repeat(" ", metadata.MaxDocumentSize+1), "more than the 1048576 allowed"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := LinkProducts([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("LinkProducts: got %v, want error containing %q", err, tt.msg)
			}
		})
	}
}

func TestInToto_DigestsVerify(t *testing.T) {
	content := []byte("content")
	s256 := sha256.Sum256(content)
	s384 := sha512.Sum384(content)
	s512 := sha512.Sum512(content)
	for _, tt := range []struct {
		name string
		d    Digests
		msg  string // empty: must verify
	}{
		{"sha256", Digests{"sha256": hex.EncodeToString(s256[:])}, ""},
		{"uppercase hex", Digests{"sha256": strings.ToUpper(hex.EncodeToString(s256[:]))}, ""},
		{"all three", Digests{"sha256": hex.EncodeToString(s256[:]), "sha384": hex.EncodeToString(s384[:]), "sha512": hex.EncodeToString(s512[:])}, ""},
		{"unknown ignored", Digests{"sha512": hex.EncodeToString(s512[:]), "blake2b": "00"}, ""},
		{"one of two wrong", Digests{"sha256": hex.EncodeToString(s256[:]), "sha512": strings.Repeat("0", 128)}, "sha512 is " + hex.EncodeToString(s512[:])},
		{"only unknown", Digests{"md5": "00", "blake2b": "00"}, "no sha256, sha384 or sha512 digest (only blake2b, md5)"},
		{"empty", Digests{}, "no sha256"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.d.Verify(content)
			if tt.msg == "" && err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if tt.msg != "" && (err == nil || !strings.Contains(err.Error(), tt.msg)) {
				t.Fatalf("Verify: got %v, want error containing %q", err, tt.msg)
			}
		})
	}
}

func TestInToto_LinkFileName(t *testing.T) {
	id := strings.Repeat("0123456789abcdef", 4)
	name, err := metadata.LinkFileName(StepReadMeasurements, id)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(in_toto.LinkNameFormat, StepReadMeasurements, id); name != want {
		t.Errorf("LinkFileName = %q, in-toto names it %q", name, want)
	}
	target, err := metadata.LinkTarget("v1", "qemu-vtpm", StepReadMeasurements, id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(target, "/"+name) {
		t.Errorf("LinkTarget %q does not end in the file name %q", target, name)
	}
	for _, tt := range []struct{ step, id, msg string }{
		{"a/b", id, "step name"},
		{StepPublish, "abc", "too short"},
		{StepPublish, "ABCDEF0123", "not lowercase hex"},
	} {
		if _, err := metadata.LinkFileName(tt.step, tt.id); err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("LinkFileName(%q, %q): got %v, want error containing %q", tt.step, tt.id, err, tt.msg)
		}
	}
}

func TestInToto_PublicKeyExport(t *testing.T) {
	for _, typ := range intotoKeyTypes {
		t.Run(typ, func(t *testing.T) {
			k := newTestKey(t, typ)
			data, err := ExportPublicKey(k.Public())
			if err != nil {
				t.Fatal(err)
			}
			if typ == "rsa" {
				if !strings.HasPrefix(string(data), "-----BEGIN PUBLIC KEY-----\n") {
					t.Errorf("RSA key is not PEM:\n%s", data)
				}
			} else {
				var f map[string]any
				if err := json.Unmarshal(data, &f); err != nil {
					t.Fatalf("%s key is not JSON: %v\n%s", typ, err, data)
				}
				for _, field := range []string{"keytype", "scheme", "keyid_hash_algorithms", "keyval"} {
					if _, ok := f[field]; !ok {
						t.Errorf("key has no field %q:\n%s", field, data)
					}
				}
			}
			pub, err := ParsePublicKey(data)
			if err != nil {
				t.Fatalf("ParsePublicKey: %v", err)
			}
			if !pub.(interface{ Equal(crypto.PublicKey) bool }).Equal(k.Public()) {
				t.Errorf("round trip changed the key")
			}
		})
	}
}

func TestInToto_ParsePublicKeyErrors(t *testing.T) {
	ed := newTestKey(t, "ed25519")
	edJSON, _ := ExportPublicKey(ed.Public())
	p256 := newTestKey(t, "ecdsa-p256")
	p256JSON, _ := ExportPublicKey(p256.Public())
	for _, tt := range []struct{ name, data, msg string }{
		{"empty", "  \n", "in-toto public key is empty"},
		{"neither", "hello", "neither securesystemslib JSON nor PEM"},
		{"PEM private key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", `PEM block is "PRIVATE KEY", want "PUBLIC KEY"`},
		{"bad JSON", "{", "not valid JSON"},
		{"private key JSON", strings.Replace(string(edJSON), `"public"`, `"private":"00","public"`, 1), "the file holds a private key"},
		{"unknown type", `{"keytype":"dsa","scheme":"dsa","keyval":{"public":"00"}}`, `key type "dsa" is not supported`},
		{"bad hex", `{"keytype":"ed25519","scheme":"ed25519","keyval":{"public":"zz"}}`, "ed25519 public key is not hex"},
		{"wrong scheme", strings.Replace(string(p256JSON), "nistp256", "nistp384", 1), `holds a key for type "ecdsa" with scheme "ecdsa-sha2-nistp256"`},
		{"ecdsa not PEM", `{"keytype":"ecdsa","scheme":"ecdsa-sha2-nistp256","keyval":{"public":"00"}}`, `ecdsa public key is not a PEM "PUBLIC KEY" block`},
		{"type confusion", strings.Replace(string(p256JSON), `"keytype":"ecdsa"`, `"keytype":"rsa"`, 1), `holds a key for type "ecdsa"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePublicKey([]byte(tt.data))
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("got %v, want error containing %q", err, tt.msg)
			}
		})
	}
}

// fixture is testdata/intoto, made by in-toto 1.3.1 (Python) with
// testdata/intoto/generate.sh: its keys, layout and links.
const fixtureDir = "testdata/intoto"

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtureDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestInToto_KeyIDsMatchSecuresystemslib checks key IDs against the ones
// securesystemslib wrote into the private key files it generated.
func TestInToto_KeyIDsMatchSecuresystemslib(t *testing.T) {
	for _, name := range []string{"owner-test", "reader-test", "publisher-test"} {
		t.Run(name, func(t *testing.T) {
			pub, err := ParsePublicKey(readFixture(t, name+".pub"))
			if err != nil {
				t.Fatalf("ParsePublicKey: %v", err)
			}
			id, err := KeyID(pub)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.TrimSpace(string(readFixture(t, name+".keyid")))
			if id != want {
				t.Errorf("KeyID = %s, securesystemslib says %s", id, want)
			}
		})
	}
}

// TestInToto_VerifyPythonFixture verifies a supply chain made entirely by
// in-toto 1.3.1: layout, keys and links.
func TestInToto_VerifyPythonFixture(t *testing.T) {
	owner, err := ParsePublicKey(readFixture(t, "owner-test.pub"))
	if err != nil {
		t.Fatal(err)
	}
	layout := readFixture(t, "root.layout")
	doc := readFixture(t, metadata.MeasurementsFile)
	links := map[string][]byte{}
	entries, err := os.ReadDir(fixtureDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".link") {
			links[e.Name()] = readFixture(t, e.Name())
		}
	}
	if len(links) != 2 {
		t.Fatalf("fixture has %d links, want 2", len(links))
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := VerifySupplyChain(layout, []crypto.PublicKey{owner}, links, doc, now); err != nil {
		t.Fatalf("VerifySupplyChain: %v", err)
	}
	if err := VerifySupplyChain(layout, []crypto.PublicKey{owner}, links, append(doc, ' '), now); !errors.Is(err, ErrMeasurementsMismatch) {
		t.Errorf("changed document: got %v, want ErrMeasurementsMismatch", err)
	}
	if err := VerifySupplyChain(layout, []crypto.PublicKey{owner}, links, doc, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)); !errors.Is(err, ErrLayoutExpired) {
		t.Errorf("after expiry: got %v, want ErrLayoutExpired", err)
	}
	for name, data := range links {
		step, keyID, products, err := LinkProducts(data)
		if err != nil {
			t.Fatalf("LinkProducts(%s): %v", name, err)
		}
		if want, _ := metadata.LinkFileName(step, keyID); want != name {
			t.Errorf("link %s: LinkFileName(%s, %s) = %s", name, step, keyID, want)
		}
		if step == StepReadMeasurements {
			if err := products[metadata.MeasurementsFile].Verify(doc); err != nil {
				t.Errorf("read-measurements product: %v", err)
			}
		}
	}
}

// TestInToto_LayoutSignedByInTotoGolang re-signs a layout with
// in-toto-golang's own key loader and Metablock.Sign, whose ECDSA key IDs
// hash the PEM without its final newline, unlike securesystemslib's.
func TestInToto_LayoutSignedByInTotoGolang(t *testing.T) {
	for _, typ := range intotoKeyTypes {
		t.Run(typ, func(t *testing.T) {
			c := newTestChain(t, typ)
			der, err := x509.MarshalPKCS8PrivateKey(c.owner)
			if err != nil {
				t.Fatal(err)
			}
			keyPEM := bytes.NewReader(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
			var key in_toto.Key
			if typ == "ecdsa-p384" {
				// in-toto-golang's default scheme for every curve is P-256's.
				err = key.LoadKeyReader(keyPEM, "ecdsa-sha2-nistp384", []string{"sha256", "sha512"})
			} else {
				err = key.LoadKeyReaderDefaults(keyPEM)
			}
			if err != nil {
				t.Fatal(err)
			}
			mb := in_toto.Metablock{Signed: parsedLayout(t, c.layout)}
			if err := mb.Sign(key); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "root.layout")
			if err := mb.Dump(path); err != nil {
				t.Fatal(err)
			}
			if c.layout, err = os.ReadFile(path); err != nil {
				t.Fatal(err)
			}
			if err := c.verify(time.Now()); err != nil {
				t.Fatalf("VerifySupplyChain of a layout signed by in-toto-golang (key ID %s): %v", key.KeyID, err)
			}
		})
	}
}

// FuzzInTotoLink feeds arbitrary bytes as the read-measurements link of an
// otherwise good chain: verification must fail cleanly, never panic, and
// never accept a link that is not the signed original.
func FuzzInTotoLink(f *testing.F) {
	c := newTestChain(f, "ed25519")
	name := linkName(f, StepReadMeasurements, c.readKeyID)
	good := c.links[name]
	f.Add(good)
	f.Add([]byte(`{"signed":{"_type":"link"},"signatures":[]}`))
	f.Add([]byte(strings.Replace(string(good), `"materials": {}`, `"materials": null`, 1)))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _, _, _ = LinkProducts(data)
		links := maps.Clone(c.links)
		links[name] = data
		err := VerifySupplyChain(c.layout, []crypto.PublicKey{c.owner.Public()}, links, c.doc, time.Now())
		if err == nil {
			// Only a re-encoding of the signed original can verify.
			_, l, perr := parseLink(data)
			if perr != nil || l.Products[metadata.MeasurementsFile]["sha256"] != sha256Hex(testDoc) {
				t.Fatalf("accepted a link that is not the original: %q", data)
			}
		}
	})
}
