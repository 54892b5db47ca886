// Command mtuf publishes and fetches trusted TPM measurements through TUF
// and verifies cluster nodes against them. See 'mtuf --help'.
package main

import (
	"os"

	"github.com/mtuf/mtuf/internal/mtufcmd"
)

func main() {
	os.Exit(mtufcmd.Main())
}
