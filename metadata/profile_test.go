package metadata

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestPlatforms(t *testing.T) {
	want := []string{"aws-nitro-tpm", "azure-sev-snp", "gcp-sev-es", "qemu-vtpm"}
	if got := Platforms(); !slices.Equal(got, want) {
		t.Errorf("Platforms() = %v, want %v", got, want)
	}
	// Every file in profiles/ is embedded and loads.
	files, err := filepath.Glob(filepath.Join("profiles", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(want) {
		t.Errorf("profiles/ holds %v", files)
	}
}

func TestProfilesCoverEveryPCR(t *testing.T) {
	for _, platform := range Platforms() {
		p, err := ProfileFor(platform)
		if err != nil {
			t.Fatalf("%s: %v", platform, err)
		}
		if p.Platform != platform || p.Source == "" {
			t.Errorf("%s: platform %q, source %q", platform, p.Platform, p.Source)
		}
		if len(p.PCRs) != MaxPCRIndex+1 {
			t.Errorf("%s: %d rules, want exactly %d", platform, len(p.PCRs), MaxPCRIndex+1)
		}
		for idx := uint32(0); idx <= MaxPCRIndex; idx++ {
			r, ok := p.PCRs[idx]
			if !ok {
				t.Errorf("%s: PCR %d has no rule", platform, idx)
				continue
			}
			if r.Action != Enforce && r.Action != WarnOnly && r.Action != Omit {
				t.Errorf("%s: PCR %d has action %v", platform, idx, r.Action)
			}
			if len(strings.TrimSpace(r.Reason)) < 10 {
				t.Errorf("%s: PCR %d has no real reason: %q", platform, idx, r.Reason)
			}
		}
	}
}

// TestProfileDecisions checks the decisions that the verifier's guarantees
// rest on, so that an edit of a profile file that weakens them fails here.
func TestProfileDecisions(t *testing.T) {
	for _, platform := range Platforms() {
		p, err := ProfileFor(platform)
		if err != nil {
			t.Fatal(err)
		}
		for _, idx := range []uint32{4, 9, 11, 12} {
			if p.PCRs[idx].Action != Enforce {
				t.Errorf("%s: PCR %d (image boot chain) is %v, want enforce", platform, idx, p.PCRs[idx].Action)
			}
		}
		for idx, r := range p.PCRs {
			if r.ResetAllowed && !slices.Contains([]uint32{8, 12, 13}, idx) {
				t.Errorf("%s: PCR %d may hold its reset value, but the image's boot chain extends it", platform, idx)
			}
		}
		if p.PCRs[ClusterIDPCRIndex].Action != Omit {
			t.Errorf("%s: PCR 15 (cluster ID) is %v, want omit", platform, p.PCRs[ClusterIDPCRIndex].Action)
		}
		for idx := uint32(16); idx <= 23; idx++ {
			if p.PCRs[idx].Action != Omit {
				t.Errorf("%s: PCR %d is %v, want omit", platform, idx, p.PCRs[idx].Action)
			}
		}
	}
	// With two functionaries, qemu-vtpm enforces exactly what both produce
	// from the image; the host's firmware PCRs are warn-only.
	q, _ := ProfileFor("qemu-vtpm")
	for idx := uint32(0); idx <= MaxPCRIndex; idx++ {
		switch r := q.PCRs[idx]; {
		case slices.Contains([]uint32{4, 9, 11, 12}, idx):
			if r.Action != Enforce {
				t.Errorf("qemu-vtpm: PCR %d is %v, want enforce", idx, r.Action)
			}
		case idx <= 7:
			if r.Action != WarnOnly {
				t.Errorf("qemu-vtpm: firmware PCR %d is %v, want warn-only", idx, r.Action)
			}
		case r.Action == Enforce:
			t.Errorf("qemu-vtpm: PCR %d is enforced, but not both functionaries produce it", idx)
		}
	}
	if !q.PCRs[12].ResetAllowed || q.PCRs[4].ResetAllowed || q.PCRs[9].ResetAllowed || q.PCRs[11].ResetAllowed {
		t.Error("qemu-vtpm: only PCR 12 (the image's own command line, no credentials) may be enforced at its reset value")
	}
	for _, platform := range []string{"aws-nitro-tpm", "azure-sev-snp", "gcp-sev-es"} {
		p, _ := ProfileFor(platform)
		for _, idx := range []uint32{8, 13} {
			if p.PCRs[idx].Action != Enforce || !p.PCRs[idx].ResetAllowed {
				t.Errorf("%s: PCR %d is %+v, want enforced at its reset value", platform, idx, p.PCRs[idx])
			}
		}
	}
	az, _ := ProfileFor("azure-sev-snp")
	for _, idx := range []uint32{0, 1, 2, 3, 6, 10} {
		if az.PCRs[idx].Action == Enforce {
			t.Errorf("azure-sev-snp: cloud-controlled PCR %d is enforced", idx)
		}
	}
	if az.PCRs[6].Action != Omit || !strings.Contains(az.PCRs[6].Reason, "unique ID") {
		t.Errorf("azure-sev-snp: PCR 6 = %+v", az.PCRs[6])
	}
}

func TestProfileForUnknown(t *testing.T) {
	for _, name := range []string{"openstack", "", "../profiles/qemu-vtpm", "QEMU-VTPM"} {
		_, err := ProfileFor(name)
		if err == nil {
			t.Errorf("ProfileFor(%q) succeeded", name)
			continue
		}
		if !strings.Contains(err.Error(), "known platforms are aws-nitro-tpm, azure-sev-snp, gcp-sev-es, qemu-vtpm") {
			t.Errorf("ProfileFor(%q) error does not list the known platforms: %v", name, err)
		}
	}
}

func TestProfileForReturnsCopies(t *testing.T) {
	a, _ := ProfileFor("qemu-vtpm")
	a.PCRs[4] = Rule{Action: Omit, Reason: "changed"}
	b, _ := ProfileFor("qemu-vtpm")
	if b.PCRs[4].Action != Enforce {
		t.Error("changing a returned profile changed the next one")
	}
}

func TestParseProfileErrors(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("profiles", "qemu-vtpm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := parseProfile(base); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		old, new string
		pcr      int
		want     string
	}{
		{"missing PCR", "  23:\n    action: omit\n", "  24:\n    action: omit\n", 24, "PCR 24: index out of range"},
		{"undecided PCR", "  23:\n    action: omit\n    reason: Application support PCR, resettable by software; proves nothing.\n", "", 23, "PCR 23: the profile does not decide this PCR"},
		{"bad action", "  4:\n    action: enforce\n", "  4:\n    action: enforced\n", 4, `PCR 4: action "enforced" is not one of enforce, warn-only, omit`},
		{"empty reason", "reason: Debug PCR, resettable by software; proves nothing.", `reason: " "`, 16, "PCR 16: reason is empty"},
		{"missing reason", "    reason: Debug PCR, resettable by software; proves nothing.\n", "", 16, "PCR 16: reason is missing"},
		{"unknown field", "  4:\n    action: enforce\n", "  4:\n    action: enforce\n    note: x\n", 4, `PCR 4: unknown field "note"`},
		{"resetAllowed not a bool", "  4:\n    action: enforce\n", "  4:\n    action: enforce\n    resetAllowed: sometimes\n", 4, "PCR 4: resetAllowed must be true or false, not a string"},
		{"resetAllowed on a warn-only PCR", "  0:\n    action: warn-only\n", "  0:\n    action: warn-only\n    resetAllowed: true\n", 0, "PCR 0: resetAllowed only means something for an enforced PCR, not a warn-only one"},
		{"platform unsafe", "platform: qemu-vtpm", "platform: qemu/vtpm", -1, `platform "qemu/vtpm"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if !bytes.Contains(base, []byte(tt.old)) {
				t.Fatalf("profile lacks %q", tt.old)
			}
			_, err := parseProfile(bytes.Replace(base, []byte(tt.old), []byte(tt.new), 1))
			wantProblem(t, err, tt.pcr, tt.want)
		})
	}
}

// readAll returns raw values of one bank for every PCR, PCR i holding bytes
// of value i+1, as a node would report them.
func readAll(size int) map[uint32][]byte {
	values := make(map[uint32][]byte)
	for idx := uint32(0); idx <= MaxPCRIndex; idx++ {
		values[idx] = digest(size, byte(idx+1))
	}
	return values
}

func TestApply(t *testing.T) {
	p, err := ProfileFor("azure-sev-snp")
	if err != nil {
		t.Fatal(err)
	}
	values := readAll(32)
	m, err := p.Apply("v2.15.0", HashSHA256, values, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Image != "v2.15.0" || m.Platform != "azure-sev-snp" || m.Hash != HashSHA256 {
		t.Errorf("document is %s/%s/%s", m.Image, m.Platform, m.Hash)
	}
	for idx := uint32(0); idx <= MaxPCRIndex; idx++ {
		rule := p.PCRs[idx]
		got, present := m.PCRs[idx]
		switch rule.Action {
		case Omit:
			if present {
				t.Errorf("PCR %d is omitted by the profile but present", idx)
			}
		case Enforce, WarnOnly:
			if !present || got.WarnOnly != (rule.Action == WarnOnly) || !bytes.Equal(got.Expected, values[idx]) {
				t.Errorf("PCR %d = %+v, present %v; want %v of %x", idx, got, present, rule.Action, values[idx])
			}
		}
	}
	if err := m.Validate(); err != nil {
		t.Error(err)
	}
	// The document holds copies of the values.
	values[4][0] ^= 0xff
	if m.PCRs[4].Expected[0] != 5 {
		t.Error("document aliases the values read")
	}
}

func TestApplyOverrides(t *testing.T) {
	p, err := ProfileFor("azure-sev-snp")
	if err != nil {
		t.Fatal(err)
	}
	// 6 is omitted by the profile, 1 warn-only, 4 enforced.
	m, err := p.Apply("v1", HashSHA384, readAll(48), []uint32{6, 1}, []uint32{4})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		idx  uint32
		warn bool
	}{{6, false}, {1, false}, {4, true}, {9, false}, {14, true}} {
		got, ok := m.PCRs[tt.idx]
		if !ok || got.WarnOnly != tt.warn {
			t.Errorf("PCR %d = %+v (present %v), want warnOnly %v", tt.idx, got, ok, tt.warn)
		}
	}
	if _, ok := m.PCRs[0]; ok {
		t.Error("PCR 0 appeared without an override")
	}
	if m.Hash != HashSHA384 {
		t.Errorf("hash %s", m.Hash)
	}
}

func TestApplyErrors(t *testing.T) {
	p, err := ProfileFor("qemu-vtpm")
	if err != nil {
		t.Fatal(err)
	}
	without := func(idx uint32) map[uint32][]byte {
		v := readAll(32)
		delete(v, idx)
		return v
	}
	withShort := readAll(32)
	withShort[9] = digest(31, 1)
	withExtra := readAll(32)
	withExtra[24] = digest(32, 1)
	tests := []struct {
		name              string
		image, hash       string
		values            map[uint32][]byte
		enforce, warnOnly []uint32
		pcr               int
		want              string
	}{
		{"in both lists", "v1", HashSHA256, readAll(32), []uint32{4, 9}, []uint32{9}, 9, "PCR 9: listed both as enforced and as warn-only"},
		{"in both lists, omitted PCR", "v1", HashSHA256, readAll(32), []uint32{0}, []uint32{0}, 0, "PCR 0: listed both"},
		{"override out of range", "v1", HashSHA256, readAll(32), []uint32{24}, nil, 24, "PCR 24: cannot override a PCR outside 0..23"},
		{"enforced value missing", "v1", HashSHA256, without(4), nil, nil, 4, "PCR 4: no value was read, but the document must pin it (enforce)"},
		{"overridden value missing", "v1", HashSHA256, without(0), []uint32{0}, nil, 0, "PCR 0: no value was read"},
		{"wrong bank", "v1", HashSHA384, readAll(32), nil, nil, 4, "PCR 4: expected digest is 32 bytes, sha384 needs 48"},
		{"short value", "v1", HashSHA256, withShort, nil, nil, 9, "PCR 9: expected digest is 31 bytes, sha256 needs 32"},
		{"value out of range", "v1", HashSHA256, withExtra, nil, nil, 24, "PCR 24: value read for a PCR outside 0..23"},
		{"bad hash", "v1", "sha1", readAll(32), nil, nil, -1, `hash "sha1" is not supported`},
		{"bad image", "v1/x", HashSHA256, readAll(32), nil, nil, -1, `image version "v1/x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := p.Apply(tt.image, tt.hash, tt.values, tt.enforce, tt.warnOnly)
			if m != nil {
				t.Error("document returned with an error")
			}
			wantProblem(t, err, tt.pcr, tt.want)
		})
	}

	// A profile built by hand must decide every PCR.
	partial := &Profile{Platform: "custom", PCRs: map[uint32]Rule{4: {Action: Enforce, Reason: "kernel"}}}
	_, err = partial.Apply("v1", HashSHA256, readAll(32), nil, nil)
	wantProblem(t, err, 0, "PCR 0: profile custom does not decide this PCR")
}

func TestActionStrings(t *testing.T) {
	for _, a := range []Action{Enforce, WarnOnly, Omit} {
		back, err := ParseAction(a.String())
		if err != nil || back != a {
			t.Errorf("ParseAction(%q) = %v, %v", a.String(), back, err)
		}
	}
	if _, err := ParseAction("Enforce"); err == nil {
		t.Error("ParseAction is not case-sensitive")
	}
	if s := Action(0).String(); s != "Action(0)" {
		t.Errorf("zero action prints as %q", s)
	}
}
