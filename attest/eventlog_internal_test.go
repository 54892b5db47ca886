package attest

import (
	"crypto"
	"crypto/sha256"
	"strings"
	"testing"

	"github.com/google/go-eventlog/tcg"
)

func TestBootEventData(t *testing.T) {
	sum := func(s string) []byte { d := sha256.Sum256([]byte(s)); return d[:] }
	for _, tc := range []struct {
		name       string
		ev         tcg.Event
		data, desc string
		unverified bool
	}{
		{"data that hashes to the digest", tcg.Event{Type: tcg.EFIAction, Data: []byte("Exit Boot Services Invocation"), Digest: sum("Exit Boot Services Invocation")}, "Exit Boot Services Invocation", "", false},
		{"NUL left out of the hash", tcg.Event{Type: tcg.Action, Data: []byte("Start Option ROM Scan\x00"), Digest: sum("Start Option ROM Scan")}, "Start Option ROM Scan", "", false},
		{"type whose digest is its data's hash", tcg.Event{Type: tcg.EFIAction, Data: []byte("Calling EFI Application"), Digest: sum("something else")}, "", "", true},
		{"separator", tcg.Event{Type: tcg.Separator, Data: []byte("evil"), Digest: sum("\x00\x00\x00\x00")}, "", "", true},
		{"type whose data only describes", tcg.Event{Type: tcg.Ipl, Data: []byte("grub_cmd: linux /vmlinuz"), Digest: sum("linux /vmlinuz")}, "", "grub_cmd: linux /vmlinuz", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bootEvent(tc.ev, crypto.SHA256)
			if b.Data != tc.data || b.Description != tc.desc || b.DataUnverified != tc.unverified {
				t.Fatalf("bootEvent = %+v, want data %q, description %q, unverified %v", b, tc.data, tc.desc, tc.unverified)
			}
			s := b.String()
			if tc.unverified && (!strings.Contains(s, "unverified") || strings.Contains(s, string(tc.ev.Data))) {
				t.Errorf("String() = %q: want the data marked unverified and not shown", s)
			}
			if tc.desc != "" && !strings.Contains(s, "unverified") {
				t.Errorf("String() = %q: want the description marked unverified", s)
			}
		})
	}
}

func TestUnexplainedPCRs(t *testing.T) {
	zero, ones, other := make([]byte, 32), make([]byte, 32), make([]byte, 32)
	for i := range ones {
		ones[i] = 0xff
	}
	other[31] = 1
	l := &replayedLog{byPCR: map[uint32][]BootEvent{4: {{PCR: 4}}}}
	got := l.unexplained(map[uint32][]byte{4: other, 5: zero, 17: ones, 9: other, 10: other})
	if len(got) != 2 || got[0] != 9 || got[1] != 10 {
		t.Fatalf("unexplained = %v, want [9 10]", got)
	}
}
