package metadata

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
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
