package client

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm-tools/quote"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// Status is the verdict on one node.
type Status string

const (
	// Trusted: every enforced PCR matches and the attestation is genuine.
	Trusted Status = "trusted"
	// TrustedWithWarnings: as Trusted, but some warn-only PCRs differ.
	TrustedWithWarnings Status = "warn"
	// Refused: the node booted something else, or its attestation is not
	// genuine, fresh or complete.
	Refused Status = "refused"
	// Unreachable: no attestation could be had from the node.
	Unreachable Status = "unreachable"
)

// Policy is what a node must prove. Nothing is trusted unless the policy
// says what trusted means: reference measurements and the keys allowed to
// sign quotes.
type Policy struct {
	Measurements *metadata.Measurements
	// TrustedAKs are the attestation keys whose quotes are believed.
	TrustedAKs []crypto.PublicKey
	// Timeout bounds the whole exchange with one node; 0 means 10s.
	Timeout time.Duration
	// Concurrency bounds how many nodes are asked at once; 0 means 16.
	Concurrency int
	// HTTPClient talks to the agents; nil means a default client.
	HTTPClient *http.Client
}

// NodeResult is the verdict on one node, with every PCR compared.
type NodeResult struct {
	Node   string               `json:"node"`
	Status Status               `json:"status"`
	Reason string               `json:"reason,omitempty"`
	AK     string               `json:"ak,omitempty"`
	PCRs   []metadata.PCRResult `json:"pcrs,omitempty"`
}

// Report is the result of verifying a set of nodes.
type Report struct {
	Image    string       `json:"image"`
	Platform string       `json:"platform"`
	Hash     string       `json:"hash"`
	Nodes    []NodeResult `json:"nodes"`
}

// AllTrusted tells whether every node is trusted (warnings allowed).
func (r *Report) AllTrusted() bool {
	for _, n := range r.Nodes {
		if n.Status != Trusted && n.Status != TrustedWithWarnings {
			return false
		}
	}
	return len(r.Nodes) > 0
}

var bankAlgs = map[string]tpmpb.HashAlgo{
	"sha256": tpmpb.HashAlgo_SHA256,
	"sha384": tpmpb.HashAlgo_SHA384,
}

// Verify asks every node for an attestation over a fresh nonce and checks
// it against the policy. Nodes are asked concurrently; one that is slow
// or down is reported as such without delaying the others beyond its own
// timeout. The error is non-nil only for an unusable policy.
func Verify(ctx context.Context, nodes []string, p Policy) (*Report, error) {
	if p.Measurements == nil {
		return nil, errors.New("no reference measurements: run 'mtuf client update --image V --platform P' first")
	}
	if err := p.Measurements.Validate(); err != nil {
		return nil, fmt.Errorf("reference measurements: %w", err)
	}
	if _, ok := bankAlgs[p.Measurements.Hash]; !ok {
		return nil, fmt.Errorf("reference measurements use bank %q, which cannot be verified", p.Measurements.Hash)
	}
	if len(p.TrustedAKs) == 0 {
		return nil, errors.New("no trusted attestation keys: give --trusted-ak FILE")
	}
	if len(nodes) == 0 {
		return nil, errors.New("no nodes to verify: give --node HOST:PORT")
	}
	if p.Timeout <= 0 {
		p.Timeout = 10 * time.Second
	}
	if p.Concurrency <= 0 {
		p.Concurrency = 16
	}
	if p.HTTPClient == nil {
		p.HTTPClient = &http.Client{}
	}
	rep := &Report{Image: p.Measurements.Image, Platform: p.Measurements.Platform, Hash: p.Measurements.Hash, Nodes: make([]NodeResult, len(nodes))}
	sem := make(chan struct{}, p.Concurrency)
	var wg sync.WaitGroup
	for i, node := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			nctx, cancel := context.WithTimeout(ctx, p.Timeout)
			defer cancel()
			rep.Nodes[i] = verifyNode(nctx, node, &p)
		}()
	}
	wg.Wait()
	return rep, nil
}

func verifyNode(ctx context.Context, node string, p *Policy) NodeResult {
	res := NodeResult{Node: node}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		res.Status, res.Reason = Unreachable, fmt.Sprintf("no randomness for a nonce: %v", err)
		return res
	}
	att, err := agentapi.Fetch(ctx, p.HTTPClient, "http://"+node, nonce)
	if err != nil {
		res.Status, res.Reason = Unreachable, err.Error()
		return res
	}
	refuse := func(format string, args ...any) NodeResult {
		res.Status, res.Reason = Refused, fmt.Sprintf(format, args...)
		return res
	}
	akPub, err := tpm2.DecodePublic(att.GetAkPub())
	if err != nil {
		return refuse("attestation key: %v", err)
	}
	ak, err := akPub.Key()
	if err != nil {
		return refuse("attestation key: %v", err)
	}
	res.AK = fingerprint(ak)
	if !trusted(ak, p.TrustedAKs) {
		return refuse("attestation key %s is not trusted (not among the --trusted-ak keys)", res.AK)
	}
	want := bankAlgs[p.Measurements.Hash]
	var q *tpmpb.Quote
	for _, cand := range att.GetQuotes() {
		if cand.GetPcrs().GetHash() == want {
			q = cand
			break
		}
	}
	if q == nil {
		return refuse("no quote over the %s bank", p.Measurements.Hash)
	}
	// Only the configured bank's quote counts: a node must not be able to
	// pass by offering a different bank that happens to verify.
	if err := quote.Verify(q, ak, nonce); err != nil {
		return refuse("%s quote does not verify: %v", p.Measurements.Hash, err)
	}
	res.PCRs = p.Measurements.Compare(q.GetPcrs().GetPcrs())
	var bad, warn []string
	for _, r := range res.PCRs {
		if r.Match {
			continue
		}
		if r.WarnOnly {
			warn = append(warn, fmt.Sprint(r.Index))
		} else {
			bad = append(bad, fmt.Sprint(r.Index))
		}
	}
	switch {
	case len(bad) > 0:
		return refuse("PCR %s differ from the reference measurements", joinComma(bad))
	case len(warn) > 0:
		res.Status, res.Reason = TrustedWithWarnings, fmt.Sprintf("warn-only PCR %s differ", joinComma(warn))
	default:
		res.Status = Trusted
	}
	return res
}

func trusted(ak crypto.PublicKey, list []crypto.PublicKey) bool {
	for _, k := range list {
		if keys.Equal(ak, k) {
			return true
		}
	}
	return false
}

// fingerprint is a short, stable name for a public key: the first bytes of
// the SHA-256 of its PKIX encoding.
func fingerprint(k crypto.PublicKey) string {
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		return "unknown"
	}
	h := crypto.SHA256.New()
	h.Write(der)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

func joinComma(s []string) string {
	var b bytes.Buffer
	for i, v := range s {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(v)
	}
	return b.String()
}
