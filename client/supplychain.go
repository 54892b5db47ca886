package client

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/metadata"
)

// The in-toto supply chain of the measurements. A repository that
// publishes an in-toto layout (the target metadata.LayoutTarget of the
// top-level targets role, signed offline) makes every measurements
// document prove that step read-measurements produced it and step publish
// published it unchanged, each signed by a functionary the layout names.
// The layout owner's keys come from the layout target's custom metadata,
// which TUF has verified; nothing about the layout is taken from the
// network unverified.
//
// A repository without a layout still works: its measurements are trusted
// on their TUF signatures alone, and the update records that (see
// SupplyChain.Warning) for the caller to show.

// NoLayoutWarning is the SupplyChain.Warning of an update from a
// repository that publishes no in-toto layout.
const NoLayoutWarning = "the repository publishes no in-toto layout (" + metadata.LayoutTarget +
	"): the measurements are trusted on their TUF signature alone, without proof of the step that read them"

// SupplyChain says how the measurements of the last update were traced
// back to the step that read them.
type SupplyChain struct {
	// Verified is set when the in-toto layout and links were verified.
	Verified bool   `json:"verified"`
	Image    string `json:"image"`
	Platform string `json:"platform"`
	// MeasurementsSHA256 is the SHA-256 of the measurements target.
	MeasurementsSHA256 string `json:"measurementsSha256"`
	// LayoutSHA256 and LayoutOwners (in-toto key IDs) identify the layout
	// the measurements were verified against.
	LayoutSHA256 string   `json:"layoutSha256,omitempty"`
	LayoutOwners []string `json:"layoutOwners,omitempty"`
	// LayoutExpires is when the layout stops being valid.
	LayoutExpires *time.Time `json:"layoutExpires,omitempty"`
	// Links are the target names of the links that were verified.
	Links []string `json:"links,omitempty"`
	// Warning says why the measurements are trusted without in-toto
	// verification.
	Warning string `json:"warning,omitempty"`
	// UpdatedAt is the time of the update this record belongs to.
	UpdatedAt time.Time `json:"updatedAt"`
}

const supplyChainFile = "supplychain.json"

// SupplyChain returns how the measurements in the config were verified by
// the update that fetched them, or nil when no update recorded it.
func (c *Client) SupplyChain() (*SupplyChain, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, supplyChainFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", c.dir, err)
	}
	var sc SupplyChain
	if err := json.Unmarshal(data, &sc); err != nil {
		return nil, fmt.Errorf("state %s: corrupt %s: %w", c.dir, supplyChainFile, err)
	}
	// The record is written just before the config: after a crash in
	// between it describes an update that did not happen.
	cfg := c.config
	if cfg.UpdatedAt == nil || !cfg.UpdatedAt.Equal(sc.UpdatedAt) || cfg.Image != sc.Image || cfg.Platform != sc.Platform {
		return nil, nil
	}
	return &sc, nil
}

func (c *Client) saveSupplyChain(sc *SupplyChain) error {
	data, err := json.MarshalIndent(sc, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.dir, supplyChainFile), append(data, '\n'), 0o644)
}

// verifySupplyChain verifies the in-toto supply chain of the measurements
// document doc, the TUF-verified target measName, at time now. Every
// refusal wraps ErrUntrusted and one of package intoto's errors.
func (c *Client) verifySupplyChain(up *updater.Updater, measName string, m *metadata.Measurements, doc []byte, now time.Time) (*SupplyChain, error) {
	sum := sha256.Sum256(doc)
	sc := &SupplyChain{Image: m.Image, Platform: m.Platform, MeasurementsSHA256: hex.EncodeToString(sum[:])}
	// Only the top-level targets role, signed offline, may publish the
	// layout: the one of a delegated role would not count.
	tf, ok := up.GetTopLevelTargets()[metadata.LayoutTarget]
	if !ok {
		sc.Warning = NoLayoutWarning
		return sc, nil
	}
	refuse := func(err error) error {
		return fmt.Errorf("%w: in-toto verification of %s: %w", ErrUntrusted, measName, err)
	}
	if tf.Custom == nil {
		return nil, refuse(fmt.Errorf("%w: the layout target %s names no layout owner key in its custom metadata", intoto.ErrLayoutInvalid, metadata.LayoutTarget))
	}
	owners, ownerIDs, err := parseLayoutOwners(*tf.Custom)
	if err != nil {
		return nil, refuse(fmt.Errorf("%w: layout target %s: %w", intoto.ErrLayoutInvalid, metadata.LayoutTarget, err))
	}
	layout, err := c.download(up, metadata.LayoutTarget)
	if err != nil {
		return nil, err
	}
	names, err := linkTargetNames(up, measName, m, layout)
	if err != nil {
		return nil, refuse(err)
	}
	links := make(map[string][]byte, len(names))
	for _, name := range names {
		data, err := c.download(up, name)
		if errors.Is(err, errTargetNotFound) {
			// A functionary that did not take part; the verifier tells
			// whether enough did.
			continue
		}
		if err != nil {
			return nil, err
		}
		links[name] = data
	}
	if err := intoto.VerifySupplyChain(layout, owners, links, doc, now); err != nil {
		return nil, refuse(err)
	}
	layoutSum := sha256.Sum256(layout)
	sc.Verified = true
	sc.LayoutSHA256 = hex.EncodeToString(layoutSum[:])
	sc.LayoutOwners = ownerIDs
	if exp, ok := layoutExpiry(layout); ok {
		sc.LayoutExpires = &exp
	}
	for name := range links {
		sc.Links = append(sc.Links, name)
	}
	slices.Sort(sc.Links)
	return sc, nil
}

// parseLayoutOwners reads the layout owner keys from the layout target's
// custom metadata, with their in-toto key IDs.
func parseLayoutOwners(raw []byte) ([]crypto.PublicKey, []string, error) {
	keys, err := metadata.ParseLayoutCustom(raw)
	if err != nil {
		return nil, nil, err
	}
	ids := make([]string, 0, len(keys))
	for i, pub := range keys {
		// The ID shown is computed, never taken from the metadata.
		id, err := intoto.KeyID(pub)
		if err != nil {
			return nil, nil, fmt.Errorf("layout owner key %d: %w", i+1, err)
		}
		ids = append(ids, id)
	}
	return keys, ids, nil
}

// linkTargetNames returns the names of the link targets to fetch for a
// measurements document: those its target lists in its custom metadata
// (metadata.MeasurementsCustom), and those the layout's functionaries
// would have published (in-toto names a link after its step and its
// signer's key ID), so that a link published beside the document later is
// found too. Names that cannot hold a link of this document are dropped.
func linkTargetNames(up *updater.Updater, measName string, m *metadata.Measurements, layout []byte) ([]string, error) {
	var names []string
	keep := func(name string) {
		c, err := metadata.ParseTarget(name)
		if err == nil && c.Kind == metadata.KindLink && c.Image == m.Image && c.Platform == m.Platform && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	ti, err := LookupTarget(up, measName)
	if err != nil {
		return nil, explain(err)
	}
	if ti.Custom != nil {
		if custom, err := metadata.ParseMeasurementsCustom(*ti.Custom); err == nil {
			if len(custom.Links) > metadata.MaxMeasurementsLinks {
				return nil, fmt.Errorf("%w: the target lists %d links, at most %d are accepted", intoto.ErrLinkInvalid, len(custom.Links), metadata.MaxMeasurementsLinks)
			}
			for _, name := range custom.Links {
				keep(name)
			}
		}
	}
	// The layout is TUF-verified here and its signature is checked by the
	// supply chain verification; reading its step names first only serves
	// to find the links.
	var lay struct {
		Signed struct {
			Steps []struct {
				Name    string   `json:"name"`
				PubKeys []string `json:"pubkeys"`
			} `json:"steps"`
		} `json:"signed"`
	}
	if json.Unmarshal(layout, &lay) == nil {
		for _, s := range lay.Signed.Steps {
			for _, id := range s.PubKeys {
				if name, err := metadata.LinkTarget(m.Image, m.Platform, s.Name, id); err == nil {
					keep(name)
				}
			}
		}
	}
	if len(names) > metadata.MaxMeasurementsLinks {
		return nil, fmt.Errorf("%w: %d candidate links, at most %d are accepted", intoto.ErrLinkInvalid, len(names), metadata.MaxMeasurementsLinks)
	}
	slices.Sort(names)
	return names, nil
}

// layoutExpiry reads the expiry time of a layout that has been verified.
func layoutExpiry(layout []byte) (time.Time, bool) {
	var lay struct {
		Signed struct {
			Expires string `json:"expires"`
		} `json:"signed"`
	}
	if json.Unmarshal(layout, &lay) != nil {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, lay.Signed.Expires)
	return t, err == nil
}
