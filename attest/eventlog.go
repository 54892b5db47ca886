package attest

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/go-eventlog/register"
	"github.com/google/go-eventlog/tcg"

	"github.com/mtuf/mtuf/metadata"
)

// EventLogResult is the outcome of replaying a node's TCG event log against
// its quoted PCRs.
type EventLogResult struct {
	// Replayed is set when every quoted PCR equals the replay of the log's
	// events for it, so that the events explain the PCRs.
	Replayed bool `json:"replayed"`
	// Events is the number of replayed events.
	Events int `json:"events"`
	// NotReplayed are the PCRs whose events do not replay to the quoted
	// value.
	NotReplayed []uint32 `json:"notReplayed,omitempty"`
	// Differences explain, for each enforced PCR that differs from the
	// reference measurements, which boot event makes it differ, where that
	// can be told.
	Differences []EventDifference `json:"differences,omitempty"`
}

// BootEvent is one measurement of a boot, as an event log records it.
type BootEvent struct {
	// Seq is the event's number in the log (0 for events known only from
	// the policy, such as the cluster ID).
	Seq  uint32 `json:"seq"`
	PCR  uint32 `json:"pcr"`
	Type string `json:"type"`
	// Digest is the event's digest in the policy's bank, in hex: what the
	// PCR was extended with.
	Digest string `json:"digest"`
	// Data is the event data when it is printable text (kernel command
	// lines, file names, version strings), cut to a readable length, and
	// hashes to Digest: then it is what the node measured. Event data that
	// does not hash to the digest is never shown here: the replay vouches
	// for the digest only.
	Data string `json:"data,omitempty"`
	// DataUnverified is set when the event's type defines its digest as
	// the hash of its data (TCG PC Client Platform Firmware Profile:
	// EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION, ...) and the data does not
	// hash to it: the log tells something else than what was measured.
	DataUnverified bool `json:"dataUnverified,omitempty"`
	// Description is printable event data of a type whose data only
	// describes what was measured (a boot loader's "grub_cmd: ..."), when
	// it does not hash to the digest: the node's word, unverified.
	Description string `json:"description,omitempty"`
}

func (e *BootEvent) String() string {
	if e.Data != "" {
		return fmt.Sprintf("%s %q", e.Type, e.Data)
	}
	d := e.Digest
	if len(d) > 16 {
		d = d[:16] + "..."
	}
	if e.DataUnverified {
		return fmt.Sprintf("%s with digest %s (its event data does not hash to the digest, as its type requires: unverified)", e.Type, d)
	}
	if e.Description != "" {
		return fmt.Sprintf("%s with digest %s (described, unverified, as %q)", e.Type, d, e.Description)
	}
	return fmt.Sprintf("%s with digest %s", e.Type, d)
}

// EventDifference names the first boot event of a PCR where a node departs
// from the reference.
type EventDifference struct {
	PCR uint32 `json:"pcr"`
	// Position is the place of the event among the PCR's events, from 1;
	// 0 when no event could be named.
	Position int `json:"position"`
	// Node is the node's event at Position; nil when the node has fewer
	// events.
	Node *BootEvent `json:"node,omitempty"`
	// Reference is the reference's event at Position; nil when it has
	// fewer events, or only the PCR's final value is known.
	Reference   *BootEvent `json:"reference,omitempty"`
	Explanation string     `json:"explanation"`
}

// summary is the difference in a clause for a reason line.
func (d EventDifference) summary() string {
	switch {
	case d.Node != nil && d.Reference != nil:
		return fmt.Sprintf("PCR %d event %d is %s where the reference has %s", d.PCR, d.Position, d.Node, d.Reference)
	case d.Node != nil:
		return fmt.Sprintf("PCR %d event %d, %s, is not in the reference", d.PCR, d.Position, d.Node)
	case d.Reference != nil:
		return fmt.Sprintf("PCR %d lacks the reference's event %d, %s", d.PCR, d.Position, d.Reference)
	}
	return d.Explanation
}

// maxEventData is how much event data a report shows.
const maxEventData = 80

// printable returns data as text when it is printable ASCII (as boot loader
// and OS measurements usually are), cut to maxEventData; otherwise "".
func printable(data []byte) string {
	d := bytes.TrimRight(data, "\x00")
	if len(d) == 0 {
		return ""
	}
	for _, c := range d {
		if c < 0x20 || c > 0x7e {
			return ""
		}
	}
	if len(d) > maxEventData {
		return string(d[:maxEventData]) + "..."
	}
	return string(d)
}

// dataDigestTypes are the event types whose digest the TCG PC Client
// Platform Firmware Profile (section 10.4.1, "Event Types") defines as the
// hash of the event data itself. Other types measure something the log
// only describes (an image, a table, a variable's value), so their data
// cannot be checked against the digest. EV_IPL and EV_COMPACT_HASH are left
// out: boot loaders log a description of what they hash (GRUB's
// "grub_cmd: ..."), which the profile allows.
var dataDigestTypes = map[tcg.EventType]bool{
	tcg.Separator:               true, // 00000000h or FFFFFFFFh
	tcg.Action:                  true, // an ASCII string
	tcg.EFIAction:               true, // an ASCII string
	tcg.SCRTMVersion:            true, // the version string
	tcg.OmitBootDeviceEvents:    true, // "BOOT ATTEMPTS OMITTED"
	tcg.EFIVariableDriverConfig: true, // the UEFI_VARIABLE_DATA
	tcg.EFIVariableAuthority:    true, // the UEFI_VARIABLE_DATA
	tcg.EFIGPTEvent:             true, // the UEFI_GPT_DATA
}

// dataHashes tells whether data hashes to digest with hash. A NUL that
// ends the data may be left out of the hash, as firmware and shim differ on
// that (go-eventlog accepts both for the same reason).
func dataHashes(hash crypto.Hash, data, digest []byte) bool {
	sum := func(b []byte) []byte {
		h := hash.New()
		h.Write(b)
		return h.Sum(nil)
	}
	if bytes.Equal(sum(data), digest) {
		return true
	}
	return len(data) > 0 && data[len(data)-1] == 0 && bytes.Equal(sum(data[:len(data)-1]), digest)
}

func bootEvent(e tcg.Event, hash crypto.Hash) BootEvent {
	b := BootEvent{
		Seq:    e.Num(),
		PCR:    e.MRIndex(),
		Type:   e.Type.TCGString(),
		Digest: hex.EncodeToString(e.Digest),
	}
	switch {
	case dataHashes(hash, e.Data, e.Digest):
		b.Data = printable(e.Data)
	case dataDigestTypes[e.Type]:
		b.DataUnverified = true
	default:
		b.Description = printable(e.Data)
	}
	return b
}

// replayedLog is an event log whose events replay to the quoted PCRs.
type replayedLog struct {
	events []tcg.Event
	byPCR  map[uint32][]BootEvent
}

// replay parses a TCG event log and replays it against the quoted PCRs of
// one bank with go-eventlog. A log that cannot be parsed is an error; a log
// that parses but does not replay returns the PCRs that do not.
func replay(raw []byte, hash crypto.Hash, pcrs map[uint32][]byte) (*replayedLog, []uint32, error) {
	el, err := tcg.ParseEventLog(raw, tcg.ParseOpts{})
	if err != nil {
		return nil, nil, err
	}
	mrs := make([]register.MR, 0, len(pcrs))
	for idx, d := range pcrs {
		mrs = append(mrs, register.PCR{Index: int(idx), Digest: d, DigestAlg: hash})
	}
	events, err := el.Verify(mrs)
	if err != nil {
		var re tcg.ReplayError
		if errors.As(err, &re) {
			bad := make([]uint32, 0, len(re.InvalidMRs))
			for _, i := range re.InvalidMRs {
				bad = append(bad, uint32(i))
			}
			slices.Sort(bad)
			return nil, bad, nil
		}
		return nil, nil, err
	}
	log := &replayedLog{events: events, byPCR: make(map[uint32][]BootEvent)}
	for _, e := range events {
		log.byPCR[e.MRIndex()] = append(log.byPCR[e.MRIndex()], bootEvent(e, hash))
	}
	return log, nil, nil
}

// unexplained returns the quoted PCRs that hold something else than a
// reset value yet have no event in the log. go-eventlog replays only the
// PCRs the log has events for, so a log that drops every event of a PCR
// would otherwise pass as explaining it.
func (l *replayedLog) unexplained(pcrs map[uint32][]byte) []uint32 {
	var out []uint32
	for idx, d := range pcrs {
		if len(l.byPCR[idx]) == 0 && !isReset(d) {
			out = append(out, idx)
		}
	}
	slices.Sort(out)
	return out
}

// isReset tells whether a PCR value is one a PCR holds before any extend:
// all zeros, or all ones for the D-RTM PCRs 17 to 22 (TCG PC Client
// Platform TPM Profile).
func isReset(d []byte) bool {
	return isZero(d) || (len(d) > 0 && bytes.Count(d, []byte{0xff}) == len(d))
}

// referenceEvents replays a reference event log against the reference
// measurements and returns its events by PCR. A reference log that does
// not replay to the measurements is refused: it would explain differences
// against another boot than the one TUF vouches for. PCRs the log has no
// event for are left out, so that only their final value is used.
func referenceEvents(raw []byte, m *metadata.Measurements, hash crypto.Hash) (map[uint32][]BootEvent, error) {
	out := make(map[uint32][]BootEvent)
	if len(raw) == 0 {
		return out, nil
	}
	pcrs := make(map[uint32][]byte, len(m.PCRs))
	for idx, p := range m.PCRs {
		pcrs[idx] = p.Expected
	}
	log, bad, err := replay(raw, hash, pcrs)
	switch {
	case err != nil:
		return nil, fmt.Errorf("reference event log is not a TCG event log: %w", err)
	case len(bad) > 0:
		return nil, fmt.Errorf("reference event log does not replay to the reference measurements of %s on %s: %s; it is the log of another boot than the one the measurements describe",
			m.Image, m.Platform, differ(bad))
	}
	for idx, evs := range log.byPCR {
		out[idx] = evs
	}
	return out, nil
}

// explain names, for each enforced PCR that differs, the first of the
// node's events that departs from the reference.
func (v *Verifier) explain(log *replayedLog, results []metadata.PCRResult, bad []uint32) []EventDifference {
	var out []EventDifference
	for _, r := range results {
		if !contains(bad, r.Index) {
			continue
		}
		out = append(out, v.explainPCR(r.Index, log.byPCR[r.Index], r.Expected, r.Actual))
	}
	return out
}

func (v *Verifier) explainPCR(idx uint32, node []BootEvent, expected, actual []byte) EventDifference {
	d := EventDifference{PCR: idx}
	if actual == nil {
		d.Explanation = fmt.Sprintf("the node's quote does not cover PCR %d", idx)
		return d
	}
	if len(node) == 0 && !isZero(actual) {
		d.Explanation = fmt.Sprintf("the node's event log has no event for PCR %d, so its value cannot be explained", idx)
		return d
	}
	if ref, ok := v.reference[idx]; ok {
		i := 0
		for i < len(node) && i < len(ref) && node[i].Digest == ref[i].Digest {
			i++
		}
		d.Position = i + 1
		if i < len(node) {
			d.Node = &node[i]
		}
		if i < len(ref) {
			d.Reference = &ref[i]
		}
		switch {
		case d.Node != nil && d.Reference != nil:
			d.Explanation = fmt.Sprintf("the node measured %s where the reference measured %s", d.Node, d.Reference)
		case d.Node != nil:
			d.Explanation = fmt.Sprintf("the node measured %s, which the reference does not", d.Node)
		case d.Reference != nil:
			d.Explanation = fmt.Sprintf("the node did not measure the reference's %s", d.Reference)
		default:
			d.Position = 0
			d.Explanation = fmt.Sprintf("the node measured the reference's events into PCR %d, from another starting value", idx)
		}
		return d
	}
	// Only the final value is known: if the node's PCR passed through it,
	// the node measured more than the reference, from the next event on.
	h := v.hash.New()
	cur := make([]byte, v.hash.Size())
	if bytes.Equal(cur, expected) && len(node) > 0 {
		d.Position, d.Node = 1, &node[0]
		d.Explanation = fmt.Sprintf("the reference leaves PCR %d unextended; the node measured %s into it", idx, d.Node)
		return d
	}
	for i := range node {
		digest, err := hex.DecodeString(node[i].Digest)
		if err != nil {
			break
		}
		h.Reset()
		h.Write(cur)
		h.Write(digest)
		cur = h.Sum(cur[:0:0])
		if bytes.Equal(cur, expected) && i+1 < len(node) {
			d.Position, d.Node = i+2, &node[i+1]
			d.Explanation = fmt.Sprintf("the node's PCR %d reaches the reference value after %d events, then the node measured %s", idx, i+1, d.Node)
			return d
		}
	}
	d.Explanation = fmt.Sprintf("the reference measurements hold only the final value of PCR %d, so the differing event cannot be told; give a reference event log (--reference-log) to name it", idx)
	return d
}

func isZero(b []byte) bool {
	return len(b) > 0 && strings.Trim(string(b), "\x00") == ""
}
