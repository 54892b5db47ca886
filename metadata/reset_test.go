package metadata

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestResetValue(t *testing.T) {
	for idx := uint32(0); idx <= MaxPCRIndex; idx++ {
		for _, size := range []int{32, 48} {
			v := ResetValue(idx, size)
			want := byte(0)
			if idx >= 17 && idx <= 22 {
				want = 0xff
			}
			if !bytes.Equal(v, bytes.Repeat([]byte{want}, size)) {
				t.Errorf("ResetValue(%d, %d) = %x", idx, size, v)
			}
			if !IsReset(idx, v) {
				t.Errorf("IsReset(%d, its reset value) = false", idx)
			}
		}
	}
	if IsReset(17, make([]byte, 32)) || IsReset(4, bytes.Repeat([]byte{0xff}, 32)) || IsReset(4, nil) {
		t.Error("IsReset accepts a value that is not the PCR's reset value")
	}
}

func TestCheckNotReset(t *testing.T) {
	qemu, err := ProfileFor("qemu-vtpm")
	if err != nil {
		t.Fatal(err)
	}
	azure, err := ProfileFor("azure-sev-snp")
	if err != nil {
		t.Fatal(err)
	}
	zeros := make([]byte, 48)
	doc := func(pcrs map[uint32]PCR) *Measurements {
		return &Measurements{Image: "v1", Platform: "qemu-vtpm", Hash: HashSHA384, PCRs: pcrs}
	}
	good := digest(48, 7)
	for _, tc := range []struct {
		name    string
		m       *Measurements
		profile *Profile
		refused []uint32
	}{
		{"measured", doc(map[uint32]PCR{4: {Expected: good}, 9: {Expected: good}}), qemu, nil},
		{"enforced zeros", doc(map[uint32]PCR{4: {Expected: zeros}, 9: {Expected: good}, 11: {Expected: zeros}}), qemu, []uint32{4, 11}},
		{"warn-only zeros", doc(map[uint32]PCR{0: {Expected: zeros, WarnOnly: true}, 4: {Expected: good}}), qemu, nil},
		{"DRTM ones", doc(map[uint32]PCR{4: {Expected: good}, 18: {Expected: bytes.Repeat([]byte{0xff}, 48)}}), qemu, []uint32{18}},
		{"DRTM zeros are not its reset value", doc(map[uint32]PCR{4: {Expected: good}, 18: {Expected: zeros}}), qemu, nil},
		{"profile allows PCR 8 at reset", doc(map[uint32]PCR{4: {Expected: good}, 8: {Expected: zeros}, 13: {Expected: zeros}}), azure, nil},
		{"profile allows PCR 8, not PCR 4", doc(map[uint32]PCR{4: {Expected: zeros}, 8: {Expected: zeros}}), azure, []uint32{4}},
		{"no profile allows nothing", doc(map[uint32]PCR{4: {Expected: good}, 8: {Expected: zeros}}), nil, []uint32{8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.m.CheckNotReset(tc.profile)
			if len(tc.refused) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrResetPCR) {
				t.Fatalf("error = %v, want ErrResetPCR", err)
			}
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != len(tc.refused) {
				t.Fatalf("error = %v, want one problem for each of PCRs %v", err, tc.refused)
			}
			for i, idx := range tc.refused {
				var pe *PCRError
				if !errors.As(ve.Problems[i], &pe) || pe.Index != idx {
					t.Errorf("problem %d = %v, want PCR %d", i, ve.Problems[i], idx)
				}
			}
			if !strings.Contains(err.Error(), "never booted the image") {
				t.Errorf("error does not say what the reset value means: %v", err)
			}
		})
	}
}
