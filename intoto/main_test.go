package intoto

import (
	"testing"

	"github.com/mtuf/mtuf/internal/testtool"
)

// TestMain bounds the fuzzing engine's minimization: without it, fuzzing
// these parsers stalls (see testtool.MainWithFuzzMinimizeLimit).
func TestMain(m *testing.M) { testtool.MainWithFuzzMinimizeLimit(m) }
