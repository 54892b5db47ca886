package cli

import (
	"errors"
	"fmt"
	"testing"
)

func TestCode(t *testing.T) {
	for _, tt := range []struct {
		name   string
		err    error
		code   int
		silent bool
	}{
		{"success", nil, ExitOK, false},
		{"plain error", errors.New("boom"), ExitFailed, false},
		{"usage", Usagef("--flag %q", "x"), ExitUsage, false},
		{"wrapped usage", fmt.Errorf("command: %w", Usage(errors.New("bad"))), ExitUsage, false},
		{"silent", Silent(3), 3, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, silent := Code(tt.err)
			if code != tt.code || silent != tt.silent {
				t.Errorf("Code(%v) = %d, %v; want %d, %v", tt.err, code, silent, tt.code, tt.silent)
			}
			if IsUsage(tt.err) != (tt.code == ExitUsage) {
				t.Errorf("IsUsage(%v) = %v", tt.err, !(tt.code == ExitUsage))
			}
		})
	}
	if got := Usagef("--out %s", "x").Error(); got != "--out x" {
		t.Errorf("usage error message = %q", got)
	}
}
