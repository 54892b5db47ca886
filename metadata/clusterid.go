package metadata

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
)

// ClusterIDPCRIndex is the PCR that a node extends with its cluster ID once
// it is initialized. Its value differs per cluster, so published documents
// never pin it; the verifier computes it from the cluster ID it expects.
const ClusterIDPCRIndex = 15

// ClusterIDDigest returns H(id) for the bank's hash H: the value a node
// extends PCR 15 of that bank with. The ID is taken as the exact bytes of the
// string; no encoding is decoded, so both sides must pass the same text.
func ClusterIDDigest(bank, clusterID string) ([]byte, error) {
	if clusterID == "" {
		return nil, errors.New("cluster ID is empty")
	}
	d, err := newHash(bank)
	if err != nil {
		return nil, fmt.Errorf("cluster ID digest: %w", err)
	}
	d.Write([]byte(clusterID))
	return d.Sum(nil), nil
}

// ClusterIDPCR returns the value PCR 15 holds after a single extend with the
// cluster ID from its reset value of zeros: H(0^n || H(id)), with n the
// bank's digest size (SHA256(0^32 || SHA256(id)) for sha256).
func ClusterIDPCR(bank, clusterID string) ([]byte, error) {
	digest, err := ClusterIDDigest(bank, clusterID)
	if err != nil {
		return nil, err
	}
	d, err := newHash(bank)
	if err != nil {
		return nil, err
	}
	d.Write(make([]byte, d.Size()))
	d.Write(digest)
	return d.Sum(nil), nil
}

// newHash returns a hash of the bank. It names the implementations directly
// rather than going through crypto.Hash.New, which panics when a program has
// not linked the implementation in.
func newHash(bank string) (hash.Hash, error) {
	switch bank {
	case HashSHA256:
		return sha256.New(), nil
	case HashSHA384:
		return sha512.New384(), nil
	default:
		_, err := DigestSize(bank)
		return nil, err
	}
}

// BindClusterID returns a copy of the document that also enforces PCR 15 to
// hold the value of clusterID. A document that already pins PCR 15 is
// refused: the published value and the cluster's would contradict each other.
func (m *Measurements) BindClusterID(clusterID string) (*Measurements, error) {
	want, err := ClusterIDPCR(m.Hash, clusterID)
	if err != nil {
		return nil, fmt.Errorf("binding cluster ID to measurements of %s/%s: %w", m.Image, m.Platform, err)
	}
	if old, ok := m.PCRs[ClusterIDPCRIndex]; ok && !bytes.Equal(old.Expected, want) {
		return nil, fmt.Errorf("binding cluster ID to measurements of %s/%s: %w", m.Image, m.Platform,
			&PCRError{Index: ClusterIDPCRIndex, Err: errors.New("the document already pins this PCR to another value; published documents must leave the cluster ID PCR out")})
	}
	c := m.Clone()
	if c.PCRs == nil {
		c.PCRs = make(map[uint32]PCR, 1)
	}
	c.PCRs[ClusterIDPCRIndex] = PCR{Expected: want}
	return c, nil
}
