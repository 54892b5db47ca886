package metadata

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
)

// The profiles are data, not code, so that a security review reads one file
// per platform with the reason for every PCR decision next to it.
//
//go:embed profiles/*.yaml
var profileFiles embed.FS

// Action is what a profile does with a PCR.
type Action int

// Actions. The zero value is no action, so a rule that was never set cannot
// be mistaken for a decision.
const (
	Enforce Action = iota + 1
	WarnOnly
	Omit
)

var actionNames = map[Action]string{Enforce: "enforce", WarnOnly: "warn-only", Omit: "omit"}

func (a Action) String() string {
	if s, ok := actionNames[a]; ok {
		return s
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// ParseAction reads the spelling used in profile files: enforce, warn-only, omit.
func ParseAction(s string) (Action, error) {
	for a, name := range actionNames {
		if s == name {
			return a, nil
		}
	}
	return 0, fmt.Errorf("action %q is not one of enforce, warn-only, omit", s)
}

// Rule is a profile's decision for one PCR and why it was made.
type Rule struct {
	Action Action
	Reason string
	// ResetAllowed says that the image legitimately leaves this PCR in
	// its reset state (nothing measures into it on this platform), so an
	// enforced reset value is a real reference value and not a blank TPM.
	// The reason must say why.
	ResetAllowed bool
}

// Profile says, for one platform, which PCRs a measurements document
// enforces, reports only, or leaves out. It covers every PCR 0..23.
type Profile struct {
	Platform string
	// Source names what the decisions follow.
	Source string
	PCRs   map[uint32]Rule
}

// Platforms returns the platforms that have a profile, sorted.
func Platforms() []string {
	entries, err := fs.ReadDir(profileFiles, "profiles")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// ProfileFor returns the profile of a platform. Each call returns a fresh
// copy that the caller may change.
func ProfileFor(platform string) (*Profile, error) {
	if !slices.Contains(Platforms(), platform) {
		return nil, fmt.Errorf("no PCR profile for platform %q: known platforms are %s", platform, strings.Join(Platforms(), ", "))
	}
	file := path.Join("profiles", platform+".yaml")
	data, err := profileFiles.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading PCR profile %s: %w", file, err)
	}
	p, err := parseProfile(data)
	if err != nil {
		return nil, fmt.Errorf("PCR profile %s: %w", file, err)
	}
	if p.Platform != platform {
		return nil, fmt.Errorf("PCR profile %s: it names platform %q", file, p.Platform)
	}
	return p, nil
}

var (
	profileFields = []string{"platform", "source", "pcrs"}
	ruleFields    = []string{"action", "reason", "resetAllowed"}
)

// parseProfile reads a profile file and checks that it decides every PCR
// 0..23 with a reason.
func parseProfile(data []byte) (*Profile, error) {
	v, err := parseTree(data)
	if err != nil {
		return nil, err
	}
	var p problems
	if err := expectObject(v, "a profile"); err != nil {
		return nil, err
	}
	p.addAll("", checkKeys(v, profileFields...))
	prof := &Profile{PCRs: make(map[uint32]Rule)}
	prof.Platform, err = stringField(v, "platform", true)
	p.add(err)
	if err == nil {
		p.add(ValidatePlatform(prof.Platform))
	}
	prof.Source, err = stringField(v, "source", true)
	p.add(err)
	pcrs := v.get("pcrs")
	if pcrs == nil || pcrs.kind != kindObject {
		p.add(v.at(errors.New("pcrs must be a mapping of every PCR 0..23")))
		return nil, p.err()
	}
	for i, key := range pcrs.keys {
		rv := pcrs.vals[i]
		idx, err := parseIndex(key)
		if err != nil {
			p.add(rv.at(err))
			continue
		}
		if err := expectObject(rv, "a rule"); err != nil {
			p.add(&PCRError{Index: idx, Err: err})
			continue
		}
		for _, err := range unknownFields(rv, ruleFields...) {
			p.add(rv.at(&PCRError{Index: idx, Err: err}))
		}
		name, err := stringFieldNoLine(rv, "action", true)
		p.add(rv.at(pcrErr(idx, err)))
		action, err := ParseAction(name)
		if name != "" {
			p.add(rv.at(pcrErr(idx, err)))
		}
		reason, err := stringFieldNoLine(rv, "reason", true)
		p.add(rv.at(pcrErr(idx, err)))
		if err == nil && strings.TrimSpace(reason) == "" {
			p.add(rv.at(pcrErr(idx, errors.New("reason is empty"))))
		}
		var resetAllowed bool
		if r := rv.get("resetAllowed"); r != nil {
			if r.kind != kindBool {
				p.add(rv.at(pcrErr(idx, fmt.Errorf("resetAllowed must be true or false, not %s", r.kind))))
			} else {
				resetAllowed = r.b
			}
		}
		if resetAllowed && action != Enforce {
			p.add(rv.at(pcrErr(idx, fmt.Errorf("resetAllowed only means something for an enforced PCR, not a %s one", action))))
		}
		prof.PCRs[idx] = Rule{Action: action, Reason: reason, ResetAllowed: resetAllowed}
	}
	for idx := uint32(0); idx <= MaxPCRIndex; idx++ {
		if _, ok := prof.PCRs[idx]; !ok {
			p.add(pcrErr(idx, errors.New("the profile does not decide this PCR")))
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return prof, nil
}

// Apply builds the measurements document of an image from the raw PCR values
// of one bank, as read from a node booted with that image. PCRs the profile
// omits are left out even when values has them. The overrides move a PCR to
// enforced or warn-only whatever the profile says (including a PCR the
// profile omits); a PCR in both lists is an error, as is a PCR the document
// needs but values lacks.
func (p *Profile) Apply(image, hash string, values map[uint32][]byte, enforce, warnOnly []uint32) (*Measurements, error) {
	var probs problems
	probs.add(ValidateImage(image))
	_, err := DigestSize(hash)
	probs.add(err)
	for idx := range values {
		if idx > MaxPCRIndex {
			probs.add(&PCRError{Index: idx, Err: fmt.Errorf("value read for a PCR outside 0..%d", MaxPCRIndex)})
		}
	}
	overrides := make(map[uint32]Action)
	for _, o := range []struct {
		list   []uint32
		action Action
	}{{enforce, Enforce}, {warnOnly, WarnOnly}} {
		for _, idx := range o.list {
			switch prev, seen := overrides[idx]; {
			case idx > MaxPCRIndex:
				probs.add(&PCRError{Index: idx, Err: fmt.Errorf("cannot override a PCR outside 0..%d", MaxPCRIndex)})
			case seen && prev != o.action:
				probs.add(&PCRError{Index: idx, Err: errors.New("listed both as enforced and as warn-only")})
			default:
				overrides[idx] = o.action
			}
		}
	}
	m := &Measurements{Image: image, Platform: p.Platform, Hash: hash, PCRs: make(map[uint32]PCR)}
	for idx := uint32(0); idx <= MaxPCRIndex; idx++ {
		rule, ok := p.PCRs[idx]
		if !ok {
			probs.add(&PCRError{Index: idx, Err: fmt.Errorf("profile %s does not decide this PCR", p.Platform)})
			continue
		}
		action := rule.Action
		if o, ok := overrides[idx]; ok {
			action = o
		}
		switch action {
		case Omit:
			continue
		case Enforce, WarnOnly:
		default:
			probs.add(&PCRError{Index: idx, Err: fmt.Errorf("profile %s has no valid action for this PCR", p.Platform)})
			continue
		}
		v, ok := values[idx]
		if !ok {
			probs.add(&PCRError{Index: idx, Err: fmt.Errorf("no value was read, but the document must pin it (%s)", action)})
			continue
		}
		m.PCRs[idx] = PCR{Expected: bytes.Clone(v), WarnOnly: action == WarnOnly}
	}
	if err := probs.err(); err != nil {
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}
