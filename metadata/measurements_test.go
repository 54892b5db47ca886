package metadata

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func digest(size int, b byte) []byte { return bytes.Repeat([]byte{b}, size) }

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sampleDoc is the document behind testdata/measurements.golden.json.
func sampleDoc() *Measurements {
	return &Measurements{
		Image:    "v2.15.0",
		Platform: "azure-sev-snp",
		Hash:     HashSHA256,
		PCRs: map[uint32]PCR{
			1:  {Expected: digest(32, 0x3d), WarnOnly: true},
			4:  {Expected: digest(32, 0xa5)},
			8:  {Expected: digest(32, 0x00)},
			9:  {Expected: digest(32, 0xc0)},
			11: {Expected: digest(32, 0xb7)},
			14: {Expected: digest(32, 0x00), WarnOnly: true},
		},
	}
}

// wantProblem asserts that err is a *ValidationError with a problem whose
// text contains every one of want and, when pcr >= 0, that names that PCR as
// a *PCRError.
func wantProblem(t *testing.T, err error, pcr int, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one containing %q", want)
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("error %q is not a *ValidationError", err)
	}
	for _, p := range ve.Problems {
		msg := p.Error()
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(msg, w)
		}
		if !ok {
			continue
		}
		if pcr >= 0 {
			var pe *PCRError
			if !errors.As(p, &pe) || pe.Index != uint32(pcr) {
				t.Fatalf("problem %q does not carry PCR %d as a *PCRError", msg, pcr)
			}
		}
		return
	}
	t.Fatalf("no problem contains %q; got:\n%v", want, err)
}

func TestValidate(t *testing.T) {
	if err := sampleDoc().Validate(); err != nil {
		t.Fatalf("sample document: %v", err)
	}
	tests := []struct {
		name   string
		modify func(m *Measurements)
		pcr    int
		want   []string
	}{
		{"short digest", func(m *Measurements) { m.PCRs[4] = PCR{Expected: digest(31, 1)} }, 4, []string{"PCR 4: expected digest is 31 bytes, sha256 needs 32"}},
		{"sha384 digest in sha256 bank", func(m *Measurements) { m.PCRs[9] = PCR{Expected: digest(48, 1)} }, 9, []string{"PCR 9: expected digest is 48 bytes, sha256 needs 32"}},
		{"sha256 digest in sha384 bank", func(m *Measurements) {
			m.Hash = HashSHA384
			for i := range m.PCRs {
				m.PCRs[i] = PCR{Expected: digest(48, 2)}
			}
			m.PCRs[11] = PCR{Expected: digest(32, 2)}
		}, 11, []string{"PCR 11: expected digest is 32 bytes, sha384 needs 48"}},
		{"missing digest", func(m *Measurements) { m.PCRs[8] = PCR{} }, 8, []string{"PCR 8: expected digest is missing"}},
		{"index 24", func(m *Measurements) { m.PCRs[24] = PCR{Expected: digest(32, 1)} }, 24, []string{"PCR 24: index out of range 0..23"}},
		{"huge index", func(m *Measurements) { m.PCRs[1<<31] = PCR{Expected: digest(32, 1)} }, 1 << 31, []string{"index out of range"}},
		{"no PCRs", func(m *Measurements) { m.PCRs = nil }, -1, []string{"no PCRs"}},
		{"unsupported hash", func(m *Measurements) { m.Hash = "sha1" }, -1, []string{`hash "sha1" is not supported`}},
		{"upper-case hash", func(m *Measurements) { m.Hash = "SHA256" }, -1, []string{`hash "SHA256" is not supported`}},
		{"empty image", func(m *Measurements) { m.Image = "" }, -1, []string{"image version is empty"}},
		{"image with slash", func(m *Measurements) { m.Image = "v1/../../etc" }, -1, []string{"image version", `'/' is not allowed`}},
		{"image dot-dot", func(m *Measurements) { m.Image = "v1..2" }, -1, []string{"image version", `".."`}},
		{"empty platform", func(m *Measurements) { m.Platform = "" }, -1, []string{"platform is empty"}},
		{"long platform", func(m *Measurements) { m.Platform = strings.Repeat("a", 129) }, -1, []string{"platform is 129 characters long, at most 128"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := sampleDoc()
			tt.modify(m)
			wantProblem(t, m.Validate(), tt.pcr, tt.want...)
		})
	}

	var nilDoc *Measurements
	if err := nilDoc.Validate(); err == nil {
		t.Error("nil document validated")
	}
}

func TestValidateReportsAllProblems(t *testing.T) {
	m := sampleDoc()
	m.Image = ""
	m.PCRs[4] = PCR{Expected: digest(31, 1)}
	m.PCRs[9] = PCR{Expected: digest(33, 1)}
	var ve *ValidationError
	if err := m.Validate(); !errors.As(err, &ve) || len(ve.Problems) != 3 {
		t.Fatalf("want 3 problems, got %v", err)
	}
	// Problems come in PCR order, whatever the map order.
	if !strings.Contains(ve.Problems[1].Error(), "PCR 4") || !strings.Contains(ve.Problems[2].Error(), "PCR 9") {
		t.Errorf("problems out of order: %v", ve.Problems)
	}
}

func TestMarshalGolden(t *testing.T) {
	got, err := sampleDoc().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "measurements.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("canonical encoding differs from %s:\ngot  %s\nwant %s", golden, got, want)
	}
	// The golden file is canonical JSON: sorted keys (so "10" < "4"), no
	// whitespace, lowercase hex.
	for _, w := range []string{`{"hash":"sha256","image":"v2.15.0","pcrs":{"1":{`, `"11":{"expected":"b7b7`, `"warnOnly":true}`, `},"platform":"azure-sev-snp"}`} {
		if !bytes.Contains(want, []byte(w)) {
			t.Errorf("golden file lacks %q", w)
		}
	}
	if bytes.ContainsAny(want, " \n\tABCDEF") {
		t.Error("golden file has whitespace or upper-case hex")
	}
}

func TestMarshalIsDeterministic(t *testing.T) {
	first, err := sampleDoc().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		// A map filled in another order must not change the bytes.
		m := sampleDoc()
		rebuilt := make(map[uint32]PCR)
		for _, idx := range []uint32{14, 11, 9, 8, 4, 1} {
			rebuilt[idx] = m.PCRs[idx]
		}
		m.PCRs = rebuilt
		again, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(first, again) {
			t.Fatalf("encoding changed:\n%s\n%s", first, again)
		}
	}
}

func TestMarshalRefusesInvalid(t *testing.T) {
	m := sampleDoc()
	m.PCRs[4] = PCR{Expected: digest(31, 1)}
	if _, err := m.Marshal(); err == nil {
		t.Fatal("invalid document was encoded")
	}
	if _, err := json.Marshal(m); err == nil {
		t.Fatal("json.Marshal encoded an invalid document")
	}
}

func TestRoundTrip(t *testing.T) {
	sha384 := &Measurements{Image: "v1.0.0+build.7", Platform: "qemu-vtpm", Hash: HashSHA384, PCRs: map[uint32]PCR{
		0:  {Expected: digest(48, 0)},
		4:  {Expected: digest(48, 0xfe)},
		23: {Expected: digest(48, 0x17), WarnOnly: true},
	}}
	for _, m := range []*Measurements{sampleDoc(), sha384} {
		data, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Parse(data)
		if err != nil {
			t.Fatalf("Parse(Marshal(m)): %v", err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("round trip changed the document:\ngot  %+v\nwant %+v", got, m)
		}
	}
}

func TestJSONMethods(t *testing.T) {
	m := sampleDoc()
	viaJSON, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	canonical, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(viaJSON, canonical) {
		t.Errorf("json.Marshal differs from Marshal:\n%s\n%s", viaJSON, canonical)
	}

	// Embedded in another structure, a document decodes with the strict rules.
	type config struct {
		Trusted *Measurements `json:"trusted"`
	}
	var c config
	if err := json.Unmarshal([]byte(`{"trusted":`+string(canonical)+`}`), &c); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Trusted, m) {
		t.Errorf("decoded %+v, want %+v", c.Trusted, m)
	}
	typo := strings.Replace(string(canonical), `"warnOnly":true`, `"warnonly":true`, 1)
	if err := json.Unmarshal([]byte(`{"trusted":`+typo+`}`), &c); err == nil || !strings.Contains(err.Error(), `"warnonly"`) {
		t.Errorf("typo not refused: %v", err)
	}

	p := PCR{Expected: []byte{0xAB, 0x01}, WarnOnly: true}
	enc, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(enc) != `{"expected":"ab01","warnOnly":true}` {
		t.Errorf("PCR encodes as %s", enc)
	}
	var back PCR
	if err := json.Unmarshal(enc, &back); err != nil || !reflect.DeepEqual(back, p) {
		t.Errorf("PCR round trip: %+v, %v", back, err)
	}
	for _, bad := range []string{`{"expected":"zz"}`, `{"expected":""}`, `{"expected":"ab","warnonly":true}`, `"ab01"`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("PCR %s was accepted", bad)
		}
	}
}

func TestHashAlg(t *testing.T) {
	for _, tt := range []struct {
		hash string
		want crypto.Hash
		size int
	}{{HashSHA256, crypto.SHA256, 32}, {HashSHA384, crypto.SHA384, 48}} {
		m := &Measurements{Hash: tt.hash}
		got, err := m.HashAlg()
		if err != nil || got != tt.want {
			t.Errorf("HashAlg(%s) = %v, %v", tt.hash, got, err)
		}
		if n, err := DigestSize(tt.hash); err != nil || n != tt.size || n != got.Size() {
			t.Errorf("DigestSize(%s) = %d, %v", tt.hash, n, err)
		}
	}
	for _, bad := range []string{"", "sha1", "sha512", "SHA256"} {
		if _, err := HashAlgorithm(bad); err == nil || !strings.Contains(err.Error(), "sha256") {
			t.Errorf("HashAlgorithm(%q) = %v, want an error naming the supported banks", bad, err)
		}
	}
}

func TestCompare(t *testing.T) {
	m := sampleDoc()
	actual := map[uint32][]byte{
		1:  digest(32, 0xff), // warn-only mismatch
		4:  digest(32, 0xa5), // match
		8:  digest(32, 0x01), // enforced mismatch
		9:  digest(32, 0xc0), // match
		14: digest(32, 0x00), // warn-only match
		// 11 missing
		15: digest(32, 0x99), // not in the document: ignored
	}
	got := m.Compare(actual)
	type row struct {
		idx                      uint32
		match, warn, miss, fails bool
	}
	want := []row{
		{1, false, true, false, false},
		{4, true, false, false, false},
		{8, false, false, false, true},
		{9, true, false, false, false},
		{11, false, false, true, true},
		{14, true, true, false, false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		r := got[i]
		if r.Index != w.idx || r.Match != w.match || r.WarnOnly != w.warn || r.Missing != w.miss || r.Failed() != w.fails {
			t.Errorf("result %d = %+v (failed %v), want %+v", i, r, r.Failed(), w)
		}
		if !bytes.Equal(r.Expected, m.PCRs[r.Index].Expected) {
			t.Errorf("PCR %d: expected value not reported", r.Index)
		}
		if !bytes.Equal(r.Actual, actual[r.Index]) {
			t.Errorf("PCR %d: actual value not reported", r.Index)
		}
	}
	if got[4].Actual != nil {
		t.Errorf("missing PCR has actual value %x", got[4].Actual)
	}

	// Results are copies: changing them does not change the document.
	got[1].Expected[0] ^= 0xff
	if m.PCRs[4].Expected[0] != 0xa5 {
		t.Error("Compare result aliases the document")
	}

	if res := m.Compare(nil); len(res) != len(m.PCRs) {
		t.Errorf("Compare(nil) returned %d results", len(res))
	} else {
		for _, r := range res {
			if r.Match || !r.Missing {
				t.Errorf("PCR %d matched with no actual values", r.Index)
			}
		}
	}
}

func TestClone(t *testing.T) {
	m := sampleDoc()
	c := m.Clone()
	if !reflect.DeepEqual(c, m) {
		t.Fatal("clone differs")
	}
	c.PCRs[4].Expected[0] = 0
	delete(c.PCRs, 1)
	if !reflect.DeepEqual(m, sampleDoc()) {
		t.Error("changing the clone changed the original")
	}
}

func TestErrorChain(t *testing.T) {
	m := sampleDoc()
	m.PCRs[9] = PCR{Expected: digest(31, 1)}
	err := m.Validate()
	// A caller finds the PCR through the ValidationError without knowing it.
	var pe *PCRError
	if !errors.As(err, &pe) || pe.Index != 9 {
		t.Fatalf("errors.As found %+v in %v", pe, err)
	}
	m.PCRs[9] = PCR{Expected: digest(32, 1)}
	m.PCRs[30] = PCR{Expected: digest(32, 1)}
	if err := m.Validate(); !errors.Is(err, errIndexRange) {
		t.Errorf("errors.Is does not reach the cause through PCRError: %v", err)
	}
}

func TestProblemsAreBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"image":"v1","platform":"p","pcrs":{`)
	for i := range 1000 {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(`"x` + strings.Repeat("y", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26)) + `":"00"`)
	}
	b.WriteString(`}}`)
	_, err := Parse([]byte(b.String()))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatal(err)
	}
	if len(ve.Problems) != maxProblems+1 || !strings.Contains(ve.Problems[maxProblems].Error(), "900 more problems not listed") {
		t.Errorf("got %d problems, last %v", len(ve.Problems), ve.Problems[len(ve.Problems)-1])
	}
}
