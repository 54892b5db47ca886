package metadata

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxDocumentSize bounds the input of every parser in this package. A
// document for one platform is a few kilobytes and a release list of every
// platform some tens; the bound keeps a hostile input from costing more than
// that order of memory and time.
const MaxDocumentSize = 1 << 20

// maxDepth bounds nesting. The deepest legitimate layout (a release list)
// nests five levels.
const maxDepth = 16

type kind int

const (
	kindNull kind = iota
	kindString
	kindNumber
	kindBool
	kindObject
	kindArray
)

func (k kind) String() string {
	return [...]string{"null", "a string", "a number", "a boolean", "an object", "a list"}[k]
}

// value is a parsed JSON or YAML document. Both syntaxes are read into this
// one tree so that a single strict reader checks fields, types and duplicate
// keys, which neither encoding/json (duplicates, last one wins) nor yaml.v3
// (unknown fields inside custom unmarshalers) does by itself.
type value struct {
	kind  kind
	str   string // string text, number text
	b     bool
	keys  []string // object keys in document order
	vals  []*value
	items []*value
	line  int // 1-based line in YAML input, 0 for JSON
}

func (v *value) get(key string) *value {
	if i := slices.Index(v.keys, key); i >= 0 {
		return v.vals[i]
	}
	return nil
}

func (v *value) has(key string) bool { return slices.Contains(v.keys, key) }

// at prefixes err with the YAML line of v, when known.
func (v *value) at(err error) error {
	if err == nil || v == nil || v.line == 0 {
		return err
	}
	return fmt.Errorf("line %d: %w", v.line, err)
}

// parseTree reads a document: JSON if it starts with '{' or '[', YAML
// otherwise. JSON documents are not handed to the YAML parser even though
// YAML is a superset, so that a JSON syntax error is reported as one.
func parseTree(data []byte) (*value, error) {
	if len(data) > MaxDocumentSize {
		return nil, fmt.Errorf("document is %d bytes, at most %d are accepted", len(data), MaxDocumentSize)
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, errors.New("document is empty")
	}
	if trimmed[0] == '{' || trimmed[0] == '[' {
		v, err := parseJSON(trimmed)
		if err != nil {
			return nil, fmt.Errorf("document is not valid JSON: %w", err)
		}
		return v, nil
	}
	v, err := parseYAML(data)
	if err != nil {
		return nil, fmt.Errorf("document is not valid YAML: %w", err)
	}
	return v, nil
}

func parseJSON(data []byte) (*value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := readJSON(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("unexpected data after the document at byte %d", dec.InputOffset())
	}
	return v, nil
}

func readJSON(dec *json.Decoder, depth int) (*value, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("nesting deeper than %d levels", maxDepth)
	}
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, io.ErrUnexpectedEOF
	}
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			v := &value{kind: kindObject}
			seen := make(map[string]bool)
			for dec.More() {
				ktok, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := ktok.(string)
				if !ok {
					return nil, fmt.Errorf("object key at byte %d is not a string", dec.InputOffset())
				}
				if seen[key] {
					return nil, fmt.Errorf("key %q appears twice in one object", truncate(key, 100))
				}
				seen[key] = true
				child, err := readJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.keys = append(v.keys, key)
				v.vals = append(v.vals, child)
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, err
			}
			return v, nil
		case '[':
			v := &value{kind: kindArray}
			for dec.More() {
				child, err := readJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				v.items = append(v.items, child)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, err
			}
			return v, nil
		}
		return nil, fmt.Errorf("unexpected %q at byte %d", t, dec.InputOffset())
	case string:
		return &value{kind: kindString, str: t}, nil
	case json.Number:
		return &value{kind: kindNumber, str: t.String()}, nil
	case bool:
		return &value{kind: kindBool, b: t}, nil
	case nil:
		return &value{kind: kindNull}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

func parseYAML(data []byte) (v *value, err error) {
	// yaml.v3 reports some malformed inputs by panicking; a bad file must be
	// an error like any other.
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("malformed YAML (%v)", r)
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if err == io.EOF {
			return nil, errors.New("document is empty")
		}
		return nil, err
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == io.EOF:
	case err != nil:
		return nil, err
	default:
		return nil, fmt.Errorf("line %d: a second YAML document follows; a file holds one", next.Line)
	}
	return fromYAML(&doc, 0)
}

func fromYAML(n *yaml.Node, depth int) (*value, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("line %d: nesting deeper than %d levels", n.Line, maxDepth)
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, errors.New("document is empty")
		}
		return fromYAML(n.Content[0], depth)
	case yaml.MappingNode:
		v := &value{kind: kindObject, line: n.Line}
		seen := make(map[string]bool)
		for i := 0; i+1 < len(n.Content); i += 2 {
			kn, vn := n.Content[i], n.Content[i+1]
			if kn.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("line %d: a key must be a plain value", kn.Line)
			}
			if kn.ShortTag() == "!!merge" {
				return nil, fmt.Errorf("line %d: merge keys (<<) are not supported; write the fields out", kn.Line)
			}
			if seen[kn.Value] {
				return nil, fmt.Errorf("line %d: key %q appears twice in one mapping", kn.Line, truncate(kn.Value, 100))
			}
			seen[kn.Value] = true
			child, err := fromYAML(vn, depth+1)
			if err != nil {
				return nil, err
			}
			v.keys = append(v.keys, kn.Value)
			v.vals = append(v.vals, child)
		}
		return v, nil
	case yaml.SequenceNode:
		v := &value{kind: kindArray, line: n.Line}
		for _, c := range n.Content {
			child, err := fromYAML(c, depth+1)
			if err != nil {
				return nil, err
			}
			v.items = append(v.items, child)
		}
		return v, nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return &value{kind: kindNull, line: n.Line}, nil
		case "!!bool":
			var b bool
			if err := n.Decode(&b); err != nil {
				return nil, fmt.Errorf("line %d: %w", n.Line, err)
			}
			return &value{kind: kindBool, b: b, line: n.Line}, nil
		default:
			// Numbers stay text: an unquoted all-digit hex digest resolves
			// to an int or float in YAML but is meant as the digest's text.
			return &value{kind: kindString, str: n.Value, line: n.Line}, nil
		}
	case yaml.AliasNode:
		// Expanding aliases lets a small file grow exponentially; no
		// measurements layout needs them.
		return nil, fmt.Errorf("line %d: YAML aliases (*%s) are not supported; write the value out", n.Line, n.Value)
	}
	return nil, fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

// checkKeys reports every key of object v that is not in known, each with
// the line of its value.
func checkKeys(v *value, known ...string) []error {
	var errs []error
	for i, k := range v.keys {
		if err := unknownField(k, known); err != nil {
			errs = append(errs, v.vals[i].at(err))
		}
	}
	return errs
}

// unknownFields is checkKeys without line numbers, for callers that place
// the errors themselves.
func unknownFields(v *value, known ...string) []error {
	var errs []error
	for _, k := range v.keys {
		if err := unknownField(k, known); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// unknownField refuses a key that is not in known, suggesting the right
// spelling for a case mistake such as "warnonly".
func unknownField(k string, known []string) error {
	if slices.Contains(known, k) {
		return nil
	}
	if j := slices.IndexFunc(known, func(s string) bool { return strings.EqualFold(s, k) }); j >= 0 {
		return fmt.Errorf("unknown field %q (did you mean %q?)", truncate(k, 100), known[j])
	}
	return fmt.Errorf("unknown field %q (known fields: %s)", truncate(k, 100), strings.Join(known, ", "))
}

// stringField returns the string field key of object v. A missing or null
// field yields "" and, when required, an error. Errors carry the line of the
// field, or of v when the field is missing.
func stringField(v *value, key string, required bool) (string, error) {
	s, err := stringFieldNoLine(v, key, required)
	if err != nil {
		if f := v.get(key); f != nil {
			return "", f.at(err)
		}
		return "", v.at(err)
	}
	return s, nil
}

// stringFieldNoLine is stringField for callers that place the error themselves.
func stringFieldNoLine(v *value, key string, required bool) (string, error) {
	f := v.get(key)
	if f == nil || f.kind == kindNull {
		if required {
			return "", fmt.Errorf("%s is missing", key)
		}
		return "", nil
	}
	if f.kind != kindString {
		return "", fmt.Errorf("%s must be a string, not %s", key, f.kind)
	}
	return f.str, nil
}

func expectObject(v *value, what string) error {
	if v.kind != kindObject {
		return v.at(fmt.Errorf("%s must be an object (a mapping), not %s", what, v.kind))
	}
	return nil
}
