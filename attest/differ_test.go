package attest

import "testing"

func TestDiffer(t *testing.T) {
	for _, tt := range []struct {
		pcrs []uint32
		want string
	}{
		{[]uint32{4}, "PCR 4 differs"},
		{[]uint32{4, 7}, "PCRs 4, 7 differ"},
	} {
		if got := differ(tt.pcrs); got != tt.want {
			t.Errorf("differ(%v) = %q, want %q", tt.pcrs, got, tt.want)
		}
	}
}
