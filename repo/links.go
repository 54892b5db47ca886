package repo

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/metadata"
)

// A measurements document published with its in-toto links is published
// byte for byte: the links attest the SHA-256 of the file that step
// read-measurements wrote, so re-encoding it would break the chain. The
// links become targets beside the document (metadata.LinkTarget), signed
// by the measurements role like the document itself, and the document's
// target lists them in its custom metadata (metadata.MeasurementsCustom), so that a client knows which
// links to fetch without listing the repository.

// LinkFile is an in-toto link given to a publish.
type LinkFile struct {
	// Source names the link in messages, usually its file name.
	Source string
	Data   []byte
}

// LinkedPublishRequest publishes a measurements document together with
// the in-toto links that attest how it was made.
type LinkedPublishRequest struct {
	// Document is the measurements document exactly as step
	// read-measurements wrote it (JSON). It is published unchanged.
	Document []byte
	// Source names the document in messages, usually its file name.
	Source string
	// Image and Platform, when set, must be those of the document.
	Image, Platform string
	// Links are links made elsewhere: at least the one of step
	// read-measurements (pcr-reader --link-key, or in-toto-run).
	Links []LinkFile
	// PublishSigner, when set, signs the link of this publish (step
	// publish, with the document as its material) as a functionary.
	PublishSigner crypto.Signer
	// Release is a CLI release to publish in the same step.
	Release *Release
	// Replace allows new content for targets already published.
	Replace bool
	// AllowUnprofiledPlatform is PublishRequest.AllowUnprofiledPlatform.
	AllowUnprofiledPlatform bool
}

// LinkedPublishResult says what a publish with links did.
type LinkedPublishResult struct {
	PublishResult
	// Links are the target names of the links published with the document.
	Links []string `json:"links"`
	// PublishLink is the target name of the link this publish signed.
	PublishLink string `json:"publishLink,omitempty"`
	// LayoutVerified is set when the repository has an in-toto layout and
	// the document and links passed its verification before publishing.
	LayoutVerified bool `json:"layoutVerified"`
}

// maxPublishLinks bounds the links of one publish; a supply chain has one
// or two per step.
const maxPublishLinks = 16

// linkTarget is one link about to be published.
type linkTarget struct {
	source, name, step, keyID string
	data                      []byte
	own                       bool // signed by this publish
}

// PublishWithLinks publishes a measurements document with its in-toto
// links, and the link of this publish when req.PublishSigner is set.
//
// Before anything is written it checks that every link that records
// measurements.json as a product records exactly this document, and, when
// the repository has an in-toto layout (see PublishLayout), runs the full
// supply chain verification that clients run: what clients would refuse
// is never published.
func (w *Workspace) PublishWithLinks(ctx context.Context, req LinkedPublishRequest) (*LinkedPublishResult, error) {
	src := req.Source
	if src == "" {
		src = "the measurements document"
	}
	m, err := metadata.Parse(req.Document)
	if err != nil {
		return nil, fmt.Errorf("measurements file %s: %w", src, err)
	}
	if t := bytes.TrimSpace(req.Document); len(t) == 0 || t[0] != '{' {
		return nil, fmt.Errorf("measurements file %s is not JSON: with in-toto links the document is published byte for byte as %s, so it must be the JSON file that step %s wrote",
			src, metadata.MeasurementsFile, intoto.StepReadMeasurements)
	}
	if (req.Image != "" && m.Image != req.Image) || (req.Platform != "" && m.Platform != req.Platform) {
		return nil, fmt.Errorf("measurements file %s is for image %s on %s, not image %s on %s", src, m.Image, m.Platform, req.Image, req.Platform)
	}
	if err := CheckMeasurements(m, req.AllowUnprofiledPlatform); err != nil {
		return nil, fmt.Errorf("measurements file %s: %w", src, err)
	}
	links, err := collectPublishLinks(req, m, src)
	if err != nil {
		return nil, err
	}
	var res *LinkedPublishResult
	err = w.update(ctx, func() error {
		var err error
		res, err = w.tryPublishWithLinks(ctx, req, m, links)
		return err
	})
	return res, err
}

// collectPublishLinks reads the given links, signs this publish's link,
// and checks each against the document.
func collectPublishLinks(req LinkedPublishRequest, m *metadata.Measurements, src string) ([]linkTarget, error) {
	if len(req.Links) > maxPublishLinks {
		return nil, fmt.Errorf("%d links given, at most %d are accepted", len(req.Links), maxPublishLinks)
	}
	var out []linkTarget
	byName := map[string]string{}
	add := func(lt linkTarget) error {
		if prev, dup := byName[lt.name]; dup {
			return fmt.Errorf("links %s and %s are both links of step %s by key %s; give one", prev, lt.source, lt.step, lt.keyID)
		}
		byName[lt.name] = lt.source
		out = append(out, lt)
		return nil
	}
	hasRead := false
	for _, l := range req.Links {
		step, keyID, products, err := intoto.LinkProducts(l.Data)
		if err != nil {
			return nil, fmt.Errorf("link %s: %w", l.Source, err)
		}
		if step != intoto.StepReadMeasurements && step != intoto.StepPublish && step != intoto.StepPrecalculateMeasurements {
			return nil, fmt.Errorf("link %s is of step %q; the measurements supply chain has steps %s, %s and %s",
				l.Source, step, intoto.StepReadMeasurements, intoto.StepPrecalculateMeasurements, intoto.StepPublish)
		}
		name, err := metadata.LinkTarget(m.Image, m.Platform, step, keyID)
		if err != nil {
			return nil, fmt.Errorf("link %s: %w", l.Source, err)
		}
		d, ok := products[metadata.MeasurementsFile]
		if step == intoto.StepReadMeasurements {
			if !ok {
				return nil, fmt.Errorf("link %s (step %s, key %s) records no product %s; it does not attest any measurements document",
					l.Source, step, keyID, metadata.MeasurementsFile)
			}
			hasRead = true
		}
		// The precalculation's measurements.json is its own document; it
		// is compared PCR by PCR when the layout is verified.
		if ok && step != intoto.StepPrecalculateMeasurements {
			if err := d.Verify(req.Document); err != nil {
				return nil, fmt.Errorf("measurements file %s is not the %s that link %s (step %s, key %s) records: %w; publish the file that step produced, unchanged",
					src, metadata.MeasurementsFile, l.Source, step, keyID, err)
			}
		}
		if err := add(linkTarget{source: l.Source, name: name, step: step, keyID: keyID, data: l.Data}); err != nil {
			return nil, err
		}
	}
	if !hasRead {
		return nil, fmt.Errorf("no link of step %s was given: publish the link that pcr-reader --link-key (or in-toto-run) wrote with %s",
			intoto.StepReadMeasurements, src)
	}
	if req.PublishSigner != nil {
		data, keyID, err := intoto.NewLink(intoto.StepPublish, map[string][]byte{metadata.MeasurementsFile: req.Document}, nil, req.PublishSigner)
		if err != nil {
			return nil, err
		}
		name, err := metadata.LinkTarget(m.Image, m.Platform, intoto.StepPublish, keyID)
		if err != nil {
			return nil, err
		}
		if err := add(linkTarget{source: "this publish's link", name: name, step: intoto.StepPublish, keyID: keyID, data: data, own: true}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (w *Workspace) tryPublishWithLinks(ctx context.Context, req LinkedPublishRequest, m *metadata.Measurements, links []linkTarget) (*LinkedPublishResult, error) {
	s, err := loadState(ctx, w.Storage)
	if err != nil {
		return nil, err
	}
	res := &LinkedPublishResult{}
	if res.LayoutVerified, err = w.verifyLayout(ctx, s, req, links); err != nil {
		return nil, err
	}

	measName, err := metadata.MeasurementsTarget(m.Image, m.Platform)
	if err != nil {
		return nil, err
	}
	unchanged, err := s.holds(ctx, measName, req.Document)
	if err != nil {
		return nil, err
	}
	targets, names, err := s.linkTargets(ctx, req, m, measName, unchanged, links)
	if err != nil {
		return nil, err
	}
	res.Links = names
	for _, l := range links {
		if l.own {
			res.PublishLink = l.name
		}
	}
	meas := Target{Name: measName, Data: req.Document, Custom: metadata.MeasurementsCustom{
		TargetCustom: metadata.TargetCustom{Kind: metadata.KindMeasurements, Image: m.Image, Platform: m.Platform},
		Links:        names,
	}}
	if req.Release != nil {
		rt, err := w.releaseTargets(ctx, s, req.Release)
		if err != nil {
			return nil, err
		}
		targets = append(targets, rt...)
	}

	res.Unchanged = true
	files := map[string][]byte{}
	pt, err := s.addTargetWithCustom(ctx, meas, req.Replace)
	if err != nil {
		return nil, err
	}
	record := func(pt *PublishedTarget, t Target) {
		if !pt.Unchanged {
			res.Unchanged = false
			files[targetFileName(t.Name, t.Data)] = t.Data
		}
		res.Targets = append(res.Targets, *pt)
	}
	record(pt, meas)
	for _, t := range targets {
		pt, err := s.addTarget(ctx, t, req.Replace)
		if err != nil {
			return nil, err
		}
		record(pt, t)
	}
	if err := w.commitPublish(ctx, s, files, &res.PublishResult); err != nil {
		return nil, err
	}
	return res, nil
}

// verifyLayout verifies the supply chain of the document against the
// repository's in-toto layout, as clients will, and says whether there
// was a layout to verify against.
func (w *Workspace) verifyLayout(ctx context.Context, s *state, req LinkedPublishRequest, links []linkTarget) (bool, error) {
	layout, err := s.layout(ctx)
	if err != nil {
		return false, err
	}
	if layout == nil {
		return false, nil
	}
	files := make(map[string][]byte, len(links))
	for _, l := range links {
		files[l.name] = l.data
	}
	if err := intoto.VerifySupplyChain(layout.Data, layout.OwnerKeys, files, req.Document, w.now()); err != nil {
		hint := ""
		if errors.Is(err, intoto.ErrLinkMissing) && req.PublishSigner == nil {
			hint = " (sign this publish's link with --link-key, or give the links of every step)"
		}
		return false, fmt.Errorf("the repository's in-toto layout %s refuses these measurements, as clients would: %w%s", metadata.LayoutTarget, err, hint)
	}
	return true, nil
}

// linkTargets returns the link targets to add, and the names of every link
// the document's custom metadata lists, sorted: those of this publish and,
// when the document is already published as it is, those published with it
// before.
func (s *state) linkTargets(ctx context.Context, req LinkedPublishRequest, m *metadata.Measurements, measName string, unchanged bool, links []linkTarget) ([]Target, []string, error) {
	var targets []Target
	names := []string{}
	for _, l := range links {
		names = append(names, l.name)
		if unchanged && !req.Replace {
			// The document is published as it is and a link by the same
			// functionary for the same step attests it already: keep that
			// one (ECDSA and RSA-PSS signatures differ on every run).
			if held, err := s.hasTarget(ctx, l.name); err != nil {
				return nil, nil, err
			} else if held {
				continue
			}
		}
		targets = append(targets, Target{Name: l.name, Data: l.data, Custom: metadata.TargetCustom{
			Kind: metadata.KindLink, Image: m.Image, Platform: m.Platform, Step: l.step, KeyID: l.keyID[:8],
		}})
	}
	if unchanged {
		// Links published earlier for the same document stay valid.
		prev, err := s.listedLinks(ctx, measName, m.Image, m.Platform)
		if err != nil {
			return nil, nil, err
		}
		names = append(names, prev...)
	}
	slices.Sort(names)
	return targets, slices.Compact(names), nil
}

// addTargetWithCustom is addTarget for a target whose custom metadata may
// change while its content does not (new links for the same document): a
// new custom value re-signs the bin without needing Replace.
func (s *state) addTargetWithCustom(ctx context.Context, t Target, replace bool) (*PublishedTarget, error) {
	pt, err := s.addTarget(ctx, t, replace)
	if err != nil || !pt.Unchanged {
		return pt, err
	}
	raw, err := json.Marshal(t.Custom)
	if err != nil {
		return nil, err
	}
	old := s.roles[pt.Bin].Signed.Targets[t.Name]
	if old.Custom != nil && bytes.Equal(*old.Custom, raw) {
		return pt, nil
	}
	custom := json.RawMessage(raw)
	old.Custom = &custom
	s.dirty[pt.Bin] = true
	pt.Unchanged = false
	return pt, nil
}

// hasTarget tells whether the repository publishes a target of that name.
func (s *state) hasTarget(ctx context.Context, name string) (bool, error) {
	bin, _, err := s.binFor(ctx, name)
	if err != nil {
		return false, err
	}
	md, err := s.role(ctx, bin)
	if err != nil {
		return false, err
	}
	_, ok := md.Signed.Targets[name]
	return ok, nil
}

// listedLinks returns the link names in the custom metadata of a
// published measurements target, keeping only names of links beside it.
func (s *state) listedLinks(ctx context.Context, measName, image, platform string) ([]string, error) {
	bin, _, err := s.binFor(ctx, measName)
	if err != nil {
		return nil, err
	}
	md, err := s.role(ctx, bin)
	if err != nil {
		return nil, err
	}
	tf, ok := md.Signed.Targets[measName]
	if !ok || tf.Custom == nil {
		return nil, nil
	}
	c, err := metadata.ParseMeasurementsCustom(*tf.Custom)
	if err != nil {
		return nil, nil
	}
	var out []string
	for _, name := range c.Links {
		lc, err := metadata.ParseTarget(name)
		if err == nil && lc.Kind == metadata.KindLink && lc.Image == image && lc.Platform == platform {
			if held, err := s.hasTarget(ctx, name); err == nil && held {
				out = append(out, name)
			}
		}
	}
	return out, nil
}
