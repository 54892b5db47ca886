package metadata

import (
	"bytes"
	"crypto"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse checks that no input makes Parse panic, and that every accepted
// document is valid and survives Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"measurements.golden.json", "legacy-bare.yaml", "measurements-azure.yaml", "release-v2.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		doc("sha256", `{"4":"`+hex32+`"}`),
		doc("sha384", `{"4":{"expected":"`+hex48+`","warnOnly":true}}`),
		doc("", `{"0":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`),
		"image: v1\nplatform: p\npcrs:\n  4: " + hex32 + "\n",
		"image: v1\nplatform: p\nhash: sha384\npcrs: {23: {expected: " + hex48 + ", warnOnly: false}}\n",
		`{"image":"v1","platform":"p","pcrs":{"04":"x"}}`,
		"a: &x [1]\nb: *x\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			if m != nil {
				t.Fatal("document returned with an error")
			}
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted an invalid document: %v", err)
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("accepted document does not encode: %v", err)
		}
		back, err := Parse(out)
		if err != nil {
			t.Fatalf("canonical encoding does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip changed the document:\n%+v\n%+v", m, back)
		}
		again, err := back.Marshal()
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("encoding is not stable:\n%s\n%s", out, again)
		}
	})
}

// FuzzParseProfile checks that no input makes parseProfile panic, that a
// refused profile gives an error and no profile, and that an accepted one
// decides exactly the PCRs 0..23, each with a known action and a reason,
// and turns a full set of PCR values into a valid measurements document.
func FuzzParseProfile(f *testing.F) {
	for _, platform := range Platforms() {
		data, err := profileFiles.ReadFile("profiles/" + platform + ".yaml")
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"platform":"p","source":"s","pcrs":{"0":{"action":"enforce","reason":"r"}}}`))
	f.Add([]byte("platform: p\nsource: s\npcrs: {24: {action: omit, reason: r}}\n"))
	f.Add([]byte("platform: p\nsource: s\npcrs: []\n"))
	f.Add([]byte(""))
	values := make(map[uint32][]byte)
	for idx := uint32(0); idx <= MaxPCRIndex; idx++ {
		values[idx] = bytes.Repeat([]byte{byte(idx + 1)}, 32)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := parseProfile(data)
		if err != nil {
			if p != nil {
				t.Fatal("profile returned with an error")
			}
			return
		}
		if err := ValidatePlatform(p.Platform); err != nil {
			t.Fatalf("accepted a profile of an invalid platform: %v", err)
		}
		if len(p.PCRs) != MaxPCRIndex+1 {
			t.Fatalf("accepted a profile deciding %d PCRs", len(p.PCRs))
		}
		for idx, r := range p.PCRs {
			if idx > MaxPCRIndex {
				t.Fatalf("accepted a rule for PCR %d", idx)
			}
			if _, ok := actionNames[r.Action]; !ok || r.Reason == "" {
				t.Fatalf("accepted PCR %d with action %v and reason %q", idx, r.Action, r.Reason)
			}
		}
		m, err := p.Apply("v1.0.0", "sha256", values, nil, nil)
		if err != nil {
			// A profile that omits every PCR leaves nothing to measure.
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("accepted profile builds an invalid document: %v", err)
		}
	})
}

// FuzzParseAll checks the readers of every layout a measurements file may
// come in (Parse, ParseRelease, ParseLegacyYAML through ParseAll): no
// panic, no documents with an error, and every document returned valid and
// unchanged by Marshal and Parse.
func FuzzParseAll(f *testing.F) {
	for _, name := range []string{"measurements.golden.json", "legacy-bare.yaml", "measurements-azure.yaml", "release-v2.json"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data, "")
		f.Add(data, "v1.0.0")
	}
	f.Add([]byte(`{"version":"v1","list":[]}`), "")
	f.Add([]byte(`{"azure":{"4":"`+hex32+`"}}`), "v2")
	f.Fuzz(func(t *testing.T, data []byte, image string) {
		docs, err := ParseAll(data, image)
		if err != nil {
			if docs != nil {
				t.Fatal("documents returned with an error")
			}
			return
		}
		for i, m := range docs {
			if m == nil {
				t.Fatalf("document %d is nil", i)
			}
			if image != "" && m.Image != image {
				t.Fatalf("document %d is of image %q, asked for %q", i, m.Image, image)
			}
			if err := m.Validate(); err != nil {
				t.Fatalf("document %d is invalid: %v", i, err)
			}
			out, err := m.Marshal()
			if err != nil {
				t.Fatalf("document %d does not encode: %v", i, err)
			}
			back, err := Parse(out)
			if err != nil || !reflect.DeepEqual(back, m) {
				t.Fatalf("document %d does not round-trip: %v", i, err)
			}
		}
	})
}

// FuzzParseCustom checks the readers of the custom metadata a client takes
// from the repository: ParseLayoutCustom returns between one and
// MaxLayoutOwners keys or an error, and the owner keys it reads survive
// NewLayoutCustom and ParseLayoutCustom; ParseMeasurementsCustom never
// panics.
func FuzzParseCustom(f *testing.F) {
	f.Add([]byte(`{"kind":"layout","ownerKeys":[{"keyid":"k","publicKey":"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"}]}`))
	f.Add([]byte(`{"kind":"measurements","image":"v1","platform":"p","links":["a","b"]}`))
	f.Add([]byte(`{"ownerKeys":[]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		_, _ = ParseMeasurementsCustom(raw)
		keys, err := ParseLayoutCustom(raw)
		if err != nil {
			if keys != nil {
				t.Fatal("keys returned with an error")
			}
			return
		}
		if len(keys) == 0 || len(keys) > MaxLayoutOwners {
			t.Fatalf("accepted %d owner keys", len(keys))
		}
		again, _, err := NewLayoutCustom(keys, func(crypto.PublicKey) (string, error) { return "id", nil })
		if err != nil {
			// A key x509 reads but the layout cannot hold.
			return
		}
		back, err := ParseLayoutCustom(again)
		if err != nil || !reflect.DeepEqual(back, keys) {
			t.Fatalf("owner keys do not round-trip: %v", err)
		}
	})
}

// FuzzParseTarget checks that a target name ParseTarget accepts is the
// name its builders make from the parts it returns.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		LayoutTarget,
		"measurements/v1.0.0/gcp-sev-snp/" + MeasurementsFile,
		"measurements/v1.0.0/gcp-sev-snp/read-measurements.0123abcd.link",
		"cli/v1.2.3/linux-amd64/mtuf",
		"cli/v1.2.3/linux-amd64/mtuf.sig",
		"measurements/../x/" + MeasurementsFile,
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		c, err := ParseTarget(name)
		if err != nil {
			if c != (TargetCustom{}) {
				t.Fatal("custom metadata returned with an error")
			}
			return
		}
		var again string
		switch c.Kind {
		case KindLayout:
			again = LayoutTarget
		case KindMeasurements:
			again, err = MeasurementsTarget(c.Image, c.Platform)
		case KindLink:
			if !strings.HasSuffix(name, "."+c.KeyID+linkSuffix) {
				t.Fatalf("link %q parsed with key ID prefix %q", name, c.KeyID)
			}
			again = name
		case KindCLI:
			again, err = CLITarget(c.Version, c.OS, c.Arch)
		case KindCLISignature:
			again, err = CLISigTarget(c.Version, c.OS, c.Arch)
		default:
			t.Fatalf("accepted %q as a target of kind %q", name, c.Kind)
		}
		if err != nil || again != name {
			t.Fatalf("ParseTarget(%q) = %+v, which builds %q (%v)", name, c, again, err)
		}
	})
}
