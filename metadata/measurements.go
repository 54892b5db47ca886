package metadata

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/cjson"
)

// Hash algorithms (TPM PCR banks) a document can describe.
const (
	HashSHA256 = "sha256"
	HashSHA384 = "sha384"
)

// MaxPCRIndex is the highest PCR index of a TPM 2.0 PC client platform.
const MaxPCRIndex = 23

// Measurements is the measurements document: the expected PCR values of one
// bank for one image version on one platform.
type Measurements struct {
	// Image is the image version the values belong to, e.g. "v2.15.0".
	Image string `json:"image"`
	// Platform is the attestation variant, e.g. "azure-sev-snp".
	Platform string `json:"platform"`
	// Hash names the PCR bank: HashSHA256 or HashSHA384.
	Hash string `json:"hash"`
	// PCRs maps a PCR index (0..23) to its expected value.
	PCRs map[uint32]PCR `json:"pcrs"`
}

// PCR is the expected value of one PCR and how a mismatch is treated.
type PCR struct {
	// Expected is the digest the PCR must hold, as many bytes as the bank's hash.
	Expected []byte
	// WarnOnly makes a mismatch a warning instead of a verification failure.
	WarnOnly bool
}

// wirePCR is the JSON form of a PCR: digests are lowercase hex on output.
type wirePCR struct {
	Expected string `json:"expected"`
	WarnOnly bool   `json:"warnOnly"`
}

// wireDoc is the JSON form of a document, with PCR indices as decimal keys.
type wireDoc struct {
	Image    string             `json:"image"`
	Platform string             `json:"platform"`
	Hash     string             `json:"hash"`
	PCRs     map[string]wirePCR `json:"pcrs"`
}

// DigestSize returns the digest length in bytes of a supported bank.
func DigestSize(hash string) (int, error) {
	switch hash {
	case HashSHA256:
		return 32, nil
	case HashSHA384:
		return 48, nil
	default:
		return 0, fmt.Errorf("hash %q is not supported: use %q or %q", hash, HashSHA256, HashSHA384)
	}
}

// HashAlgorithm maps a bank name to the Go hash that computes its digests.
// This package links both implementations in, so New on the result works.
func HashAlgorithm(hash string) (crypto.Hash, error) {
	switch hash {
	case HashSHA256:
		return crypto.SHA256, nil
	case HashSHA384:
		return crypto.SHA384, nil
	default:
		_, err := DigestSize(hash)
		return 0, err
	}
}

// HashAlg returns the hash of the document's PCR bank.
func (m *Measurements) HashAlg() (crypto.Hash, error) {
	return HashAlgorithm(m.Hash)
}

// Indices returns the document's PCR indices in ascending order.
func (m *Measurements) Indices() []uint32 {
	return slices.Sorted(maps.Keys(m.PCRs))
}

// Clone returns a deep copy, so that a caller can extend a trusted document
// (for example with the cluster ID PCR) without changing the original.
func (m *Measurements) Clone() *Measurements {
	c := &Measurements{Image: m.Image, Platform: m.Platform, Hash: m.Hash}
	if m.PCRs != nil {
		c.PCRs = make(map[uint32]PCR, len(m.PCRs))
		for idx, p := range m.PCRs {
			c.PCRs[idx] = PCR{Expected: bytes.Clone(p.Expected), WarnOnly: p.WarnOnly}
		}
	}
	return c
}

// Validate reports every problem of the document at once. A valid document
// has a path-safe image and platform, a supported bank, at least one PCR, PCR
// indices 0..23 and digests of exactly the bank's length.
func (m *Measurements) Validate() error {
	if m == nil {
		return &ValidationError{Problems: []error{errors.New("the document is missing")}}
	}
	var p problems
	p.add(ValidateImage(m.Image))
	p.add(ValidatePlatform(m.Platform))
	size, err := DigestSize(m.Hash)
	p.add(err)
	if len(m.PCRs) == 0 {
		p.add(errNoPCRs)
	}
	for _, idx := range m.Indices() {
		if idx > MaxPCRIndex {
			p.add(&PCRError{Index: idx, Err: errIndexRange})
			continue
		}
		if size > 0 {
			p.add(pcrErr(idx, checkDigestLen(len(m.PCRs[idx].Expected), size, m.Hash)))
		}
	}
	return p.err()
}

var (
	errNoPCRs     = errors.New("no PCRs: a document must pin at least one PCR")
	errIndexRange = fmt.Errorf("index out of range 0..%d", MaxPCRIndex)
)

func checkDigestLen(n, size int, hash string) error {
	switch {
	case n == 0:
		return errors.New("expected digest is missing")
	case n != size:
		unit := "bytes"
		if n == 1 {
			unit = "byte"
		}
		return fmt.Errorf("expected digest is %d %s, %s needs %d", n, unit, hash, size)
	}
	return nil
}

// Marshal validates the document and encodes it as canonical JSON (OLPC
// canonical JSON, as TUF uses): sorted keys, no insignificant whitespace,
// lowercase hex digests. The same document always yields the same bytes, so
// its hash identifies it and a re-publish of unchanged values is a no-op.
func (m *Measurements) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	w := wireDoc{Image: m.Image, Platform: m.Platform, Hash: m.Hash, PCRs: make(map[string]wirePCR, len(m.PCRs))}
	for idx, p := range m.PCRs {
		w.PCRs[fmt.Sprint(idx)] = wirePCR{Expected: hex.EncodeToString(p.Expected), WarnOnly: p.WarnOnly}
	}
	out, err := cjson.EncodeCanonical(w)
	if err != nil {
		return nil, fmt.Errorf("encoding measurements of %s/%s: %w", m.Image, m.Platform, err)
	}
	return out, nil
}

// MarshalJSON encodes the document canonically; an invalid document is an
// error so that it cannot end up inside other JSON either.
func (m Measurements) MarshalJSON() ([]byte, error) {
	return m.Marshal()
}

// UnmarshalJSON decodes with the same strict rules as Parse.
func (m *Measurements) UnmarshalJSON(data []byte) error {
	parsed, err := Parse(data)
	if err != nil {
		return err
	}
	*m = *parsed
	return nil
}

// MarshalJSON encodes a PCR as {"expected":"<lowercase hex>","warnOnly":...}.
func (p PCR) MarshalJSON() ([]byte, error) {
	return json.Marshal(wirePCR{Expected: hex.EncodeToString(p.Expected), WarnOnly: p.WarnOnly})
}

// UnmarshalJSON decodes the object form written by MarshalJSON, strictly:
// field names are case-sensitive and unknown fields are refused. The digest
// length is checked where the bank is known (Measurements.Validate).
func (p *PCR) UnmarshalJSON(data []byte) error {
	v, err := parseJSON(data)
	if err != nil {
		return fmt.Errorf("decoding PCR: %w", err)
	}
	if v.kind != kindObject {
		return fmt.Errorf("decoding PCR: want an object with expected and warnOnly, not %s", v.kind)
	}
	if err := errors.Join(unknownFields(v, pcrFields...)...); err != nil {
		return fmt.Errorf("decoding PCR: %w", err)
	}
	s, err := stringFieldNoLine(v, "expected", true)
	if err == nil && s == "" {
		err = errors.New("expected digest is empty")
	}
	if err != nil {
		return fmt.Errorf("decoding PCR: %w", err)
	}
	d, err := hex.DecodeString(s)
	if err != nil {
		return fmt.Errorf("decoding PCR: expected digest is not hex: %w", err)
	}
	var warnOnly bool
	if w := v.get("warnOnly"); w != nil {
		if w.kind != kindBool {
			return fmt.Errorf("decoding PCR: warnOnly must be true or false, not %s", w.kind)
		}
		warnOnly = w.b
	}
	*p = PCR{Expected: d, WarnOnly: warnOnly}
	return nil
}

// PCRResult is the outcome of comparing one expected PCR with the value a
// node reported.
type PCRResult struct {
	Index    uint32
	Expected []byte
	// Actual is nil when the node did not report the PCR.
	Actual   []byte
	WarnOnly bool
	// Missing is set when the node did not report the PCR at all.
	Missing bool
	Match   bool
}

// MarshalJSON writes digests as lowercase hex, as measurements documents
// do, so that a report can be compared with the document by eye.
func (r PCRResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Index    uint32 `json:"index"`
		Expected string `json:"expected"`
		Actual   string `json:"actual,omitempty"`
		WarnOnly bool   `json:"warnOnly"`
		Missing  bool   `json:"missing,omitempty"`
		Match    bool   `json:"match"`
	}{r.Index, hex.EncodeToString(r.Expected), hex.EncodeToString(r.Actual), r.WarnOnly, r.Missing, r.Match})
}

// Failed tells whether the result fails verification: a mismatch of an
// enforced PCR. A warn-only mismatch is reported but does not fail.
func (r PCRResult) Failed() bool {
	return !r.Match && !r.WarnOnly
}

// Compare checks the actual values of one bank against the document and
// returns one result per PCR of the document, sorted by index. A PCR of the
// document that is missing from actual is a mismatch; PCRs of actual that the
// document does not pin are not reported, since nothing was expected of them.
// Compare does not check that actual comes from the document's bank: the
// caller selects the bank from Hash before it collects the values.
func (m *Measurements) Compare(actual map[uint32][]byte) []PCRResult {
	results := make([]PCRResult, 0, len(m.PCRs))
	for _, idx := range m.Indices() {
		exp := m.PCRs[idx]
		got, ok := actual[idx]
		results = append(results, PCRResult{
			Index:    idx,
			Expected: bytes.Clone(exp.Expected),
			Actual:   bytes.Clone(got),
			WarnOnly: exp.WarnOnly,
			Missing:  !ok,
			Match:    ok && len(exp.Expected) > 0 && bytes.Equal(exp.Expected, got),
		})
	}
	return results
}

// PCRError is a problem with one PCR of a document.
type PCRError struct {
	Index uint32
	Err   error
}

// Error reads "PCR <index>: <problem>".
func (e *PCRError) Error() string { return fmt.Sprintf("PCR %d: %v", e.Index, e.Err) }

// Unwrap returns the problem.
func (e *PCRError) Unwrap() error { return e.Err }

// pcrErr wraps err for PCR idx; nil stays nil.
func pcrErr(idx uint32, err error) error {
	if err == nil {
		return nil
	}
	return &PCRError{Index: idx, Err: err}
}

// ValidationError lists every problem found in a document, so that a user
// fixes a file in one pass instead of one error per attempt.
type ValidationError struct {
	Problems []error
}

// Error lists the problems, one per line when there are several.
func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid measurements: " + e.Problems[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid measurements: %d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - ")
		b.WriteString(p.Error())
	}
	return b.String()
}

// Unwrap returns the problems, so that errors.As finds a *PCRError among them.
func (e *ValidationError) Unwrap() []error { return e.Problems }

// problems collects errors; nil errors are ignored so that checks can be
// added unconditionally.
type problems struct {
	list    []error
	dropped int
}

// maxProblems bounds how many problems are kept, so that a hostile file
// with a million bad keys costs no more than a file with a hundred.
const maxProblems = 100

func (p *problems) add(err error) {
	switch {
	case err == nil:
	case len(p.list) < maxProblems:
		p.list = append(p.list, err)
	default:
		p.dropped++
	}
}

func (p *problems) addAll(prefix string, errs []error) {
	for _, err := range errs {
		if err == nil {
			continue
		}
		if prefix != "" {
			err = fmt.Errorf("%s: %w", prefix, err)
		}
		p.add(err)
	}
}

func (p *problems) err() error {
	if len(p.list) == 0 {
		return nil
	}
	list := p.list
	if p.dropped > 0 {
		list = append(list, fmt.Errorf("%d more problems not listed", p.dropped))
	}
	return &ValidationError{Problems: list}
}
