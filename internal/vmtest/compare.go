package vmtest

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/mtuf/mtuf/metadata"
)

// ComparePCRs compares a precalculated measurements document with one read
// from a booted machine: every PCR of precalc must hold the measured value.
// It returns the table of both, one PCR a line, and an error naming the
// PCRs that differ. A precalculation without PCRs is an error: it would
// agree with anything.
func ComparePCRs(precalc, measured *metadata.Measurements) (string, error) {
	if precalc.Hash != measured.Hash {
		return "", fmt.Errorf("the precalculated PCRs are of the %s bank, the measured ones of the %s bank: compare one bank", precalc.Hash, measured.Hash)
	}
	if len(precalc.PCRs) == 0 {
		return "", errors.New("the precalculation holds no PCRs")
	}
	idx := make([]uint32, 0, len(precalc.PCRs))
	for i := range precalc.PCRs {
		idx = append(idx, i)
	}
	sort.Slice(idx, func(a, b int) bool { return idx[a] < idx[b] })
	var table strings.Builder
	width := 2 * len(precalc.PCRs[idx[0]].Expected)
	fmt.Fprintf(&table, "PCR  %-*s  %s\n", width, "precalculated ("+precalc.Hash+")", "measured")
	var differ []string
	for _, i := range idx {
		p := precalc.PCRs[i]
		m, ok := measured.PCRs[i]
		got, mark := "(not measured)", ""
		if ok {
			got = fmt.Sprintf("%x", m.Expected)
		}
		if !ok || !bytes.Equal(p.Expected, m.Expected) {
			mark = "  DIFFERS"
			differ = append(differ, fmt.Sprint(i))
		}
		fmt.Fprintf(&table, "%3d  %-*x  %s%s\n", i, width, p.Expected, got, mark)
	}
	if len(differ) > 0 {
		return table.String(), fmt.Errorf("PCR %s: the precalculated value differs from the measured one", strings.Join(differ, ", "))
	}
	return table.String(), nil
}
