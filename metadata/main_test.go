package metadata

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// fuzzMinimizeLimit bounds how many runs the fuzzing engine spends
// minimizing an input, unless -fuzzminimizetime says otherwise. The
// engine minimizes every input that finds new coverage, for 60 seconds by
// default, by trying to remove every subset of its bytes: quadratic in
// the input's length. On the inputs of hundreds of bytes these parsers
// grow from their seeds, that takes the whole minute each time, and
// fuzzing stalls at a few executions. scripts/fuzz.sh passes the same
// bound to every target.
const fuzzMinimizeLimit = "1000x"

func TestMain(m *testing.M) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.fuzzminimizetime" })
	if !given {
		if err := flag.Set("test.fuzzminimizetime", fuzzMinimizeLimit); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}
