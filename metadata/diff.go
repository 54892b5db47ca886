package metadata

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"slices"
)

// Change says how one PCR differs between two measurements documents.
type Change string

const (
	// Changed: both documents hold the PCR, with another value or another
	// enforcement.
	Changed Change = "changed"
	// Added: only the newer document holds the PCR.
	Added Change = "added"
	// Removed: only the older document holds the PCR.
	Removed Change = "removed"
)

// PCRChange is one PCR that differs between two documents. From and To
// are nil for a PCR the older, or the newer, document does not hold.
type PCRChange struct {
	Index  uint32    `json:"index"`
	Change Change    `json:"change"`
	From   *PCRValue `json:"from,omitempty"`
	To     *PCRValue `json:"to,omitempty"`
}

// PCRValue is a PCR's reference value as a diff shows it.
type PCRValue struct {
	Expected string `json:"expected"`
	WarnOnly bool   `json:"warnOnly"`
}

// Diff lists the PCRs that differ from the measurements from to those to,
// in PCR order, and the indices of those that do not. Both must be of one
// bank: values of two banks cannot be compared.
func Diff(from, to *Measurements) (changes []PCRChange, unchanged []uint32, err error) {
	if from.Hash != to.Hash {
		return nil, nil, fmt.Errorf("image %s uses the %s bank and image %s the %s bank: their PCRs cannot be compared", from.Image, from.Hash, to.Image, to.Hash)
	}
	value := func(p PCR) *PCRValue {
		return &PCRValue{Expected: hex.EncodeToString(p.Expected), WarnOnly: p.WarnOnly}
	}
	indices := append(from.Indices(), to.Indices()...)
	slices.Sort(indices)
	for _, i := range slices.Compact(indices) {
		a, inFrom := from.PCRs[i]
		b, inTo := to.PCRs[i]
		switch {
		case !inTo:
			changes = append(changes, PCRChange{Index: i, Change: Removed, From: value(a)})
		case !inFrom:
			changes = append(changes, PCRChange{Index: i, Change: Added, To: value(b)})
		case !bytes.Equal(a.Expected, b.Expected) || a.WarnOnly != b.WarnOnly:
			changes = append(changes, PCRChange{Index: i, Change: Changed, From: value(a), To: value(b)})
		default:
			unchanged = append(unchanged, i)
		}
	}
	return changes, unchanged, nil
}
