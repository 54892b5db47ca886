package client

import (
	"strings"
	"testing"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/metadata"
)

func TestCheckBins(t *testing.T) {
	for _, bl := range []int{1, 8, metadata.MaxBinBitLength} {
		if err := checkBins(&tuf.SuccinctRoles{BitLength: bl, NamePrefix: "measurements-bin"}); err != nil {
			t.Errorf("bit_length %d: %v", bl, err)
		}
	}
	// A bit_length of 32 would have the listing probe 2^32 bins.
	for _, bl := range []int{0, -1, metadata.MaxBinBitLength + 1, 32, 64} {
		err := checkBins(&tuf.SuccinctRoles{BitLength: bl, NamePrefix: "measurements-bin"})
		if err == nil || !strings.Contains(err.Error(), "measurements-bin-*") || !strings.Contains(err.Error(), "repository content refused") {
			t.Errorf("bit_length %d: %v, want refused naming the bins", bl, err)
		}
	}
}
