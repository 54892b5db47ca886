// Command pcr-precalc computes, from a boot image, the PCR values its boot
// will measure and writes them as an mtuf measurements document. See
// 'pcr-precalc --help'.
package main

import (
	"os"

	"github.com/mtuf/mtuf/internal/precalccmd"
)

func main() {
	os.Exit(precalccmd.Main())
}
