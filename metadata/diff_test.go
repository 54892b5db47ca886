package metadata_test

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/metadata"
)

func TestDiff(t *testing.T) {
	v := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	from := &metadata.Measurements{Image: "v1", Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{
		4: {Expected: v(4)}, 8: {Expected: v(8)}, 9: {Expected: v(9)}, 11: {Expected: v(11)}, 14: {Expected: v(14), WarnOnly: true},
	}}
	to := from.Clone()
	to.Image = "v2"
	to.PCRs[4] = metadata.PCR{Expected: v(0x44)}
	to.PCRs[14] = metadata.PCR{Expected: v(14)} // now enforced
	delete(to.PCRs, 11)
	to.PCRs[12] = metadata.PCR{Expected: v(12)}

	changes, unchanged, err := metadata.Diff(from, to)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, fmt.Sprintf("%s %d", c.Change, c.Index))
	}
	want := []string{"changed 4", "removed 11", "added 12", "changed 14"}
	if !slices.Equal(got, want) {
		t.Errorf("changes %v, want %v", got, want)
	}
	if !slices.Equal(unchanged, []uint32{8, 9}) {
		t.Errorf("unchanged %v, want [8 9]", unchanged)
	}
	if c := changes[0]; c.From.Expected != strings.Repeat("04", 32) || c.To.Expected != strings.Repeat("44", 32) {
		t.Errorf("PCR 4 change %+v", c)
	}
	if c := changes[3]; !c.From.WarnOnly || c.To.WarnOnly {
		t.Errorf("PCR 14 change %+v, want warn-only to enforced", c)
	}
	if changes, _, _ := metadata.Diff(from, from); len(changes) != 0 {
		t.Errorf("a document differs from itself: %v", changes)
	}

	other := from.Clone()
	other.Hash = "sha384"
	if _, _, err := metadata.Diff(from, other); err == nil || !strings.Contains(err.Error(), "sha384 bank") {
		t.Errorf("Diff of two banks: %v", err)
	}
}
