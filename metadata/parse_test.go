package metadata

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

var (
	hex32 = strings.Repeat("ab", 32) // 64 hex digits
	hex48 = strings.Repeat("cd", 48) // 96 hex digits
	b64of = func(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
)

// doc builds a JSON document around a pcrs object literal.
func doc(hash, pcrs string) string {
	h := ""
	if hash != "" {
		h = fmt.Sprintf(`"hash":%q,`, hash)
	}
	return `{"image":"v2.15.0","platform":"azure-sev-snp",` + h + `"pcrs":` + pcrs + `}`
}

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		pcr   int // PCR the problem must name as a *PCRError, -1 for none
		want  []string
	}{
		// Digest lengths, in every encoding.
		{"hex 31 bytes", doc("sha256", `{"4":{"expected":"`+hex32[:62]+`","warnOnly":false}}`), 4, []string{"PCR 4: expected digest is 31 bytes, sha256 needs 32"}},
		{"bare hex 33 bytes", doc("sha256", `{"9":"`+hex32+`ab"}`), 9, []string{"PCR 9: expected digest is 33 bytes, sha256 needs 32"}},
		{"hex 48 bytes in sha256", doc("sha256", `{"4":"`+hex48+`"}`), 4, []string{"PCR 4: expected digest is 48 bytes, sha256 needs 32"}},
		{"hex 48 bytes, hash omitted", doc("", `{"4":"`+hex48+`"}`), 4, []string{"PCR 4: expected digest is 48 bytes, sha256 needs 32"}},
		{"base64 32 bytes in sha384", doc("sha384", `{"12":"`+b64of(digest(32, 7))+`"}`), 12, []string{"PCR 12: expected digest is 32 bytes, sha384 needs 48"}},
		{"base64 48 bytes in sha256", doc("sha256", `{"4":"`+b64of(digest(48, 0xfb))+`"}`), 4, []string{"PCR 4: expected digest is 48 bytes, sha256 needs 32"}},
		{"neither hex nor base64", doc("sha256", `{"4":"not a digest"}`), 4, []string{"PCR 4", "neither hex nor padded base64"}},
		{"unpadded base64", doc("sha256", `{"4":"`+strings.TrimRight(b64of(digest(32, 1)), "=")+`"}`), 4, []string{"PCR 4", "neither hex nor padded base64"}},
		{"empty digest", doc("sha256", `{"4":""}`), 4, []string{"PCR 4: expected digest is empty"}},
		{"expected missing", doc("sha256", `{"4":{"warnOnly":true}}`), 4, []string{"PCR 4: expected digest is missing"}},
		{"expected null", doc("sha256", `{"4":{"expected":null}}`), 4, []string{"PCR 4: expected digest is missing"}},
		{"expected number", doc("sha256", `{"4":{"expected":1234}}`), 4, []string{"PCR 4: expected digest must be a string, not a number"}},
		{"warnOnly string", doc("sha256", `{"4":{"expected":"`+hex32+`","warnOnly":"yes"}}`), 4, []string{"PCR 4: warnOnly must be true or false, not a string"}},
		{"PCR null", doc("sha256", `{"4":null}`), 4, []string{"PCR 4: has no value"}},
		{"PCR list", doc("sha256", `{"4":["`+hex32+`"]}`), 4, []string{"PCR 4: must be a digest string or an object", "not a list"}},

		// Strict fields.
		{"warnonly typo", doc("sha256", `{"4":{"expected":"`+hex32+`","warnonly":true}}`), 4, []string{`PCR 4: unknown field "warnonly" (did you mean "warnOnly"?)`}},
		{"extra PCR field", doc("sha256", `{"4":{"expected":"`+hex32+`","comment":"x"}}`), 4, []string{`PCR 4: unknown field "comment" (known fields: expected, warnOnly)`}},
		{"top-level typo", `{"image":"v1","platform":"p","hash":"sha256","PCRs":{"4":"` + hex32 + `"}}`, -1, []string{`unknown field "PCRs" (did you mean "pcrs"?)`}},
		{"top-level extra", `{"image":"v1","platform":"p","version":"x","pcrs":{"4":"` + hex32 + `"}}`, -1, []string{`unknown field "version"`}},

		// PCR indices.
		{"leading zero", doc("sha256", `{"04":"`+hex32+`"}`), -1, []string{`PCR "04": index must be written without leading zeros (4)`}},
		{"zero zero", doc("sha256", `{"00":"`+hex32+`"}`), -1, []string{`PCR "00"`, "without leading zeros (0)"}},
		{"negative", doc("sha256", `{"-1":"`+hex32+`"}`), -1, []string{`PCR "-1": index must be a decimal number 0..23`}},
		{"index 24", doc("sha256", `{"24":"`+hex32+`"}`), -1, []string{"PCR 24: index out of range 0..23"}},
		{"index overflow", doc("sha256", `{"99999999999":"`+hex32+`"}`), -1, []string{"PCR 99999999999: index out of range 0..23"}},
		{"letter", doc("sha256", `{"x":"`+hex32+`"}`), -1, []string{`PCR "x": index must be a decimal number`}},
		{"space", doc("sha256", `{" 4":"`+hex32+`"}`), -1, []string{`PCR " 4": index must be a decimal number`}},
		{"plus sign", doc("sha256", `{"+4":"`+hex32+`"}`), -1, []string{`PCR "+4"`}},
		{"empty index", doc("sha256", `{"":"`+hex32+`"}`), -1, []string{`PCR "": index is empty`}},

		// Document fields.
		{"no PCRs", doc("sha256", `{}`), -1, []string{"no PCRs: a document must pin at least one PCR"}},
		{"pcrs missing", `{"image":"v1","platform":"p","hash":"sha256"}`, -1, []string{"pcrs is missing"}},
		{"pcrs null", doc("sha256", `null`), -1, []string{"pcrs is missing"}},
		{"pcrs list", doc("sha256", `["`+hex32+`"]`), -1, []string{"pcrs must be an object", "not a list"}},
		{"bad hash", doc("md5", `{"4":"`+hex32+`"}`), -1, []string{`hash "md5" is not supported: use "sha256" or "sha384"`}},
		{"hash not a string", `{"image":"v1","platform":"p","hash":256,"pcrs":{"4":"` + hex32 + `"}}`, -1, []string{"hash must be a string, not a number"}},
		{"image missing", `{"platform":"p","pcrs":{"4":"` + hex32 + `"}}`, -1, []string{"image is missing"}},
		{"image empty", `{"image":"","platform":"p","pcrs":{"4":"` + hex32 + `"}}`, -1, []string{"image version is empty"}},
		{"image traversal", `{"image":"../../etc","platform":"p","pcrs":{"4":"` + hex32 + `"}}`, -1, []string{`image version "../../etc"`}},
		{"image not a string", `{"image":2,"platform":"p","pcrs":{"4":"` + hex32 + `"}}`, -1, []string{"image must be a string"}},
		{"platform missing", `{"image":"v1","pcrs":{"4":"` + hex32 + `"}}`, -1, []string{"platform is missing"}},
		{"platform with space", `{"image":"v1","platform":"azure sev","pcrs":{"4":"` + hex32 + `"}}`, -1, []string{`platform "azure sev": character ' ' is not allowed`}},

		// Syntax and structure.
		{"duplicate PCR", doc("sha256", `{"4":"`+hex32+`","4":"`+hex32+`"}`), -1, []string{`key "4" appears twice`}},
		{"duplicate field", `{"image":"v1","image":"v2","platform":"p","pcrs":{"4":"` + hex32 + `"}}`, -1, []string{`key "image" appears twice`}},
		{"trailing data", doc("sha256", `{"4":"`+hex32+`"}`) + `{}`, -1, []string{"unexpected data after the document"}},
		{"broken JSON", `{"image":"v1",`, -1, []string{"not valid JSON"}},
		{"top-level list", `[1,2]`, -1, []string{"must be an object", "not a list"}},
		{"empty", "  \n", -1, []string{"document is empty"}},
		{"YAML scalar", "just text", -1, []string{"must be an object", "not a string"}},
		{"deep nesting", strings.Repeat("[", 40) + strings.Repeat("]", 40), -1, []string{"nesting deeper than"}},
		{"too large", doc("sha256", `{"4":"`+strings.Repeat("a", MaxDocumentSize)+`"}`), -1, []string{"at most 1048576 are accepted"}},

		// YAML specifics.
		{"YAML typo with line", "image: v1\nplatform: p\npcrs:\n  4:\n    expected: " + hex32 + "\n    warnonly: true\n", 4, []string{"line 5: PCR 4", `unknown field "warnonly" (did you mean "warnOnly"?)`}},
		{"YAML short digest with line", "image: v1\nplatform: p\npcrs:\n  7: " + hex32[:62] + "\n", 7, []string{"line 4: PCR 7: expected digest is 31 bytes, sha256 needs 32"}},
		{"YAML empty PCR", "image: v1\nplatform: p\npcrs:\n  7:\n", 7, []string{"PCR 7: has no value"}},
		{"YAML leading zero", "image: v1\nplatform: p\npcrs:\n  07: " + hex32 + "\n", -1, []string{`PCR "07"`}},
		{"YAML hex index", "image: v1\nplatform: p\npcrs:\n  0x4: " + hex32 + "\n", -1, []string{`PCR "0x4"`}},
		{"YAML duplicate key", "image: v1\nplatform: p\npcrs:\n  4: " + hex32 + "\n  4: " + hex32 + "\n", -1, []string{`line 5: key "4" appears twice`}},
		{"YAML alias", "image: v1\nplatform: p\npcrs:\n  4: &d " + hex32 + "\n  5: *d\n", -1, []string{"aliases", "not supported"}},
		{"YAML merge key", "image: v1\nplatform: p\npcrs:\n  4: {expected: " + hex32 + "}\n  5:\n    <<: {expected: " + hex32 + "}\n", -1, []string{"merge keys"}},
		{"YAML two documents", "image: v1\nplatform: p\npcrs: {4: " + hex32 + "}\n---\nimage: v2\n", -1, []string{"second YAML document"}},
		{"YAML syntax", "image: [v1\n", -1, []string{"not valid YAML"}},
		{"YAML warnOnly string", "image: v1\nplatform: p\npcrs:\n  4: {expected: " + hex32 + ", warnOnly: \"true\"}\n", 4, []string{"warnOnly must be true or false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.input))
			if m != nil {
				t.Errorf("Parse returned a document with error %v", err)
			}
			if err == nil {
				t.Fatalf("accepted: %s", truncate(tt.input, 200))
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				// Syntax errors come before validation and are plain errors.
				if tt.pcr >= 0 {
					t.Fatalf("error %q is not a *ValidationError", err)
				}
				for _, w := range tt.want {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			wantProblem(t, err, tt.pcr, tt.want...)
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	input := `{"image":"","platform":"p","hash":"sha256","pcrs":{"4":"` + hex32[:62] + `","9":{"expected":"` + hex32 + `","warnonly":true},"24":"` + hex32 + `"}}`
	_, err := Parse([]byte(input))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("got %v", err)
	}
	if len(ve.Problems) != 4 {
		t.Errorf("want 4 problems (image, PCR 4, PCR 9, PCR 24), got %d:\n%v", len(ve.Problems), err)
	}
	for _, w := range []string{"image version is empty", "PCR 4: expected digest is 31 bytes", `PCR 9: unknown field "warnonly"`, "PCR 24: index out of range"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}
}

func TestParseAcceptsOlderLayouts(t *testing.T) {
	d32 := digest(32, 0x5a)
	d48 := digest(48, 0x5a)
	tests := []struct {
		name  string
		input string
		hash  string
		pcrs  map[uint32]PCR
	}{
		{"canonical", doc("sha256", `{"4":{"expected":"`+hex.EncodeToString(d32)+`","warnOnly":true}}`), HashSHA256,
			map[uint32]PCR{4: {Expected: d32, WarnOnly: true}}},
		{"warnOnly omitted is enforced", doc("sha256", `{"4":{"expected":"`+hex.EncodeToString(d32)+`"}}`), HashSHA256,
			map[uint32]PCR{4: {Expected: d32}}},
		{"bare hex is enforced", doc("sha256", `{"4":"`+hex.EncodeToString(d32)+`"}`), HashSHA256,
			map[uint32]PCR{4: {Expected: d32}}},
		{"upper-case hex", doc("sha256", `{"4":"`+strings.ToUpper(hex.EncodeToString(d32))+`"}`), HashSHA256,
			map[uint32]PCR{4: {Expected: d32}}},
		{"bare base64", doc("sha256", `{"4":"`+b64of(d32)+`"}`), HashSHA256,
			map[uint32]PCR{4: {Expected: d32}}},
		{"base64 in object", doc("sha256", `{"4":{"expected":"`+b64of(d32)+`","warnOnly":true}}`), HashSHA256,
			map[uint32]PCR{4: {Expected: d32, WarnOnly: true}}},
		{"hash omitted means sha256", doc("", `{"4":"`+hex.EncodeToString(d32)+`"}`), HashSHA256,
			map[uint32]PCR{4: {Expected: d32}}},
		{"sha384 hex", doc("sha384", `{"4":"`+hex.EncodeToString(d48)+`"}`), HashSHA384,
			map[uint32]PCR{4: {Expected: d48}}},
		{"sha384 base64", doc("sha384", `{"4":"`+b64of(d48)+`"}`), HashSHA384,
			map[uint32]PCR{4: {Expected: d48}}},
		// The base64 of an all-zero sha384 PCR is 64 hex digits ("AAAA...");
		// in a sha384 document it must read as base64.
		{"sha384 zero PCR in base64", doc("sha384", `{"0":"`+b64of(make([]byte, 48))+`"}`), HashSHA384,
			map[uint32]PCR{0: {Expected: make([]byte, 48)}}},
		{"every index", doc("sha256", `{"0":"`+hex32+`","9":"`+hex32+`","10":"`+hex32+`","23":"`+hex32+`"}`), HashSHA256,
			map[uint32]PCR{0: {Expected: mustHex(t, hex32)}, 9: {Expected: mustHex(t, hex32)}, 10: {Expected: mustHex(t, hex32)}, 23: {Expected: mustHex(t, hex32)}}},
		{"YAML", "image: v2.15.0\nplatform: azure-sev-snp\nhash: sha256\npcrs:\n  4:\n    expected: " + hex.EncodeToString(d32) + "\n    warnOnly: true\n", HashSHA256,
			map[uint32]PCR{4: {Expected: d32, WarnOnly: true}}},
		// Unquoted, an all-digit hex digest is a number to YAML; its text is meant.
		{"YAML all-digit hex", "image: v2.15.0\nplatform: azure-sev-snp\npcrs:\n  8: " + strings.Repeat("0", 64) + "\n  9: " + strings.Repeat("1", 64) + "\n", HashSHA256,
			map[uint32]PCR{8: {Expected: make([]byte, 32)}, 9: {Expected: digest(32, 0x11)}}},
		{"YAML quoted keys, flow style", "image: \"v2.15.0\"\nplatform: 'azure-sev-snp'\npcrs: {\"4\": " + b64of(d32) + "}\n", HashSHA256,
			map[uint32]PCR{4: {Expected: d32}}},
		{"BOM and whitespace", "\xef\xbb\xbf\n  " + doc("sha256", `{"4":"`+hex.EncodeToString(d32)+`"}`) + "\n", HashSHA256,
			map[uint32]PCR{4: {Expected: d32}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			want := &Measurements{Image: "v2.15.0", Platform: "azure-sev-snp", Hash: tt.hash, PCRs: tt.pcrs}
			if !reflect.DeepEqual(m, want) {
				t.Errorf("got  %+v\nwant %+v", m, want)
			}
		})
	}
}

func TestParseLegacyBareFixture(t *testing.T) {
	m, err := Parse(readTestdata(t, "legacy-bare.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := &Measurements{Image: "v2.2.0", Platform: "gcp-sev-es", Hash: HashSHA256, PCRs: map[uint32]PCR{
		4:  {Expected: mustHex(t, "32797acb5e9f1d6a70486599b121622dce0d617461437f54aa40a51dc0db276b")},
		9:  {Expected: mustHex(t, "870c450e684d44e952ee8061e1d1b78f307839e4001a17190fd7fa6f006d2bf9")},
		12: {Expected: make([]byte, 32)},
		14: {Expected: make([]byte, 32), WarnOnly: true},
	}}
	if !reflect.DeepEqual(m, want) {
		t.Errorf("got  %+v\nwant %+v", m, want)
	}
}

// TestDecodeDigestRule pins down how hex and base64 are told apart.
func TestDecodeDigestRule(t *testing.T) {
	all := func(b byte, n int) string { return strings.Repeat(string(b), n) }
	tests := []struct {
		name, s, hash string
		want          []byte // nil: an error is expected
	}{
		{"64 hex digits in sha256 are hex", all('a', 64), HashSHA256, digest(32, 0xaa)},
		{"64 hex digits in sha384 are base64", all('A', 64), HashSHA384, make([]byte, 48)},
		{"44 base64 chars in sha256", b64of(digest(32, 9)), HashSHA256, digest(32, 9)},
		{"96 hex digits in sha384", all('f', 96), HashSHA384, digest(48, 0xff)},
		{"64 base64 chars with non-hex letters in sha384", b64of(digest(48, 0xfb)), HashSHA384, digest(48, 0xfb)},
		{"64 base64 chars with non-hex letters in sha256", b64of(digest(48, 0xfb)), HashSHA256, nil},
		{"96 hex digits in sha256", all('f', 96), HashSHA256, nil},
		{"44 base64 chars in sha384", b64of(digest(32, 9)), HashSHA384, nil},
		{"odd hex", all('a', 63), HashSHA256, nil},
		{"url-safe base64", strings.NewReplacer("+", "-", "/", "_").Replace(b64of(digest(32, 0xfb))), HashSHA256, nil},
		{"hex with whitespace", " " + all('a', 64), HashSHA256, nil},
		{"base64 with a line break", b64of(digest(32, 9))[:20] + "\n" + b64of(digest(32, 9))[20:], HashSHA256, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeDigest(tt.s, tt.hash)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("accepted as %x", got)
				}
				return
			}
			if err != nil || !bytes.Equal(got, tt.want) {
				t.Fatalf("got %x, %v; want %x", got, err, tt.want)
			}
		})
	}
}

func TestParseLegacyYAML(t *testing.T) {
	data := readTestdata(t, "measurements-azure.yaml")
	docs, err := ParseLegacyYAML(data, "v1.2.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 1 {
		t.Fatalf("got %d documents, want 1", len(docs))
	}
	m := docs[0]
	if m.Image != "v1.2.0" || m.Platform != "azure-sev-snp" || m.Hash != HashSHA256 {
		t.Errorf("got %s/%s/%s", m.Image, m.Platform, m.Hash)
	}
	if got, want := m.Indices(), []uint32{1, 2, 3, 4, 5, 7, 8, 9}; !slices.Equal(got, want) {
		t.Errorf("PCRs %v, want %v (commented PCRs 0, 6, 10, 11, 12 absent)", got, want)
	}
	for idx, p := range m.PCRs {
		if p.WarnOnly {
			t.Errorf("PCR %d is warn-only; a bare legacy value is enforced", idx)
		}
	}
	// Checked against the fixture's text, decoded independently.
	for idx, b64 := range map[uint32]string{
		1: "0GqVBBcu78dlLW03pON6OJbjQTMsKZmN+SV88kWHPss=",
		4: "Mnl6y16fHWpwSGWZsSFiLc4NYXRhQ39UqkClHcDbJ2s=",
		9: "hwxFDmhNROlS7oBh4dG3jzB4OeQAGhcZD9f6bwBtK/k=",
	} {
		if !bytes.Contains(data, []byte(fmt.Sprintf("%d: %s", idx, b64))) {
			t.Fatalf("fixture lacks PCR %d", idx)
		}
		want, _ := base64.StdEncoding.DecodeString(b64)
		if !bytes.Equal(m.PCRs[idx].Expected, want) {
			t.Errorf("PCR %d = %x, want %x", idx, m.PCRs[idx].Expected, want)
		}
	}
	if _, err := m.Marshal(); err != nil {
		t.Errorf("legacy document does not encode: %v", err)
	}

	// Another mapping of clouds to platforms.
	docs, err = ParseLegacyYAML(data, "v1.2.0", map[string]string{"azure": "azure-trustedlaunch"})
	if err != nil || docs[0].Platform != "azure-trustedlaunch" {
		t.Errorf("custom mapping: %v", err)
	}
}

func TestParseLegacyYAMLMultipleClouds(t *testing.T) {
	input := "gcp:\n  image: projects/x/global/images/y\n  measurements:\n    0: " + b64of(digest(32, 1)) + "\n" +
		"aws:\n  image: ami-123\n  measurements:\n    4: {expected: " + hex32 + ", warnOnly: true}\n"
	docs, err := ParseLegacyYAML([]byte(input), "v1.0.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 || docs[0].Platform != "gcp-sev-es" || docs[1].Platform != "aws-nitro-tpm" {
		t.Fatalf("got %+v", docs)
	}
	if !docs[1].PCRs[4].WarnOnly {
		t.Error("object form in the legacy layout lost warnOnly")
	}
}

func TestParseLegacyYAMLErrors(t *testing.T) {
	ok := "azure:\n  image: x\n  measurements:\n    4: " + b64of(digest(32, 1)) + "\n"
	tests := []struct {
		name, input, image string
		pcr                int
		want               []string
	}{
		{"unknown cloud", "openstack:\n  measurements:\n    4: " + hex32 + "\n", "v1", -1, []string{`cloud "openstack": no platform is known for it (known clouds: aws, azure, gcp, qemu)`}},
		{"all PCRs commented", "azure:\n  image: x\n  measurements:\n    # 4: abc\n", "v1", -1, []string{`cloud "azure": line 2: measurements is missing or lists no PCR`}},
		{"empty measurements", "azure:\n  measurements: {}\n", "v1", -1, []string{`cloud "azure"`, "no PCRs"}},
		{"short digest", "azure:\n  measurements:\n    4: " + b64of(digest(31, 1)) + "\n", "v1", 4, []string{`cloud "azure": line 3: PCR 4: expected digest is 31 bytes, sha256 needs 32`}},
		{"unknown field", "azure:\n  image: x\n  measurement:\n    4: " + hex32 + "\n", "v1", -1, []string{`cloud "azure"`, `unknown field "measurement"`}},
		{"cloud not a mapping", "azure: yes\n", "v1", -1, []string{`cloud "azure" must be an object`}},
		{"image not a string", "azure:\n  image: [a]\n  measurements:\n    4: " + hex32 + "\n", "v1", -1, []string{"image must be a string"}},
		{"no clouds", "{}", "v1", -1, []string{"lists no cloud"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLegacyYAML([]byte(tt.input), tt.image, nil)
			wantProblem(t, err, tt.pcr, tt.want...)
		})
	}

	if _, err := ParseLegacyYAML([]byte(ok), "", nil); err == nil || !strings.Contains(err.Error(), "image version is empty") {
		t.Errorf("missing image version: %v", err)
	}
	if _, err := ParseLegacyYAML([]byte(ok), "v1", map[string]string{"azure": "a", "gcp": "a"}); err != nil {
		t.Errorf("unused duplicate mapping should not matter: %v", err)
	}
	two := ok + "gcp:\n  measurements:\n    4: " + hex32 + "\n"
	_, err := ParseLegacyYAML([]byte(two), "v1", map[string]string{"azure": "same", "gcp": "same"})
	wantProblem(t, err, -1, `platform same is already given by cloud "azure"`)
}

func TestParseRelease(t *testing.T) {
	docs, err := ParseRelease(readTestdata(t, "release-v2.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(docs) != 2 {
		t.Fatalf("got %d documents, want 2", len(docs))
	}
	az, gcp := docs[0], docs[1]
	if az.Image != "v2.15.0" || az.Platform != "azure-sev-snp" || az.Hash != HashSHA256 {
		t.Errorf("first document is %s/%s/%s", az.Image, az.Platform, az.Hash)
	}
	if gcp.Image != "v2.15.0" || gcp.Platform != "gcp-sev-es" {
		t.Errorf("second document is %s/%s", gcp.Image, gcp.Platform)
	}
	if got := az.Indices(); !slices.Equal(got, []uint32{1, 4, 8, 9}) {
		t.Errorf("azure PCRs %v", got)
	}
	if !az.PCRs[1].WarnOnly || az.PCRs[4].WarnOnly || !gcp.PCRs[14].WarnOnly {
		t.Error("warnOnly flags not carried over")
	}
	if want := mustHex(t, "a5a16787a469d252ee85341dcffee54bb8e5d64963dded7d7e038992cc4312fb"); !bytes.Equal(az.PCRs[4].Expected, want) {
		t.Errorf("azure PCR 4 = %x", az.PCRs[4].Expected)
	}
}

func TestParseReleaseErrors(t *testing.T) {
	entry := func(variant, pcrs string) string {
		return `{"csp":"Azure","attestationVariant":"` + variant + `","measurements":` + pcrs + `}`
	}
	good := `{"4":{"expected":"` + hex32 + `","warnOnly":false}}`
	release := func(list ...string) string {
		return `{"version":"v2.15.0","ref":"-","stream":"stable","list":[` + strings.Join(list, ",") + `]}`
	}
	tests := []struct {
		name, input string
		pcr         int
		want        []string
	}{
		{"short digest", release(entry("azure-sev-snp", good), entry("gcp-sev-es", `{"9":{"expected":"`+hex32[:62]+`"}}`)), 9,
			[]string{"list[1] (gcp-sev-es): PCR 9: expected digest is 31 bytes, sha256 needs 32"}},
		{"duplicate variant", release(entry("azure-sev-snp", good), entry("azure-sev-snp", good)), -1,
			[]string{`list[1] (azure-sev-snp): attestation variant "azure-sev-snp" of csp "Azure" already appears in list[0]`}},
		{"shared variant without csp", release(entry("qemu-vtpm", good), `{"attestationVariant":"qemu-vtpm","measurements":`+good+`}`), -1,
			[]string{`list[1] (qemu-vtpm): attestation variant "qemu-vtpm" appears more than once, and this entry names no csp`}},
		{"shared variant, csp unsafe", release(entry("qemu-vtpm", good), `{"csp":"Open Stack","attestationVariant":"qemu-vtpm","measurements":`+good+`}`), -1,
			[]string{`list[1] (qemu-vtpm): csp "Open Stack": platform "qemu-vtpm-open stack"`}},
		{"unknown entry field", release(`{"csp":"Azure","attestationVariant":"azure-sev-snp","measurement":` + good + `}`), -1,
			[]string{`list[0]: unknown field "measurement"`}},
		{"variant missing", release(`{"csp":"Azure","measurements":` + good + `}`), -1, []string{"list[0]: attestationVariant is missing"}},
		{"variant unsafe", release(entry("../x", good)), -1, []string{`list[0]: platform "../x"`}},
		{"measurements missing", release(`{"csp":"Azure","attestationVariant":"azure-sev-snp"}`), -1, []string{"list[0] (azure-sev-snp): measurements is missing"}},
		{"no PCRs", release(entry("azure-sev-snp", `{}`)), -1, []string{"list[0] (azure-sev-snp): no PCRs"}},
		{"empty list", release(), -1, []string{"list is empty"}},
		{"list missing", `{"version":"v2.15.0"}`, -1, []string{"list is missing"}},
		{"list not a list", `{"version":"v2.15.0","list":{}}`, -1, []string{"list must be a list"}},
		{"entry not an object", release(`"azure"`), -1, []string{"list[0] must be an object"}},
		{"version missing", `{"list":[` + entry("azure-sev-snp", good) + `]}`, -1, []string{"version is missing"}},
		{"version unsafe", `{"version":"v1/2","list":[` + entry("azure-sev-snp", good) + `]}`, -1, []string{`image version "v1/2"`}},
		{"unknown top-level field", `{"version":"v2","lists":[],"list":[` + entry("azure-sev-snp", good) + `]}`, -1, []string{`unknown field "lists"`}},
		{"stream not a string", `{"version":"v2","stream":1,"list":[` + entry("azure-sev-snp", good) + `]}`, -1, []string{"stream must be a string"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := ParseRelease([]byte(tt.input))
			if docs != nil {
				t.Error("documents returned with an error")
			}
			wantProblem(t, err, tt.pcr, tt.want...)
		})
	}
}

func TestParseAll(t *testing.T) {
	single, err := sampleDoc().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		input     []byte
		image     string
		platforms []string
		wantErr   string
	}{
		{"document", single, "", []string{"azure-sev-snp"}, ""},
		{"document with matching image", single, "v2.15.0", []string{"azure-sev-snp"}, ""},
		{"document for another image", single, "v2.16.0", nil, "the file is for image v2.15.0, not v2.16.0"},
		{"release", readTestdata(t, "release-v2.json"), "v2.15.0", []string{"azure-sev-snp", "gcp-sev-es"}, ""},
		{"release for another image", readTestdata(t, "release-v2.json"), "v1", nil, "not v1"},
		{"legacy", readTestdata(t, "measurements-azure.yaml"), "v1.2.0", []string{"azure-sev-snp"}, ""},
		{"legacy needs an image", readTestdata(t, "measurements-azure.yaml"), "", nil, "names no image version"},
		{"legacy bare", readTestdata(t, "legacy-bare.yaml"), "", []string{"gcp-sev-es"}, ""},
		{"invalid document", []byte(doc("sha256", `{"4":"ab"}`)), "", nil, "PCR 4: expected digest is 1 byte, sha256 needs 32"},
		{"unknown layout", []byte(`{"foo": 1}`), "", nil, "unrecognized layout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := ParseAll(tt.input, tt.image)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, d := range docs {
				got = append(got, d.Platform)
			}
			if !slices.Equal(got, tt.platforms) {
				t.Errorf("platforms %v, want %v", got, tt.platforms)
			}
		})
	}
}
