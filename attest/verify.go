package attest

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
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	attestpb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm-tools/quote"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/mtuf/mtuf/internal/agentapi"
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

// Check names the check a node failed, so that a program reading a report
// can tell an unreachable node from a forged quote or a different boot
// without parsing the reason.
type Check string

const (
	// CheckFetch: no answer from the agent (network error, timeout, an
	// error status).
	CheckFetch Check = "fetch"
	// CheckResponse: the agent answered with something that is not an
	// attestation (wrong content type, oversized, undecodable).
	CheckResponse Check = "response"
	// CheckAK: the attestation key is neither pinned nor certified by a
	// trusted CA, or its certificate is invalid.
	CheckAK Check = "ak"
	// CheckQuote: no quote of the policy's bank, or one whose signature or
	// PCR digest does not verify.
	CheckQuote Check = "quote"
	// CheckNonce: a genuine quote over another nonce: a replayed
	// attestation.
	CheckNonce Check = "nonce"
	// CheckEventLog: the event log is malformed or does not replay against
	// the quoted PCRs.
	CheckEventLog Check = "eventlog"
	// CheckPCRs: an enforced PCR differs from the reference measurements.
	CheckPCRs Check = "pcrs"
)

// Defaults for Options.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultConcurrency = 16
)

// nonceSize is the size of the fresh nonce sent to each node: 256 bits, well
// above agentapi.MinNonce.
const nonceSize = 32

// maxIntermediates bounds the certificates a node may send between its AK
// certificate and a trusted root: chains are one or two deep in practice,
// and each one costs a signature check.
const maxIntermediates = 8

// Policy is what a node must prove to be trusted. Nothing is trusted unless
// the policy says what trusted means: the reference measurements, and how
// attestation keys are trusted (pinned, or certified by a CA).
type Policy struct {
	// Measurements are the reference values. Their Hash selects the one
	// PCR bank whose quote is verified: a node cannot pass by offering
	// another bank.
	Measurements *metadata.Measurements
	// Alternatives are the measurements of further images of the same
	// bank, trusted alongside Measurements: a node that matches any of
	// them is trusted, as a cluster in the middle of a rolling upgrade
	// runs two image versions. NodeResult.Image names the one a node
	// matched. ReferenceEventLog is of Measurements alone.
	Alternatives []*metadata.Measurements
	// ClusterID, when set, also enforces PCR 15 to hold the cluster ID's
	// value, metadata.ClusterIDPCR(bank, ClusterID): the node was bound to
	// this cluster.
	ClusterID string
	// TrustedAKs are pinned attestation keys.
	TrustedAKs []crypto.PublicKey
	// AKRoots are CA certificates: a node whose AK certificate chains to
	// one of them (through intermediates the node sends) is trusted, as
	// cloud providers certify their vTPMs' keys.
	AKRoots []*x509.Certificate
	// ReferenceEventLog is an optional TCG event log of a node that booted
	// the reference image. The reference measurements hold only the final
	// value of each PCR; with a reference log, a node whose PCR differs is
	// told which boot event differs. It is checked against Measurements
	// first: it must replay to their values.
	ReferenceEventLog []byte
}

// Options say how nodes are asked, not what they must prove.
type Options struct {
	// Timeout bounds the whole exchange with one node, counted from when
	// its turn comes; 0 means DefaultTimeout.
	Timeout time.Duration
	// Concurrency bounds how many nodes are asked at once; 0 means
	// DefaultConcurrency.
	Concurrency int
	// HTTPClient talks to the agents; nil means a client without a
	// timeout of its own (Timeout applies).
	HTTPClient *http.Client
	// Now is the time at which AK certificates must be valid; nil means
	// time.Now.
	Now func() time.Time
}

// NodeResult is the verdict on one node, with every PCR compared.
type NodeResult struct {
	Node   string `json:"node"`
	Status Status `json:"status"`
	// Failed names the check that refused the node or found it
	// unreachable; empty for a trusted node.
	Failed Check `json:"failed,omitempty"`
	// Reason explains the status in a sentence.
	Reason string `json:"reason,omitempty"`
	// AK is the fingerprint of the node's attestation key.
	AK string `json:"ak,omitempty"`
	// AKTrust says why the key was trusted: pinned, or the CA that
	// certified it.
	AKTrust string `json:"akTrust,omitempty"`
	// Image is the image whose measurements PCRs compares the node's
	// with: for a trusted node, the one it matched.
	Image string `json:"image,omitempty"`
	// PCRs are the reference PCRs compared with the quoted ones.
	PCRs []metadata.PCRResult `json:"pcrs,omitempty"`
	// EventLog is the outcome of replaying the node's event log; nil when
	// the node sent none or it was not reached.
	EventLog *EventLogResult `json:"eventLog,omitempty"`
}

// String is the result in one line, naming the node.
func (r NodeResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s: %s", r.Node, r.Status)
	if r.Failed != "" {
		fmt.Fprintf(&b, " (%s)", r.Failed)
	}
	if r.Reason != "" {
		fmt.Fprintf(&b, ": %s", r.Reason)
	}
	return b.String()
}

// Report is the result of verifying a set of nodes.
type Report struct {
	Image     string `json:"image"`
	Platform  string `json:"platform"`
	Hash      string `json:"hash"`
	ClusterID string `json:"clusterID,omitempty"`
	// Alternatives are the further images of Policy.Alternatives.
	Alternatives []string     `json:"alternatives,omitempty"`
	Nodes        []NodeResult `json:"nodes"`
}

// AllTrusted tells whether every node is trusted (warnings allowed).
func (r *Report) AllTrusted() bool {
	return len(r.Nodes) > 0 && r.Count(Trusted)+r.Count(TrustedWithWarnings) == len(r.Nodes)
}

// Count returns how many nodes have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, nr := range r.Nodes {
		if nr.Status == s {
			n++
		}
	}
	return n
}

var bankAlgs = map[string]tpmpb.HashAlgo{
	metadata.HashSHA256: tpmpb.HashAlgo_SHA256,
	metadata.HashSHA384: tpmpb.HashAlgo_SHA384,
}

// Verifier checks nodes against one policy. The policy is checked and
// prepared once, so that each attestation costs only its own checks. A
// Verifier is safe for concurrent use.
type Verifier struct {
	m         *metadata.Measurements   // with the cluster ID bound
	alts      []*metadata.Measurements // likewise
	clusterID string
	bank      tpmpb.HashAlgo
	hash      crypto.Hash
	pinned    [][]byte // PKIX encodings, compared with the AK's
	roots     *x509.CertPool
	// reference holds, per PCR, the events that a node of the reference
	// image measures, when they are known: from the reference event log,
	// and the cluster ID's event for PCR 15.
	reference map[uint32][]BootEvent
	opts      Options
}

// NewVerifier checks the policy and returns a Verifier for it. An error
// means the policy cannot be used as given: no measurements, no way to
// trust an attestation key, a reference log that contradicts the
// measurements.
func NewVerifier(p Policy, o Options) (*Verifier, error) {
	if p.Measurements == nil {
		return nil, errors.New("no reference measurements: run 'mtuf client update --image V --platform P' first")
	}
	if err := p.Measurements.Validate(); err != nil {
		return nil, fmt.Errorf("reference measurements: %w", err)
	}
	bank, ok := bankAlgs[p.Measurements.Hash]
	if !ok {
		return nil, fmt.Errorf("reference measurements use bank %q, which cannot be verified", p.Measurements.Hash)
	}
	hash, err := metadata.HashAlgorithm(p.Measurements.Hash)
	if err != nil {
		return nil, fmt.Errorf("reference measurements: %w", err)
	}
	if len(p.TrustedAKs) == 0 && len(p.AKRoots) == 0 {
		return nil, errors.New("no way to trust attestation keys: pin keys (--trusted-ak FILE) or trust a CA that certifies them (--ak-ca CA.pem)")
	}
	v := &Verifier{m: p.Measurements, clusterID: p.ClusterID, bank: bank, hash: hash, opts: o}
	for i, k := range p.TrustedAKs {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return nil, fmt.Errorf("trusted attestation key %d: %w", i+1, err)
		}
		v.pinned = append(v.pinned, der)
	}
	if len(p.AKRoots) > 0 {
		v.roots = x509.NewCertPool()
		for i, c := range p.AKRoots {
			if err := checkAKRoot(c, v.now()); err != nil {
				return nil, fmt.Errorf("AK CA certificate %d: %w", i+1, err)
			}
			v.roots.AddCert(c)
		}
	}
	if p.ClusterID != "" {
		if v.m, err = p.Measurements.BindClusterID(p.ClusterID); err != nil {
			return nil, err
		}
	}
	for _, alt := range p.Alternatives {
		if alt == nil {
			return nil, errors.New("alternative reference measurements are nil")
		}
		if err := alt.Validate(); err != nil {
			return nil, fmt.Errorf("reference measurements of image %s: %w", alt.Image, err)
		}
		// One quote, of one bank, is compared with every image.
		if alt.Hash != p.Measurements.Hash {
			return nil, fmt.Errorf("reference measurements of image %s use bank %s, those of image %s bank %s: images trusted together must use one bank", alt.Image, alt.Hash, p.Measurements.Image, p.Measurements.Hash)
		}
		if p.ClusterID != "" {
			if alt, err = alt.BindClusterID(p.ClusterID); err != nil {
				return nil, err
			}
		}
		v.alts = append(v.alts, alt)
	}
	if v.reference, err = referenceEvents(p.ReferenceEventLog, p.Measurements, hash); err != nil {
		return nil, err
	}
	if p.ClusterID != "" {
		digest, err := metadata.ClusterIDDigest(p.Measurements.Hash, p.ClusterID)
		if err != nil {
			return nil, err
		}
		v.reference[metadata.ClusterIDPCRIndex] = []BootEvent{{
			PCR: metadata.ClusterIDPCRIndex, Type: "cluster ID", Digest: hex.EncodeToString(digest), Data: printable([]byte(p.ClusterID)),
		}}
	}
	if v.opts.Timeout <= 0 {
		v.opts.Timeout = DefaultTimeout
	}
	if v.opts.Concurrency <= 0 {
		v.opts.Concurrency = DefaultConcurrency
	}
	if v.opts.HTTPClient == nil {
		v.opts.HTTPClient = &http.Client{}
	}
	return v, nil
}

func (v *Verifier) now() time.Time {
	if v.opts.Now != nil {
		return v.opts.Now()
	}
	return time.Now()
}

// Verify asks every node for an attestation over a fresh nonce and checks it
// against the policy. It is NewVerifier followed by Verifier.Verify.
func Verify(ctx context.Context, nodes []string, p Policy, o Options) (*Report, error) {
	v, err := NewVerifier(p, o)
	if err != nil {
		return nil, err
	}
	return v.Verify(ctx, nodes)
}

// Verify asks every node (HOST:PORT of its mtuf-agent, or an http:// URL)
// for an attestation over a fresh nonce and checks it. Nodes are asked
// concurrently, at most Options.Concurrency at once, each within its own
// Options.Timeout, so a slow or dead node delays no other beyond that. The
// report lists the nodes in the order given. The error is non-nil only when
// there is no node to verify.
func (v *Verifier) Verify(ctx context.Context, nodes []string) (*Report, error) {
	if len(nodes) == 0 {
		return nil, errors.New("no nodes to verify: give --node HOST:PORT or --nodes-file FILE")
	}
	rep := &Report{
		Image: v.m.Image, Platform: v.m.Platform, Hash: v.m.Hash, ClusterID: v.clusterID,
		Nodes: make([]NodeResult, len(nodes)),
	}
	for _, alt := range v.alts {
		rep.Alternatives = append(rep.Alternatives, alt.Image)
	}
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(v.opts.Concurrency, len(nodes)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				rep.Nodes[i] = v.VerifyNode(ctx, nodes[i])
			}
		}()
	}
	for i := range nodes {
		work <- i
	}
	close(work)
	wg.Wait()
	return rep, nil
}

// VerifyNode asks one node for an attestation over a fresh nonce, within
// Options.Timeout, and checks it.
func (v *Verifier) VerifyNode(ctx context.Context, node string) NodeResult {
	nonce := make([]byte, nonceSize)
	if _, err := rand.Read(nonce); err != nil {
		return NodeResult{Node: node, Status: Unreachable, Failed: CheckFetch, Reason: fmt.Sprintf("no randomness for a nonce: %v", err)}
	}
	nctx, cancel := context.WithTimeout(ctx, v.opts.Timeout)
	defer cancel()
	base := node
	if !strings.Contains(node, "://") {
		base = "http://" + node
	}
	att, err := agentapi.Fetch(nctx, v.opts.HTTPClient, base, nonce)
	if err != nil {
		return v.fetchFailure(ctx, nctx, node, base, err)
	}
	return v.VerifyAttestation(node, att, nonce)
}

// fetchFailure turns an error of agentapi.Fetch into a result: an answer
// that is not an attestation is held against the node; no answer makes it
// unreachable.
func (v *Verifier) fetchFailure(ctx, nctx context.Context, node, base string, err error) NodeResult {
	res := NodeResult{Node: node, Status: Unreachable, Failed: CheckFetch}
	msg := strings.TrimPrefix(err.Error(), "agent "+base+": ")
	var se *agentapi.StatusError
	var ue *url.Error
	switch {
	case errors.Is(err, agentapi.ErrBadResponse):
		res.Status, res.Failed = Refused, CheckResponse
		res.Reason = "malformed response: " + msg
	case ctx.Err() != nil:
		res.Reason = fmt.Sprintf("verification cancelled before the node answered (%v)", context.Cause(ctx))
	case errors.Is(nctx.Err(), context.DeadlineExceeded):
		res.Reason = fmt.Sprintf("no answer within %v (timeout)", v.opts.Timeout)
	case errors.As(err, &se):
		res.Reason = fmt.Sprintf("the agent answered %s: %s", se.Status, se.Message)
	case errors.As(err, &ue):
		res.Reason = ue.Err.Error()
	default:
		res.Reason = msg
	}
	return res
}

// VerifyAttestation checks an attestation that node gave for nonce, without
// asking the node anything: for integrators that carry attestations
// themselves, and for replaying recorded ones. The nonce must be one the
// verifier chose, fresh, for this node.
func (v *Verifier) VerifyAttestation(node string, att *attestpb.Attestation, nonce []byte) (result NodeResult) {
	// The attestation is hostile input for the parsers of go-tpm and
	// go-eventlog: a bug of theirs must cost this node, not the report on
	// the whole cluster.
	defer func() {
		if p := recover(); p != nil {
			result = NodeResult{Node: node, Status: Refused, Failed: CheckResponse, Reason: fmt.Sprintf("the attestation could not be parsed: %v", p)}
		}
	}()
	res := NodeResult{Node: node}
	refuse := func(c Check, format string, args ...any) NodeResult {
		res.Status, res.Failed, res.Reason = Refused, c, fmt.Sprintf(format, args...)
		return res
	}
	if att == nil {
		return refuse(CheckResponse, "no attestation")
	}

	ak, trust, fp, err := v.trustAK(att)
	res.AK = fp
	if err != nil {
		return refuse(CheckAK, "%v", err)
	}
	res.AKTrust = trust

	pcrs, failed, err := v.verifyQuote(att, ak, nonce)
	if err != nil {
		return refuse(failed, "%v", err)
	}

	var log *replayedLog
	if raw := att.GetEventLog(); len(raw) > 0 {
		log, res.EventLog, err = v.replayEventLog(raw, pcrs)
		if err != nil {
			return refuse(CheckEventLog, "%v", err)
		}
	}

	res.Image, res.PCRs = v.m.Image, v.m.Compare(pcrs)
	bad, warn := mismatches(res.PCRs)
	for _, alt := range v.alts {
		if len(bad) == 0 {
			break
		}
		altPCRs := alt.Compare(pcrs)
		if altBad, altWarn := mismatches(altPCRs); len(altBad) == 0 {
			res.Image, res.PCRs, bad, warn = alt.Image, altPCRs, nil, altWarn
		}
	}
	if len(bad) > 0 {
		if log != nil {
			res.EventLog.Differences = v.explain(log, res.PCRs, bad)
		}
		return refuse(CheckPCRs, "%s", v.pcrsDifferReason(bad, res.EventLog))
	}
	if len(warn) > 0 {
		res.Status, res.Reason = TrustedWithWarnings, "warn-only "+differ(warn)
		return res
	}
	res.Status = Trusted
	return res
}

// verifyQuote returns the PCR values of the quote over the policy's bank,
// and only that bank's, once it is shown signed by the attestation key over
// this nonce; when it is not, the check that refuses the node.
func (v *Verifier) verifyQuote(att *attestpb.Attestation, ak crypto.PublicKey, nonce []byte) (map[uint32][]byte, Check, error) {
	var q *tpmpb.Quote
	for _, cand := range att.GetQuotes() {
		if cand.GetPcrs().GetHash() == v.bank {
			q = cand
			break
		}
	}
	if q == nil {
		return nil, CheckQuote, fmt.Errorf("no quote over the %s bank", v.m.Hash)
	}
	if err := quote.Verify(q, ak, nonce); err != nil {
		if overOtherNonce(q, ak, nonce) {
			return nil, CheckNonce, fmt.Errorf("the %s quote is genuine but over another nonce than this request's: a replayed attestation", v.m.Hash)
		}
		return nil, CheckQuote, fmt.Errorf("%s quote does not verify: %w", v.m.Hash, err)
	}
	pcrs := q.GetPcrs().GetPcrs()
	// The quote signs the digest of the PCR values laid end to end: only
	// with every value of the bank's length does that fix each PCR's own
	// value, rather than bytes shifted from one PCR to the next.
	for _, idx := range sortedIndices(pcrs) {
		if len(pcrs[idx]) != v.hash.Size() {
			return nil, CheckQuote, fmt.Errorf("%s quote gives PCR %d a value of %d bytes, where the bank's digests have %d: the quoted values were tampered with", v.m.Hash, idx, len(pcrs[idx]), v.hash.Size())
		}
	}
	return pcrs, "", nil
}

// replayEventLog replays the node's event log against the quoted PCRs: only
// a log that replays to them may explain them. The result comes with a
// refusal too, so that the report names the PCRs the log fails to explain.
func (v *Verifier) replayEventLog(raw []byte, pcrs map[uint32][]byte) (*replayedLog, *EventLogResult, error) {
	log, notReplayed, err := replay(raw, v.hash, pcrs)
	switch {
	case err != nil:
		return nil, nil, fmt.Errorf("event log is malformed: %w", err)
	case len(notReplayed) > 0:
		return nil, &EventLogResult{Replayed: false, NotReplayed: notReplayed},
			fmt.Errorf("event log does not replay against the quoted %s PCRs: PCR %s (the log was altered, or is not the log of this boot)", v.m.Hash, joinIndices(notReplayed))
	}
	// A PCR that the log has no event for replays to its reset value; if
	// the quote says otherwise, the log does not explain it. Only the PCRs
	// the reference measurements hold need explaining: others are not
	// compared, and some are explained by other logs than the firmware's
	// (PCR 10 by the kernel's IMA log).
	referenced := make(map[uint32][]byte, len(v.m.PCRs))
	for idx := range v.m.PCRs {
		if d, ok := pcrs[idx]; ok {
			referenced[idx] = d
		}
	}
	if unexplained := log.unexplained(referenced); len(unexplained) > 0 {
		return nil, &EventLogResult{Replayed: false, NotReplayed: unexplained},
			fmt.Errorf("event log has no event for PCR %s, whose quoted %s value is not a reset value: the log leaves it unexplained (events were dropped, or it is not the log of this boot)", joinIndices(unexplained), v.m.Hash)
	}
	return log, &EventLogResult{Replayed: true, Events: len(log.events)}, nil
}

// mismatches splits the reference PCRs that differ from the quoted ones
// into those that refuse the node and those that only warn.
func mismatches(results []metadata.PCRResult) (bad, warn []uint32) {
	for _, r := range results {
		switch {
		case r.Match:
		case r.WarnOnly:
			warn = append(warn, r.Index)
		default:
			bad = append(bad, r.Index)
		}
	}
	return bad, warn
}

// pcrsDifferReason says why a node whose PCRs bad differ is refused,
// pointing an operator at the likely cause: a cluster ID the node is not
// bound to, or the first boot event that departs from the reference.
func (v *Verifier) pcrsDifferReason(bad []uint32, eventLog *EventLogResult) string {
	reason := differ(bad) + " from the reference measurements"
	if len(v.alts) > 0 {
		// The node matched none of the images; the PCRs named are those
		// of the first.
		reason = fmt.Sprintf("%s from the reference measurements of image %s, and the node matches no other trusted image", differ(bad), v.m.Image)
	}
	if v.clusterID != "" && contains(bad, metadata.ClusterIDPCRIndex) {
		reason += fmt.Sprintf(" (PCR %d is not bound to cluster ID %q)", metadata.ClusterIDPCRIndex, v.clusterID)
	}
	if eventLog != nil {
		for _, d := range eventLog.Differences {
			if d.Node != nil || d.Reference != nil {
				reason += "; first differing boot event: " + d.summary()
				break
			}
		}
	}
	return reason
}

// overOtherNonce tells whether a quote that failed verification is a
// genuine quote over another nonce: it verifies with the nonce it carries.
// That is a replay, as opposed to a forged or damaged quote.
func overOtherNonce(q *tpmpb.Quote, ak crypto.PublicKey, nonce []byte) bool {
	ad, err := tpm2.DecodeAttestationData(q.GetQuote())
	if err != nil || bytes.Equal(ad.ExtraData, nonce) {
		return false
	}
	return quote.Verify(q, ak, ad.ExtraData) == nil
}

func sortedIndices(m map[uint32][]byte) []uint32 {
	out := make([]uint32, 0, len(m))
	for idx := range m {
		out = append(out, idx)
	}
	slices.Sort(out)
	return out
}

func contains(s []uint32, x uint32) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

// differ says that the PCRs s differ: "PCR 4 differs", "PCRs 4, 7 differ".
func differ(s []uint32) string {
	if len(s) == 1 {
		return "PCR " + joinIndices(s) + " differs"
	}
	return "PCRs " + joinIndices(s) + " differ"
}

func joinIndices(s []uint32) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = fmt.Sprint(v)
	}
	return strings.Join(parts, ", ")
}
