package metadata

import (
	"bytes"
	"errors"
	"fmt"
)

// ResetValue returns what PCR idx holds after a TPM reset, in a bank of
// digests size bytes long: all ones for PCRs 17..22, which the PC client
// platform resets to ones until a dynamic root of trust starts, and zeros
// for every other PCR.
func ResetValue(idx uint32, size int) []byte {
	if idx >= 17 && idx <= 22 {
		return bytes.Repeat([]byte{0xff}, size)
	}
	return make([]byte, size)
}

// IsReset tells whether digest is the reset value of PCR idx.
func IsReset(idx uint32, digest []byte) bool {
	return len(digest) > 0 && bytes.Equal(digest, ResetValue(idx, len(digest)))
}

// ErrResetPCR reports an enforced PCR that holds its reset value: what a
// TPM reads when nothing was measured into it, such as a simulator that
// never booted. Trusting such a value would make a blank node trusted.
var ErrResetPCR = errors.New("enforced PCR holds its reset value")

// CheckNotReset refuses a document whose enforced PCRs hold their reset
// value (all zeros; all ones for PCRs 17..22), naming each such PCR. A
// profile may mark a PCR whose reset value the image legitimately keeps
// (Rule.ResetAllowed, with its reason); profile nil, for a platform without
// a profile, allows none. Warn-only PCRs are not checked: a mismatch of
// theirs never decides trust.
func (m *Measurements) CheckNotReset(profile *Profile) error {
	var p problems
	for _, idx := range m.Indices() {
		pcr := m.PCRs[idx]
		if pcr.WarnOnly || !IsReset(idx, pcr.Expected) {
			continue
		}
		if profile != nil && profile.PCRs[idx].Action == Enforce && profile.PCRs[idx].ResetAllowed {
			continue
		}
		what := "all zeros"
		if idx >= 17 && idx <= 22 {
			what = "all ones"
		}
		p.add(&PCRError{Index: idx, Err: fmt.Errorf("%w (%s): nothing was measured into it, as on a TPM that never booted the image; read it from a node booted with the image", ErrResetPCR, what)})
	}
	return p.err()
}
