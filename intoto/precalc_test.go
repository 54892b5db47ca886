package intoto

import (
	"bytes"
	"crypto"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtuf/mtuf/metadata"
)

// precalcChain is a supply chain with two functionaries: a reading of a
// booted node (which also holds firmware PCRs) and a precalculation from
// the image (which holds only the PCRs the image determines).
type precalcChain struct {
	owner, reader, publisher, precalc crypto.Signer
	layout                            []byte
	doc                               []byte
	links                             map[string][]byte
}

// pcrDoc encodes a document of image v1.0.0 on qemu-vtpm.
func pcrDoc(t testing.TB, pcrs map[uint32]metadata.PCR) []byte {
	t.Helper()
	m := &metadata.Measurements{Image: "v1.0.0", Platform: "qemu-vtpm", Hash: "sha256", PCRs: pcrs}
	data, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return append(data, '\n')
}

func fill(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }

// readPCRs are what a booted node reads: the image's PCRs 4, 9, 11, 12
// (zero: the image's own command line) enforced, firmware PCR 0 warn-only.
func readPCRs() map[uint32]metadata.PCR {
	return map[uint32]metadata.PCR{
		0: {Expected: fill(0xf0), WarnOnly: true}, 4: {Expected: fill(4)}, 9: {Expected: fill(9)},
		11: {Expected: fill(11)}, 12: {Expected: make([]byte, 32)},
	}
}

// precalcPCRs are what the precalculation computes from the same image.
func precalcPCRs() map[uint32]metadata.PCR {
	p := readPCRs()
	delete(p, 0)
	return p
}

func products(t testing.TB, doc []byte) map[string][]byte {
	t.Helper()
	p, err := MeasurementsProducts(doc)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func newPrecalcChain(t testing.TB, read, pre map[uint32]metadata.PCR) *precalcChain {
	t.Helper()
	c := &precalcChain{
		owner: newTestKey(t, "ed25519"), reader: newTestKey(t, "ed25519"),
		publisher: newTestKey(t, "ed25519"), precalc: newTestKey(t, "ed25519"),
		links: map[string][]byte{},
	}
	var err error
	c.layout, err = NewLayout(c.owner, LayoutOptions{
		ReadFunctionaries:    []crypto.PublicKey{c.reader.Public()},
		PublishFunctionaries: []crypto.PublicKey{c.publisher.Public()},
		PrecalcFunctionaries: []crypto.PublicKey{c.precalc.Public()},
		Expires:              time.Now().Add(time.Hour),
	})
	if err != nil {
		t.Fatal(err)
	}
	c.doc = pcrDoc(t, read)
	c.link(t, StepReadMeasurements, nil, products(t, c.doc), c.reader)
	c.link(t, StepPublish, map[string][]byte{metadata.MeasurementsFile: c.doc}, nil, c.publisher)
	c.link(t, StepPrecalculateMeasurements, map[string][]byte{"uki.efi": []byte("MZ image")}, products(t, pcrDoc(t, pre)), c.precalc)
	return c
}

func (c *precalcChain) link(t testing.TB, step string, materials, products map[string][]byte, key crypto.Signer) {
	t.Helper()
	data, keyID, err := NewLink(step, materials, products, key)
	if err != nil {
		t.Fatal(err)
	}
	c.links[linkName(t, step, keyID)] = data
}

func (c *precalcChain) verify() error {
	return VerifySupplyChain(c.layout, []crypto.PublicKey{c.owner.Public()}, c.links, c.doc, time.Now())
}

// pythonVerify runs in-toto-verify on the chain, when it is installed.
func (c *precalcChain) pythonVerify(t *testing.T) (string, bool) {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "root.layout"), c.layout, 0o644)
	for name, data := range c.links {
		writeFile(t, filepath.Join(dir, name), data, 0o644)
	}
	return pythonVerify(t, dir, c.owner.Public())
}

func TestMeasurementsProducts(t *testing.T) {
	doc := pcrDoc(t, readPCRs())
	p := products(t, doc)
	if len(p) != 6 || !bytes.Equal(p[metadata.MeasurementsFile], doc) {
		t.Fatalf("products = %v", p)
	}
	if got := string(p["pcrs/sha256/4"]); got != strings.Repeat("04", 32) {
		t.Errorf("pcrs/sha256/4 = %q", got)
	}
	if _, err := MeasurementsProducts([]byte("{}")); err == nil {
		t.Error("an invalid document gave products")
	}
}

func TestPrecalcLayoutRules(t *testing.T) {
	c := newPrecalcChain(t, readPCRs(), precalcPCRs())
	_, lay, err := parseLayout(c.layout)
	if err != nil {
		t.Fatal(err)
	}
	var rules [2]string
	for _, s := range lay.Steps {
		if s.Name == StepPrecalculateMeasurements {
			m, _ := json.Marshal(s.ExpectedMaterials)
			p, _ := json.Marshal(s.ExpectedProducts)
			rules = [2]string{string(m), string(p)}
		}
	}
	want := [2]string{`[["ALLOW","*"]]`, `[["CREATE","measurements.json"],["MATCH","pcrs/*","WITH","PRODUCTS","FROM","read-measurements"],["DISALLOW","*"]]`}
	if rules != want {
		t.Errorf("step %s rules = %s, want %s", StepPrecalculateMeasurements, rules, want)
	}
	if len(lay.Steps) != 3 {
		t.Errorf("layout has %d steps, want 3", len(lay.Steps))
	}
}

// TestPrecalcAgreement checks that a layout with two functionaries accepts
// measurements only when the reading and the precalculation agree, in
// VerifySupplyChain and in the reference in-toto-verify alike.
func TestPrecalcAgreement(t *testing.T) {
	// The Go verification runs everywhere; in-toto-verify where it is
	// installed, and in CI, where its absence fails (requireInToto).
	_, err := exec.LookPath("in-toto-verify")
	havePython := err == nil || os.Getenv("CI") == "true"
	agree := newPrecalcChain(t, readPCRs(), precalcPCRs())
	if err := agree.verify(); err != nil {
		t.Fatalf("agreeing functionaries refused: %v", err)
	}
	if havePython {
		out, ok := agree.pythonVerify(t)
		t.Logf("in-toto-verify, agreeing pair:\n%s", out)
		if !ok {
			t.Fatalf("in-toto-verify refused agreeing functionaries:\n%s", out)
		}
	}

	other := precalcPCRs()
	other[9] = metadata.PCR{Expected: fill(0x99)} // another initrd or command line
	beyond := precalcPCRs()
	beyond[10] = metadata.PCR{Expected: fill(10)}
	short := precalcPCRs()
	delete(short, 12)
	for _, tc := range []struct {
		name   string
		chain  *precalcChain
		want   error
		msg    string
		python string // what in-toto-verify names when it refuses; "" if it cannot see the problem
	}{
		{"PCR 9 differs", newPrecalcChain(t, readPCRs(), other), ErrFunctionariesDisagree, "PCR 9 (sha256) differs", "pcrs/sha256/9"},
		{"precalculation computes a PCR the reading lacks", newPrecalcChain(t, readPCRs(), beyond), ErrFunctionariesDisagree, "computed PCR 10 (sha256), which the reading does not hold", "pcrs/sha256/10"},
		// Artifact rules cannot demand that a PCR be present.
		{"precalculation skips an enforced PCR", newPrecalcChain(t, readPCRs(), short), ErrFunctionariesDisagree, "PCR 12 is enforced, but step precalculate-measurements did not compute it", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := tc.chain.verify()
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error = %v, want %v saying %q", err, tc.want, tc.msg)
			}
			if !havePython || tc.python == "" {
				return
			}
			out, ok := tc.chain.pythonVerify(t)
			t.Logf("in-toto-verify, %s:\n%s", tc.name, out)
			if ok || !strings.Contains(out, tc.python) {
				t.Errorf("in-toto-verify accepted it, or does not name %s:\n%s", tc.python, out)
			}
		})
	}
}

// TestPrecalcAttacks checks that the per-PCR artifacts cannot be used to
// vouch for a document other than the published one.
func TestPrecalcAttacks(t *testing.T) {
	t.Run("reading link lies about a PCR", func(t *testing.T) {
		// The reader records the precalculated PCR 4 in its link but
		// publishes a document with another PCR 4.
		c := newPrecalcChain(t, readPCRs(), precalcPCRs())
		lied := readPCRs()
		lied[4] = metadata.PCR{Expected: fill(0x44)}
		c.doc = pcrDoc(t, lied)
		p := products(t, c.doc)
		p["pcrs/sha256/4"] = products(t, pcrDoc(t, readPCRs()))["pcrs/sha256/4"]
		for name := range c.links {
			delete(c.links, name)
		}
		c.link(t, StepReadMeasurements, nil, p, c.reader)
		c.link(t, StepPublish, map[string][]byte{metadata.MeasurementsFile: c.doc}, nil, c.publisher)
		c.link(t, StepPrecalculateMeasurements, nil, products(t, pcrDoc(t, precalcPCRs())), c.precalc)
		err := c.verify()
		if !errors.Is(err, ErrMeasurementsMismatch) || !strings.Contains(err.Error(), "pcrs/sha256/4") {
			t.Fatalf("error = %v, want the lie about pcrs/sha256/4 refused", err)
		}
	})
	t.Run("reading link without PCR artifacts", func(t *testing.T) {
		c := newPrecalcChain(t, readPCRs(), precalcPCRs())
		for name := range c.links {
			if strings.HasPrefix(name, StepReadMeasurements+".") {
				delete(c.links, name)
			}
		}
		c.link(t, StepReadMeasurements, nil, map[string][]byte{metadata.MeasurementsFile: c.doc}, c.reader)
		err := c.verify()
		if !errors.Is(err, ErrMeasurementsMismatch) || !strings.Contains(err.Error(), "does not record PCR 0") {
			t.Fatalf("error = %v", err)
		}
	})
	t.Run("precalculation link missing", func(t *testing.T) {
		c := newPrecalcChain(t, readPCRs(), precalcPCRs())
		for name := range c.links {
			if strings.HasPrefix(name, StepPrecalculateMeasurements+".") {
				delete(c.links, name)
			}
		}
		if err := c.verify(); !errors.Is(err, ErrLinkMissing) {
			t.Fatalf("error = %v, want ErrLinkMissing", err)
		}
	})
	t.Run("precalculation signed by the reader", func(t *testing.T) {
		c := newPrecalcChain(t, readPCRs(), precalcPCRs())
		for name := range c.links {
			if strings.HasPrefix(name, StepPrecalculateMeasurements+".") {
				delete(c.links, name)
			}
		}
		c.link(t, StepPrecalculateMeasurements, nil, products(t, pcrDoc(t, precalcPCRs())), c.reader)
		if err := c.verify(); !errors.Is(err, ErrLinkUnauthorized) {
			t.Fatalf("error = %v, want ErrLinkUnauthorized: one functionary cannot be both", err)
		}
	})
}
