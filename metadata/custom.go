package metadata

import (
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/mtuf/mtuf/internal/pemkey"
)

// Custom target metadata that the repository writes and the client reads.
// TUF signs it with the target, so a client can act on it; what it names is
// still checked where it is used (a link is verified by in-toto, an owner
// key must sign the layout).

// MaxLayoutOwners bounds the owner keys a layout target carries. A repository
// refuses to publish more, and a client refuses a layout target naming more,
// so that signed but hostile metadata cannot make a client parse an unbounded
// list of keys.
const MaxLayoutOwners = 16

// MaxMeasurementsLinks bounds the in-toto links a client fetches for one
// measurements document: those its target lists and those the layout's
// functionaries could have published. A supply chain has one or two links
// per step, and each costs a download and a signature check.
const MaxMeasurementsLinks = 32

// LayoutCustom is the custom metadata of the layout target (LayoutTarget):
// the keys that may sign the layout. A client thus takes the layout owner
// keys from TUF-verified metadata, never from the network unverified.
type LayoutCustom struct {
	Kind TargetKind `json:"kind"`
	// OwnerKeys are the keys of the layout owner: one valid signature by
	// any of them makes the layout trusted.
	OwnerKeys []LayoutOwnerKey `json:"ownerKeys"`
}

// LayoutOwnerKey is one layout owner key in LayoutCustom.
type LayoutOwnerKey struct {
	// KeyID is the in-toto key ID, for display only: a reader computes the
	// ID of the key itself.
	KeyID string `json:"keyid"`
	// PublicKey is the PEM SubjectPublicKeyInfo of the key.
	PublicKey string `json:"publicKey"`
}

// NewLayoutCustom encodes ownerKeys as the custom metadata of the layout
// target, and returns their key IDs as keyID computes them (the in-toto key
// ID; package intoto has it, and this package imports no signing code).
func NewLayoutCustom(ownerKeys []crypto.PublicKey, keyID func(crypto.PublicKey) (string, error)) (json.RawMessage, []string, error) {
	if len(ownerKeys) == 0 {
		return nil, nil, errors.New("no layout owner key given")
	}
	if len(ownerKeys) > MaxLayoutOwners {
		return nil, nil, fmt.Errorf("%d layout owner keys given, at most %d are accepted", len(ownerKeys), MaxLayoutOwners)
	}
	c := LayoutCustom{Kind: KindLayout}
	var ids []string
	for i, pub := range ownerKeys {
		id, err := keyID(pub)
		if err != nil {
			return nil, nil, fmt.Errorf("layout owner key %d: %w", i+1, err)
		}
		if slices.Contains(ids, id) {
			return nil, nil, fmt.Errorf("layout owner key %d (%s) is given twice", i+1, id)
		}
		pemKey, err := pemkey.Encode(pub)
		if err != nil {
			return nil, nil, fmt.Errorf("layout owner key %d: %w", i+1, err)
		}
		ids = append(ids, id)
		c.OwnerKeys = append(c.OwnerKeys, LayoutOwnerKey{KeyID: id, PublicKey: string(pemKey)})
	}
	raw, err := json.Marshal(c)
	if err != nil {
		return nil, nil, fmt.Errorf("encoding layout custom metadata: %w", err)
	}
	return raw, ids, nil
}

// ParseLayoutCustom reads the owner keys from the custom metadata of the
// layout target, at most MaxLayoutOwners of them. Any key x509 reads is
// returned; whether it can sign an in-toto layout is for the verifier to say.
func ParseLayoutCustom(raw []byte) ([]crypto.PublicKey, error) {
	var c LayoutCustom
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("custom metadata: %w", err)
	}
	if len(c.OwnerKeys) == 0 {
		return nil, errors.New("custom metadata names no layout owner key")
	}
	if len(c.OwnerKeys) > MaxLayoutOwners {
		return nil, fmt.Errorf("custom metadata names %d layout owner keys, at most %d are accepted", len(c.OwnerKeys), MaxLayoutOwners)
	}
	out := make([]crypto.PublicKey, 0, len(c.OwnerKeys))
	for i, k := range c.OwnerKeys {
		pub, err := pemkey.Decode([]byte(k.PublicKey))
		if err != nil {
			return nil, fmt.Errorf("layout owner key %d (%s) is not a PEM public key: %w", i+1, k.KeyID, err)
		}
		out = append(out, pub)
	}
	return out, nil
}

// MeasurementsCustom is the custom metadata of a measurements target
// published with in-toto links. The links are targets beside the document
// (LinkTarget), and listing them here lets a client know which to fetch
// without listing the repository.
type MeasurementsCustom struct {
	TargetCustom
	// Links are the target names of the in-toto links that attest the
	// document, sorted.
	Links []string `json:"links,omitempty"`
}

// ParseMeasurementsCustom reads the custom metadata of a measurements
// target. The number of links is not bounded here: a reader that fetches
// them applies MaxMeasurementsLinks.
func ParseMeasurementsCustom(raw []byte) (MeasurementsCustom, error) {
	var c MeasurementsCustom
	if err := json.Unmarshal(raw, &c); err != nil {
		return MeasurementsCustom{}, fmt.Errorf("measurements custom metadata: %w", err)
	}
	return c, nil
}
