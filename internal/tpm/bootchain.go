package tpm

import (
	"bytes"
	"crypto"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/google/go-eventlog/tcg"
	"go.yaml.in/yaml/v3"
)

// Limits on a boot chain description. A real firmware log holds a few hundred
// events of a few kilobytes at most; the limits only keep a wrong file (an
// image, a log) from being read whole or extended into the TPM for minutes.
const (
	MaxBootChainBytes = 1 << 20
	MaxBootEvents     = 1024
	MaxEventDataBytes = 64 << 10
)

// separatorData is what the PC Client Platform Firmware Profile requires an
// EV_SEPARATOR event to hold on a successful boot (00000000h).
var separatorData = []byte{0, 0, 0, 0}

// BootChain describes a boot: the measurements a platform makes, in order.
// Each event is measured as H(Data) into PCR of every allocated bank.
type BootChain struct {
	// Name says which image and version booted, for people.
	Name   string
	Events []BootEvent
}

// BootEvent is one measurement of a boot chain.
type BootEvent struct {
	PCR  uint32
	Type tcg.EventType
	// Description says what was measured (firmware, shim, kernel...), for
	// people; it is not part of the measurement.
	Description string
	// Data is the event data written to the event log; its digest in each
	// bank is what the PCR is extended with.
	Data []byte
}

// LoadBootChain reads a boot chain description, YAML or JSON:
//
//	name: mtuf-image v1.0.0
//	events:
//	  - {pcr: 0, type: EV_S_CRTM_VERSION, description: firmware, data: "OVMF 2024.02-2"}
//	  - {pcr: 0, type: EV_SEPARATOR, description: end of pre-OS for PCR 0}
//
// type is a TCG PC Client event type name. data is text, required for every
// event but EV_SEPARATOR, whose data is fixed by the PC Client specification.
// Unknown fields are errors, and every error names the event and field.
func LoadBootChain(path string) (*BootChain, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("boot chain: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxBootChainBytes+1))
	if err != nil {
		return nil, fmt.Errorf("boot chain %s: %w", path, err)
	}
	if len(data) > MaxBootChainBytes {
		return nil, fmt.Errorf("boot chain %s: larger than %d bytes: is this a boot chain description?", path, MaxBootChainBytes)
	}
	c, err := ParseBootChain(data)
	if err != nil {
		return nil, fmt.Errorf("boot chain %s: %w", path, err)
	}
	return c, nil
}

// ParseBootChain parses a boot chain description (see LoadBootChain).
func ParseBootChain(data []byte) (*BootChain, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty file: want a mapping with name and events")
		}
		return nil, fmt.Errorf("not YAML or JSON: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document: want exactly one")
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: want a mapping with name and events", root.Line)
	}
	fields, err := mappingFields(root, "name", "events")
	if err != nil {
		return nil, err
	}
	c := &BootChain{}
	nameNode, ok := fields["name"]
	if !ok {
		return nil, errors.New("missing field name: say which image and version this boot is, as in name: mtuf-image v1.0.0")
	}
	if c.Name, err = scalarString(nameNode); err != nil || strings.TrimSpace(c.Name) == "" {
		return nil, fmt.Errorf("line %d: field name: want a non-empty string", nameNode.Line)
	}
	evNode, ok := fields["events"]
	if !ok {
		return nil, errors.New("missing field events: list the measurements of the boot")
	}
	if evNode.Kind != yaml.SequenceNode {
		return nil, fmt.Errorf("line %d: field events: want a list of events", evNode.Line)
	}
	for i, n := range evNode.Content {
		ev, err := parseEvent(n)
		if err != nil {
			return nil, fmt.Errorf("events[%d] (line %d): %w", i, n.Line, err)
		}
		c.Events = append(c.Events, ev)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// mappingFields returns the values of a mapping node by key, refusing keys
// outside allowed and keys given twice.
func mappingFields(n *yaml.Node, allowed ...string) (map[string]*yaml.Node, error) {
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, errors.New("want a field name")
		}
		known := false
		for _, a := range allowed {
			known = known || a == k.Value
		}
		if !known {
			return nil, fmt.Errorf("unknown field %q: the fields are %s", k.Value, strings.Join(allowed, ", "))
		}
		if _, dup := out[k.Value]; dup {
			return nil, fmt.Errorf("field %q given twice", k.Value)
		}
		out[k.Value] = v
	}
	return out, nil
}

func scalarString(n *yaml.Node) (string, error) {
	if n.Kind != yaml.ScalarNode || n.ShortTag() == "!!null" {
		return "", errors.New("not a string")
	}
	return n.Value, nil
}

func parseEvent(n *yaml.Node) (BootEvent, error) {
	var ev BootEvent
	if n.Kind != yaml.MappingNode {
		return ev, errors.New("want a mapping with pcr, type, description and data")
	}
	f, err := mappingFields(n, "pcr", "type", "description", "data")
	if err != nil {
		return ev, err
	}

	pcrNode, ok := f["pcr"]
	if !ok {
		return ev, errors.New("missing field pcr")
	}
	var pcr int64
	if pcrNode.Kind != yaml.ScalarNode || pcrNode.ShortTag() != "!!int" || pcrNode.Decode(&pcr) != nil {
		return ev, fmt.Errorf("field pcr: %q is not an integer PCR index", pcrNode.Value)
	}
	if pcr < 0 || pcr >= NumPCRs {
		return ev, fmt.Errorf("field pcr: %d is not a PCR index (0 to %d)", pcr, NumPCRs-1)
	}
	ev.PCR = uint32(pcr)

	typeNode, ok := f["type"]
	if !ok {
		return ev, errors.New("missing field type: give a TCG event type such as EV_IPL")
	}
	typeName, err := scalarString(typeNode)
	if err != nil {
		return ev, errors.New("field type: want a TCG event type name such as EV_IPL")
	}
	if ev.Type, err = ParseEventType(typeName); err != nil {
		return ev, fmt.Errorf("field type: %w", err)
	}

	descNode, ok := f["description"]
	if !ok {
		return ev, errors.New("missing field description: say what is measured (shim, kernel, ...)")
	}
	if ev.Description, err = scalarString(descNode); err != nil {
		return ev, errors.New("field description: want a string")
	}

	if dataNode, ok := f["data"]; ok {
		s, err := scalarString(dataNode)
		if err != nil {
			return ev, errors.New("field data: want a string")
		}
		ev.Data = []byte(s)
		if ev.Type == tcg.Separator {
			return ev, errors.New("field data: an EV_SEPARATOR event takes no data: the PC Client specification fixes it to 00000000h")
		}
	} else if ev.Type == tcg.Separator {
		ev.Data = bytes.Clone(separatorData)
	}
	return ev, ev.validate()
}

// eventTypes maps the TCG names of the event types a boot chain may hold to
// their values. EV_NO_ACTION extends nothing and EV_EFI_HCRTM_EVENT changes
// how a PCR starts, so neither describes a measurement.
var eventTypes = func() map[string]tcg.EventType {
	m := make(map[string]tcg.EventType)
	for t := range tcg.EventTypeNames {
		name := t.TCGString()
		if !strings.HasPrefix(name, "EV_") || t == tcg.NoAction || t == tcg.EFIHCRTMEvent || t == tcg.GoogleDRTMEvent {
			continue
		}
		m[name] = t
	}
	return m
}()

// ParseEventType returns the event type with the given TCG name (EV_IPL...).
func ParseEventType(name string) (tcg.EventType, error) {
	if t, ok := eventTypes[name]; ok {
		return t, nil
	}
	return 0, fmt.Errorf("unknown event type %q: use a TCG PC Client event type such as EV_IPL, EV_EFI_ACTION or EV_SEPARATOR", name)
}

// EventTypeNames lists the event type names a boot chain may use, sorted.
func EventTypeNames() []string {
	names := make([]string, 0, len(eventTypes))
	for n := range eventTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks that the chain can be measured and replayed: PCRs that a
// verifier can replay from zero, known event types, data within limits.
func (c *BootChain) Validate() error {
	if c == nil || len(c.Events) == 0 {
		return errors.New("no events: a boot chain measures at least one event")
	}
	if len(c.Events) > MaxBootEvents {
		return fmt.Errorf("%d events: at most %d are allowed", len(c.Events), MaxBootEvents)
	}
	for i, ev := range c.Events {
		if err := ev.validate(); err != nil {
			return fmt.Errorf("events[%d] (%s): %w", i, ev.Description, err)
		}
	}
	return nil
}

func (ev BootEvent) validate() error {
	switch {
	case ev.PCR >= NumPCRs:
		return fmt.Errorf("field pcr: %d is not a PCR index (0 to %d)", ev.PCR, NumPCRs-1)
	case ev.PCR >= 17 && ev.PCR <= 22:
		// After TPM2_Startup these dynamic-launch PCRs hold all ones, and a
		// log replay starts from zero: they cannot be replayed.
		return fmt.Errorf("field pcr: PCR %d belongs to the dynamic root of trust and cannot be replayed from a boot log: use 0 to 16 or 23", ev.PCR)
	}
	if _, known := tcg.EventTypeNames[ev.Type]; !known || ev.Type == tcg.NoAction || ev.Type == tcg.EFIHCRTMEvent || ev.Type == tcg.GoogleDRTMEvent {
		return fmt.Errorf("field type: event type %s cannot be measured in a boot chain", ev.Type.TCGString())
	}
	if strings.TrimSpace(ev.Description) == "" {
		return errors.New("field description: say what is measured (shim, kernel, ...)")
	}
	if ev.Type == tcg.Separator && !bytes.Equal(ev.Data, separatorData) {
		return errors.New("field data: an EV_SEPARATOR event holds 00000000h")
	}
	if len(ev.Data) == 0 {
		return errors.New("missing field data: give the measured data as text")
	}
	if len(ev.Data) > MaxEventDataBytes {
		return fmt.Errorf("field data: %d bytes, at most %d are allowed", len(ev.Data), MaxEventDataBytes)
	}
	return nil
}

// ExpectedPCRs computes, without a TPM, the values the chain leaves in the PCRs
// of one bank of a freshly started TPM: only the PCRs the chain extends.
func (c *BootChain) ExpectedPCRs(bank crypto.Hash) (map[uint32][]byte, error) {
	if !bank.Available() {
		return nil, fmt.Errorf("hash %v is not available", bank)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	out := make(map[uint32][]byte)
	for _, ev := range c.Events {
		cur, ok := out[ev.PCR]
		if !ok {
			cur = make([]byte, bank.Size())
		}
		h := bank.New()
		h.Write(ev.Data)
		d := h.Sum(nil)
		h.Reset()
		h.Write(cur)
		h.Write(d)
		out[ev.PCR] = h.Sum(nil)
	}
	return out, nil
}
