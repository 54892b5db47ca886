//go:build !simulator

package tpm

import (
	"fmt"
	"io"
)

// openSimulator refuses: the TPM simulator (go-tpm-tools, in C through cgo)
// is left out of production builds, so that an agent on a real node can
// only ever quote with a real TPM.
func openSimulator(spec string) (io.ReadWriteCloser, error) {
	return nil, fmt.Errorf("TPM %q: this build has no TPM simulator; build with cgo and -tags simulator (as make build-sim, make demo and make test do), or use a TPM device or tcp://HOST:PORT for swtpm", spec)
}
