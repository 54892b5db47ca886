// Command pcr-reader reads PCRs from a TPM and writes an mtuf measurements
// document. See 'pcr-reader --help'.
package main

import (
	"os"

	"github.com/mtuf/mtuf/internal/pcrreadercmd"
)

func main() {
	os.Exit(pcrreadercmd.Main())
}
