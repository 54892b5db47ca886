//go:build !simulator

package tpm

import (
	"strings"
	"testing"
)

// A build without the simulator says so, and how to get one, rather than
// failing as if "sim" were a missing device.
func TestOpenWithoutSimulator(t *testing.T) {
	for _, spec := range []string{"sim", "sim:1"} {
		_, err := Open(spec)
		if err == nil || !strings.Contains(err.Error(), "this build has no TPM simulator") || !strings.Contains(err.Error(), "-tags simulator") {
			t.Errorf("Open(%q) = %v, want an error that names the simulator build", spec, err)
		}
	}
}
