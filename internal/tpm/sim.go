//go:build simulator

package tpm

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/google/go-tpm-tools/simulator"
)

// openSimulator opens the in-process simulator of "sim" or "sim:SEED".
func openSimulator(spec string) (io.ReadWriteCloser, error) {
	if spec == specSim {
		s, err := simulator.Get()
		if err != nil {
			return nil, fmt.Errorf("start TPM simulator %q: %w", spec, err)
		}
		return s, nil
	}
	seed, err := strconv.ParseInt(strings.TrimPrefix(spec, specSim+":"), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("TPM %q: the simulator seed must be an integer, as in sim:1", spec)
	}
	s, err := simulator.GetWithFixedSeedInsecure(seed)
	if err != nil {
		return nil, fmt.Errorf("start TPM simulator %q: %w", spec, err)
	}
	return s, nil
}
