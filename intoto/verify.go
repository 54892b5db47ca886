package intoto

import (
	"crypto"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/in-toto/in-toto-golang/in_toto"

	"github.com/mtuf/mtuf/metadata"
)

// Errors of supply chain verification, one per guarantee that failed. The
// errors VerifySupplyChain returns wrap one or more of them (test with
// errors.Is) and say which step, link and key are concerned.
var (
	// ErrLayoutInvalid: the layout cannot be read, or uses in-toto features
	// that mtuf does not verify (inspections, certificate authorities).
	ErrLayoutInvalid = errors.New("in-toto layout is invalid")
	// ErrLayoutSignature: no trusted layout key signed the layout.
	ErrLayoutSignature = errors.New("in-toto layout is not signed by a trusted layout key")
	// ErrLayoutExpired: the layout's expiry time has passed.
	ErrLayoutExpired = errors.New("in-toto layout has expired")
	// ErrLinkMissing: a step has fewer links than its threshold.
	ErrLinkMissing = errors.New("in-toto link is missing")
	// ErrLinkInvalid: a link cannot be read (a sublayout in place of a
	// link, for one) or is not for the step its file name says.
	ErrLinkInvalid = errors.New("in-toto link is invalid")
	// ErrLinkUnauthorized: a link is signed by a key that is not a
	// functionary of its step.
	ErrLinkUnauthorized = errors.New("in-toto link is not signed by a functionary of its step")
	// ErrLinkSignature: a link's signature does not verify.
	ErrLinkSignature = errors.New("in-toto link signature does not verify")
	// ErrArtifactRules: the links break the layout's artifact rules, e.g.
	// the published measurements are not the ones that were read.
	ErrArtifactRules = errors.New("in-toto artifact rules are violated")
	// ErrMeasurementsMismatch: the measurements document is not the one the
	// supply chain produced.
	ErrMeasurementsMismatch = errors.New("measurements document differs from the supply chain's product")
	// ErrFunctionariesDisagree: the reading of a booted node and the
	// precalculation from the image differ on a PCR, or the precalculation
	// did not compute a PCR the document enforces.
	ErrFunctionariesDisagree = errors.New("step read-measurements and step precalculate-measurements disagree")
)

// maxLinks bounds the links of one verification; each costs a signature
// check, and a real supply chain has one or two per step.
const maxLinks = 64

// VerifySupplyChain verifies that measurementsDoc is the product of the
// supply chain that layout describes, at time now:
//
//  1. the layout is signed by one of layoutKeys and has not expired at now;
//  2. every step has at least its threshold of links, each signed by a
//     distinct functionary of the step (links maps file names, either
//     "<step>.<keyid8>.link" or a target name ending in one, to their
//     content; links of steps the layout does not name are ignored);
//  3. the links obey the layout's artifact rules;
//  4. measurementsDoc is the measurements.json that step read-measurements
//     produced, and every link that records measurements.json records
//     the same content.
//
// Verification is in-toto-golang's (the building blocks of
// in_toto.InTotoVerify, in its order), run on links held in memory and
// against the given time rather than the system clock. Layouts with
// inspections, sublayouts or certificate-based functionaries are refused:
// mtuf never runs commands from a layout, and its functionaries are keys.
func VerifySupplyChain(layout []byte, layoutKeys []crypto.PublicKey, links map[string][]byte, measurementsDoc []byte, now time.Time) error {
	if now.IsZero() {
		return errors.New("in-toto verification: no verification time given")
	}
	mb, lay, err := parseLayout(layout)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrLayoutInvalid, err)
	}
	if err := verifyLayoutSignature(mb, layoutKeys); err != nil {
		return err
	}
	if err := in_toto.ValidateMetablock(*mb.Metablock); err != nil {
		return fmt.Errorf("%w: %w", ErrLayoutInvalid, err)
	}
	expires, err := time.Parse(intotoTimeFormat, lay.Expires)
	if err != nil {
		return fmt.Errorf("%w: expiry time %q: %w", ErrLayoutInvalid, lay.Expires, err)
	}
	if !now.Before(expires) {
		return fmt.Errorf("%w: it expired at %s (verification time %s); the layout owner must sign a new layout",
			ErrLayoutExpired, expires.Format(intotoTimeFormat), now.UTC().Format(intotoTimeFormat))
	}
	if err := checkLayout(lay); err != nil {
		return fmt.Errorf("%w: %w", ErrLayoutInvalid, err)
	}

	candidates, err := collectLinks(lay, links)
	if err != nil {
		return err
	}
	// in-toto's own threshold check decides; checkThresholds runs first only
	// to explain a failure link by link, which in-toto does not.
	if err := checkThresholds(lay, candidates); err != nil {
		return err
	}
	all := make(map[string]map[string]in_toto.Metadata, len(lay.Steps))
	for _, step := range lay.Steps {
		all[step.Name] = map[string]in_toto.Metadata{}
		for keyID, c := range candidates[step.Name] {
			if c.mb != nil {
				all[step.Name][keyID] = c.mb
			}
		}
	}
	verified, err := in_toto.VerifyLinkSignatureThesholds(lay, all, nil, nil)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrLinkSignature, err)
	}
	reduced, err := in_toto.ReduceStepsMetadata(lay, verified)
	if err != nil {
		return fmt.Errorf("%w: the links of one step record different artifacts: %w", ErrArtifactRules, err)
	}
	if hasStep(lay, StepPrecalculateMeasurements) {
		// Before in-toto's rules, which refuse the same disagreement but
		// name an artifact, not the PCR and its values.
		if err := checkAgreement(reduced, measurementsDoc); err != nil {
			return err
		}
	}
	items := make([]any, len(lay.Steps))
	for i, s := range lay.Steps {
		items[i] = s
	}
	if err := in_toto.VerifyArtifacts(items, reduced); err != nil {
		if hint := measurementsHint(lay, reduced); hint != "" {
			return fmt.Errorf("%w: %s: %w", ErrArtifactRules, hint, err)
		}
		return fmt.Errorf("%w: %w", ErrArtifactRules, err)
	}
	return checkProduct(lay, reduced, measurementsDoc)
}

// verifyLayoutSignature accepts the layout if any one of the trusted keys
// signed it. in_toto.VerifyLayoutSignatures wants every key it is given to
// have signed, so it is called once per key.
func verifyLayoutSignature(mb *metablock, layoutKeys []crypto.PublicKey) error {
	if len(layoutKeys) == 0 {
		return fmt.Errorf("%w: no trusted layout keys were given", ErrLayoutSignature)
	}
	trusted := make([]string, 0, len(layoutKeys))
	var failures []error
	for i, pub := range layoutKeys {
		forms, err := keyForms(pub)
		if err != nil {
			return fmt.Errorf("trusted layout key %d: %w", i+1, err)
		}
		trusted = append(trusted, forms[0].KeyID)
		for _, k := range forms {
			if _, err := mb.GetSignatureForKeyID(k.KeyID); err != nil {
				continue
			}
			if err := in_toto.VerifyLayoutSignatures(mb, map[string]in_toto.Key{k.KeyID: k}); err != nil {
				failures = append(failures, fmt.Errorf("signature by key %s: %w", k.KeyID, err))
				continue
			}
			return nil
		}
	}
	if len(failures) > 0 {
		return fmt.Errorf("%w: %w", ErrLayoutSignature, errors.Join(failures...))
	}
	signers := make([]string, 0, len(mb.Signatures))
	for _, s := range mb.Signatures {
		signers = append(signers, s.KeyID)
	}
	if len(signers) == 0 {
		return fmt.Errorf("%w: the layout carries no signature", ErrLayoutSignature)
	}
	return fmt.Errorf("%w: it is signed by key(s) %s, but the trusted layout key(s) are %s",
		ErrLayoutSignature, strings.Join(signers, ", "), strings.Join(trusted, ", "))
}

// checkLayout refuses what mtuf does not verify and what would make
// in-toto-golang misbehave (it panics on a step without links, which a
// threshold below 1 would let through), and checks every functionary key.
func checkLayout(lay in_toto.Layout) error {
	if len(lay.Inspect) > 0 {
		names := make([]string, len(lay.Inspect))
		for i, in := range lay.Inspect {
			names[i] = in.Name
		}
		return fmt.Errorf("the layout has inspections (%s); mtuf does not run commands from a layout", strings.Join(names, ", "))
	}
	if len(lay.RootCas) > 0 || len(lay.IntermediateCas) > 0 {
		return errors.New("the layout names certificate authorities; mtuf only supports functionaries identified by key")
	}
	for keyID, k := range lay.Keys {
		if _, err := publicKeyFromRecord(k.KeyType, k.Scheme, k.KeyVal.Public); err != nil {
			return fmt.Errorf("functionary key %s: %w", keyID, err)
		}
		id, err := keyIDOf(k)
		if err != nil {
			return err
		}
		if id != keyID {
			return fmt.Errorf("functionary key %s: its key ID is %s", keyID, id)
		}
	}
	hasRead := false
	for _, s := range lay.Steps {
		hasRead = hasRead || s.Name == StepReadMeasurements
		if len(s.CertificateConstraints) > 0 {
			return fmt.Errorf("step %s has certificate constraints; mtuf only supports functionaries identified by key", s.Name)
		}
		if s.Threshold < 1 {
			return fmt.Errorf("step %s has threshold %d; it must be at least 1", s.Name, s.Threshold)
		}
		if len(s.PubKeys) < s.Threshold {
			return fmt.Errorf("step %s has threshold %d but only %d functionary key(s)", s.Name, s.Threshold, len(s.PubKeys))
		}
		for _, id := range s.PubKeys {
			if _, ok := lay.Keys[id]; !ok {
				return fmt.Errorf("step %s names functionary key %s, which the layout does not list", s.Name, id)
			}
		}
	}
	if !hasRead {
		return fmt.Errorf("the layout has no step %s, which produces %s", StepReadMeasurements, metadata.MeasurementsFile)
	}
	return nil
}

// candidate is one link file offered for a step.
type candidate struct {
	file  string
	keyID string
	mb    *metablock
	// problem says why the link does not count towards the step's threshold.
	problem error
}

// collectLinks sorts the link files by step and by the key that signed
// them, as in_toto.LoadLinksForLayout does for a directory, and checks each:
// readable, for the step its name says, signed by the key its name says, by
// a functionary of the step, with a good signature.
func collectLinks(lay in_toto.Layout, links map[string][]byte) (map[string]map[string]*candidate, error) {
	if len(links) > maxLinks {
		return nil, fmt.Errorf("%w: %d links given, at most %d are accepted", ErrLinkInvalid, len(links), maxLinks)
	}
	steps := make(map[string]in_toto.Step, len(lay.Steps))
	out := make(map[string]map[string]*candidate, len(lay.Steps))
	for _, s := range lay.Steps {
		steps[s.Name] = s
		out[s.Name] = map[string]*candidate{}
	}
	for _, name := range slices.Sorted(maps.Keys(links)) {
		file := path.Base(name)
		step, prefix, ok := splitLinkFileName(file)
		if !ok {
			return nil, fmt.Errorf("%w: file %q is not named <step>.<keyid8>.link", ErrLinkInvalid, name)
		}
		s, known := steps[step]
		if !known {
			continue
		}
		c := checkLink(lay, s, file, prefix, links[name])
		if c.keyID == "" {
			// Not attributable to a key: keep it under its file name so
			// that its problem is reported.
			c.keyID = "file:" + file
		}
		if prev, dup := out[step][c.keyID]; dup {
			return nil, fmt.Errorf("%w: %s and %s are both links of step %s by key %s", ErrLinkInvalid, prev.file, file, step, c.keyID)
		}
		out[step][c.keyID] = c
	}
	return out, nil
}

func checkLink(lay in_toto.Layout, step in_toto.Step, file, prefix string, data []byte) *candidate {
	c := &candidate{file: file}
	mb, l, err := parseLink(data)
	if err != nil {
		c.problem = fmt.Errorf("%w: %s: %w", ErrLinkInvalid, file, err)
		return c
	}
	if l.Name != step.Name {
		c.problem = fmt.Errorf("%w: %s records step %q, not %q", ErrLinkInvalid, file, l.Name, step.Name)
		return c
	}
	for _, sig := range mb.Signatures {
		if strings.HasPrefix(sig.KeyID, prefix) {
			c.keyID = sig.KeyID
			break
		}
	}
	if c.keyID == "" {
		c.problem = fmt.Errorf("%w: %s carries no signature by a key whose ID starts with %s", ErrLinkSignature, file, prefix)
		return c
	}
	c.mb = mb
	if !slices.Contains(step.PubKeys, c.keyID) {
		c.problem = fmt.Errorf("%w: %s is signed by key %s, which is not a functionary of step %s (its functionaries are %s)",
			ErrLinkUnauthorized, file, c.keyID, step.Name, strings.Join(step.PubKeys, ", "))
		return c
	}
	if err := mb.VerifySignature(lay.Keys[c.keyID]); err != nil {
		c.problem = fmt.Errorf("%w: %s: signature by functionary key %s: %w", ErrLinkSignature, file, c.keyID, err)
	}
	return c
}

// splitLinkFileName takes "<step>.<keyid8>.link" apart.
func splitLinkFileName(file string) (step, prefix string, ok bool) {
	step, prefix, ok = metadata.SplitLinkFileName(file)
	if !ok || metadata.ValidateKeyID(prefix) != nil {
		return "", "", false
	}
	return step, prefix, true
}

// checkThresholds explains, step by step, why a threshold is not met.
func checkThresholds(lay in_toto.Layout, candidates map[string]map[string]*candidate) error {
	for _, s := range lay.Steps {
		good := 0
		var problems []error
		for _, keyID := range slices.Sorted(maps.Keys(candidates[s.Name])) {
			c := candidates[s.Name][keyID]
			if c.problem != nil {
				problems = append(problems, c.problem)
				continue
			}
			good++
		}
		if good >= s.Threshold {
			continue
		}
		if len(problems) == 0 {
			names := make([]string, len(s.PubKeys))
			for i, id := range s.PubKeys {
				name, err := metadata.LinkFileName(s.Name, id)
				if err != nil {
					name = s.Name + "." + id + ".link"
				}
				names[i] = name
			}
			return fmt.Errorf("%w: step %s needs %d link(s) signed by distinct functionaries, found %d (expected file name(s): %s)",
				ErrLinkMissing, s.Name, s.Threshold, good, strings.Join(names, ", "))
		}
		return fmt.Errorf("step %s needs %d link(s) signed by distinct functionaries, %d of the %d given qualify: %w",
			s.Name, s.Threshold, good, len(candidates[s.Name]), errors.Join(problems...))
	}
	return nil
}

// measurementsHint explains an artifact rule failure in the terms of this
// supply chain when a link records a measurements.json other than the one
// step read-measurements produced.
func measurementsHint(lay in_toto.Layout, reduced map[string]in_toto.Metadata) string {
	read, ok := stepLink(reduced, StepReadMeasurements)
	if !ok {
		return ""
	}
	produced, ok := read.Products[metadata.MeasurementsFile]
	if !ok {
		return fmt.Sprintf("step %s produced no %s", StepReadMeasurements, metadata.MeasurementsFile)
	}
	for _, s := range lay.Steps {
		if s.Name == StepReadMeasurements || s.Name == StepPrecalculateMeasurements {
			continue
		}
		l, ok := stepLink(reduced, s.Name)
		if !ok {
			continue
		}
		for _, a := range recorded(l) {
			if d := a.digests; d["sha256"] != produced["sha256"] {
				return fmt.Sprintf("step %s records %s as a %s with sha256 %s, but step %s produced sha256 %s",
					s.Name, metadata.MeasurementsFile, a.kind, d["sha256"], StepReadMeasurements, produced["sha256"])
			}
		}
	}
	return ""
}

// checkProduct checks that doc is the measurements.json of the chain.
func checkProduct(lay in_toto.Layout, reduced map[string]in_toto.Metadata, doc []byte) error {
	read, ok := stepLink(reduced, StepReadMeasurements)
	if !ok {
		return fmt.Errorf("%w: no verified link for step %s", ErrLinkMissing, StepReadMeasurements)
	}
	produced, ok := read.Products[metadata.MeasurementsFile]
	if !ok {
		return fmt.Errorf("%w: step %s produced no %s", ErrMeasurementsMismatch, StepReadMeasurements, metadata.MeasurementsFile)
	}
	if err := Digests(produced).Verify(doc); err != nil {
		return fmt.Errorf("%w: %s is not the %s that step %s produced: %w",
			ErrMeasurementsMismatch, metadata.MeasurementsFile, metadata.MeasurementsFile, StepReadMeasurements, err)
	}
	for _, s := range lay.Steps {
		if s.Name == StepPrecalculateMeasurements {
			// Its measurements.json is its own, smaller document.
			continue
		}
		l, ok := stepLink(reduced, s.Name)
		if !ok {
			continue
		}
		for _, a := range recorded(l) {
			if err := a.digests.Verify(doc); err != nil {
				return fmt.Errorf("%w: %s is not the %s that step %s records as a %s: %w",
					ErrMeasurementsMismatch, metadata.MeasurementsFile, metadata.MeasurementsFile, s.Name, a.kind, err)
			}
		}
	}
	return nil
}

// stepLink returns the link that stands for a step after reduction.
func stepLink(reduced map[string]in_toto.Metadata, step string) (in_toto.Link, bool) {
	md, ok := reduced[step]
	if !ok || md == nil {
		return in_toto.Link{}, false
	}
	l, ok := md.GetPayload().(in_toto.Link)
	return l, ok
}

// recordedArtifact is measurements.json as one link records it.
type recordedArtifact struct {
	kind    string // "material" or "product"
	digests Digests
}

// recorded returns the records of measurements.json in a link, materials first.
func recorded(l in_toto.Link) []recordedArtifact {
	var out []recordedArtifact
	if d, ok := l.Materials[metadata.MeasurementsFile]; ok {
		out = append(out, recordedArtifact{"material", Digests(d)})
	}
	if d, ok := l.Products[metadata.MeasurementsFile]; ok {
		out = append(out, recordedArtifact{"product", Digests(d)})
	}
	return out
}

func hasStep(lay in_toto.Layout, name string) bool {
	return slices.ContainsFunc(lay.Steps, func(s in_toto.Step) bool { return s.Name == name })
}

// checkAgreement checks what the artifact rules of a layout with two
// functionaries cannot: that the per-PCR artifacts of step read-measurements
// are those of doc, and that step precalculate-measurements computed every
// PCR doc enforces. It also checks, as the layout's MATCH rule does, that
// every PCR the precalculation computed holds the same value in the reading,
// so that a refusal names the PCR.
func checkAgreement(reduced map[string]in_toto.Metadata, doc []byte) error {
	m, err := metadata.Parse(doc)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMeasurementsMismatch, err)
	}
	want, err := MeasurementsProducts(doc)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMeasurementsMismatch, err)
	}
	read, ok := stepLink(reduced, StepReadMeasurements)
	if !ok {
		return fmt.Errorf("%w: no verified link for step %s", ErrLinkMissing, StepReadMeasurements)
	}
	pre, ok := stepLink(reduced, StepPrecalculateMeasurements)
	if !ok {
		return fmt.Errorf("%w: no verified link for step %s", ErrLinkMissing, StepPrecalculateMeasurements)
	}
	prefix := pcrArtifactDir + "/"
	for name, d := range read.Products {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		content, ok := want[name]
		if !ok {
			return fmt.Errorf("%w: step %s records %s, which %s does not hold", ErrMeasurementsMismatch, StepReadMeasurements, name, metadata.MeasurementsFile)
		}
		if err := Digests(d).Verify(content); err != nil {
			return fmt.Errorf("%w: step %s records %s with another value than %s holds: %w", ErrMeasurementsMismatch, StepReadMeasurements, name, metadata.MeasurementsFile, err)
		}
	}
	for _, idx := range m.Indices() {
		name := PCRArtifact(m.Hash, idx)
		if _, ok := read.Products[name]; !ok {
			return fmt.Errorf("%w: the link of step %s does not record PCR %d as %s; record it with pcr-reader --link-key, which records every PCR of the document",
				ErrMeasurementsMismatch, StepReadMeasurements, idx, name)
		}
		if m.PCRs[idx].WarnOnly {
			continue
		}
		if _, ok := pre.Products[name]; !ok {
			return fmt.Errorf("%w: PCR %d is enforced, but step %s did not compute it (its link records no %s): enforce only PCRs the image determines",
				ErrFunctionariesDisagree, idx, StepPrecalculateMeasurements, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pre.Products)) {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		label := name
		if bank, i, ok := strings.Cut(strings.TrimPrefix(name, prefix), "/"); ok {
			if idx, err := strconv.ParseUint(i, 10, 32); err == nil {
				label = fmt.Sprintf("PCR %d (%s)", idx, bank)
			}
		}
		content, ok := want[name]
		if !ok {
			return fmt.Errorf("%w: step %s computed %s, which the reading does not hold (%s of the %s bank holds PCRs %s)",
				ErrFunctionariesDisagree, StepPrecalculateMeasurements, label, metadata.MeasurementsFile, m.Hash, joinIndices(m.Indices()))
		}
		if err := Digests(pre.Products[name]).Verify(content); err != nil {
			return fmt.Errorf("%w: %s differs: step %s read %s, step %s computed another value (%w)",
				ErrFunctionariesDisagree, label, StepReadMeasurements, content, StepPrecalculateMeasurements, err)
		}
	}
	return nil
}

func joinIndices(idx []uint32) string {
	s := make([]string, len(idx))
	for i, v := range idx {
		s[i] = fmt.Sprint(v)
	}
	return strings.Join(s, ", ")
}
