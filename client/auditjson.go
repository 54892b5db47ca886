package client

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// The audit reads thousands of metadata files, each twice over in the
// way go-tuf would: encoding/json for the fields, then canonical JSON of
// the signed part for each signature. What follows does both in one
// pass over the file's bytes: it checks the JSON, writes the canonical
// form of "signed" and hands the few fields the audit reads to a
// visitor. It accepts only plain JSON it can interpret exactly as
// encoding/json and cjson do; anything else (duplicate keys, a key that
// differs from a field name only in case, numbers that are not integers,
// invalid UTF-8, unexpected types) is refused, and go-tuf then parses the
// file and has the last word.

// errNotCanonical marks JSON that the one-pass reader leaves to go-tuf.
var errNotCanonical = errors.New("not in the subset of JSON read directly")

// visitor receives the values of the document being canonicalized.
// Every method may refuse what it is given with an error.
type visitor interface {
	// begin is called when the value is an object ('{') or an array
	// ('['), before its members or elements.
	begin(kind byte) error
	// member returns the visitor of an object member's value, nil to
	// ignore it.
	member(key []byte) (visitor, error)
	// element returns the visitor of an array element, nil to ignore it.
	element() (visitor, error)
	// scalar receives a string (decoded: kind '"' if it held no
	// escapes, '\\' if it did), an integer (kind '0') or a literal (kind
	// 't', 'f' or 'n').
	scalar(kind byte, v []byte) error
}

// fields is a visitor of an object with named members, the way
// encoding/json fills a struct: a member whose name matches a field only
// when case is ignored would be taken by encoding/json and is refused.
type fields struct {
	names []string
	visit func(i int) (visitor, error)
}

func (f *fields) member(key []byte) (visitor, error) {
	for i, n := range f.names {
		if string(key) == n {
			return f.visit(i)
		}
	}
	for _, n := range f.names {
		if bytes.EqualFold(key, []byte(n)) {
			return nil, errNotCanonical
		}
	}
	return nil, nil
}
func (f *fields) begin(kind byte) error     { return expect('{', kind) }
func (f *fields) element() (visitor, error) { return nil, errNotCanonical }
func (f *fields) scalar(byte, []byte) error { return errNotCanonical }

func expect(want, kind byte) error {
	if kind != want {
		return errNotCanonical
	}
	return nil
}

// entries is a visitor of an object used as a map: each member's value
// goes to the visitor made for its key.
type entries func(key []byte) (visitor, error)

func (e entries) begin(kind byte) error              { return expect('{', kind) }
func (e entries) member(key []byte) (visitor, error) { return e(key) }
func (e entries) element() (visitor, error)          { return nil, errNotCanonical }
func (e entries) scalar(byte, []byte) error          { return errNotCanonical }

// items is a visitor of an array: each element goes to the visitor it
// makes.
type items func() (visitor, error)

func (it items) begin(kind byte) error          { return expect('[', kind) }
func (it items) member([]byte) (visitor, error) { return nil, errNotCanonical }
func (it items) element() (visitor, error)      { return it() }
func (it items) scalar(byte, []byte) error      { return errNotCanonical }

// scalarFunc is a visitor of a single scalar.
type scalarFunc func(kind byte, v []byte) error

func (s scalarFunc) begin(byte) error               { return errNotCanonical }
func (s scalarFunc) member([]byte) (visitor, error) { return nil, errNotCanonical }
func (s scalarFunc) element() (visitor, error)      { return nil, errNotCanonical }
func (s scalarFunc) scalar(kind byte, v []byte) error {
	return s(kind, v)
}

func stringInto(dst *string) scalarFunc {
	return func(kind byte, v []byte) error {
		if kind != '"' && kind != '\\' {
			return errNotCanonical
		}
		*dst = string(v)
		return nil
	}
}

func intInto(dst *int64) scalarFunc {
	return func(kind byte, v []byte) error {
		if kind != '0' {
			return errNotCanonical
		}
		n, err := parseInt(v)
		*dst = n
		return err
	}
}

// parseInt reads an integer that integerLen accepted.
func parseInt(v []byte) (int64, error) {
	if len(v) > 18 {
		return strconv.ParseInt(string(v), 10, 64)
	}
	neg := len(v) > 0 && v[0] == '-'
	if neg {
		v = v[1:]
	}
	var n int64
	for _, c := range v {
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

// hexInto decodes hex as go-tuf's HexBytes does: from the string's raw
// bytes, so a string with escapes is refused.
func hexInto(dst *tuf.HexBytes) scalarFunc {
	return func(kind byte, v []byte) error {
		if kind != '"' {
			return errNotCanonical
		}
		b := make([]byte, hex.DecodedLen(len(v)))
		if _, err := hex.Decode(b, v); err != nil {
			return errNotCanonical
		}
		*dst = b
		return nil
	}
}

// headerFields are the members every role has, as go-tuf reads them.
var headerFields = []string{"_type", "spec_version", "version", "expires"}

// visitHeader visits one of headerFields into h.
func visitHeader(h *signedHeader, i int) (visitor, error) {
	switch i {
	case 0:
		return stringInto(&h.Type), nil
	case 1:
		return stringInto(&h.SpecVersion), nil
	case 2:
		return intInto(&h.Version), nil
	default:
		// As time.Time reads JSON: RFC 3339, strictly, from the
		// string's raw bytes.
		return scalarFunc(func(kind byte, v []byte) error {
			if kind != '"' || h.Expires.UnmarshalText(v) != nil {
				return errNotCanonical
			}
			return nil
		}), nil
	}
}

// snapshotVisitor reads a snapshot's signed part into s.
func snapshotVisitor(s *lightSnapshot, size int) visitor {
	// An entry of meta takes some 40 bytes: "name.json":{"version":N}
	s.Meta = make([]metaEntry, 0, size/40)
	meta := &metaVisitor{s: s}
	meta.entry = fields{names: []string{"version"}, visit: func(int) (visitor, error) { return &meta.version, nil }}
	return withHeader(&s.signedHeader, "meta", meta)
}

// withHeader visits a signed part: its header into h, its member name
// with body.
func withHeader(h *signedHeader, name string, body visitor) visitor {
	return &fields{names: append(slices.Clip(headerFields), name), visit: func(i int) (visitor, error) {
		if i < len(headerFields) {
			return visitHeader(h, i)
		}
		return body, nil
	}}
}

// metaVisitor visits a snapshot's meta. One serves every entry: entries
// are visited one after the other.
type metaVisitor struct {
	entries
	s       *lightSnapshot
	entry   fields
	version intVisitor
}

func (m *metaVisitor) member(key []byte) (visitor, error) {
	m.s.Meta = append(m.s.Meta, metaEntry{Name: key})
	m.version.dst = &m.s.Meta[len(m.s.Meta)-1].Version
	return &m.entry, nil
}

// intVisitor stores an integer.
type intVisitor struct {
	scalarFunc
	dst *int64
}

func (iv *intVisitor) scalar(kind byte, v []byte) error { return intInto(iv.dst)(kind, v) }

// targetsVisitor reads a targets-type signed part into t.
func targetsVisitor(t *lightTargets) visitor {
	tv := &targetsMapVisitor{t: t}
	tv.entry = fields{names: []string{"hashes"}, visit: func(int) (visitor, error) { return &tv.hashes, nil }}
	tv.hashes.tv = tv
	return withHeader(&t.signedHeader, "targets", tv)
}

// targetsMapVisitor visits the targets of targets-type metadata, one
// after the other.
type targetsMapVisitor struct {
	entries
	t      *lightTargets
	entry  fields
	hashes hashesVisitor
}

func (tv *targetsMapVisitor) member(key []byte) (visitor, error) {
	tv.t.Targets = append(tv.t.Targets, targetEntry{Name: string(key)})
	return &tv.entry, nil
}

// hashesVisitor visits a target's hashes, keeping SHA-256 and checking
// that every other is hex, as go-tuf's parser does.
type hashesVisitor struct {
	entries
	tv     *targetsMapVisitor
	sha256 bool
	value  hashValue
}

func (h *hashesVisitor) member(key []byte) (visitor, error) {
	h.sha256 = string(key) == "sha256"
	h.value.h = h
	return &h.value, nil
}

// hashValue visits one hash of a target.
type hashValue struct {
	scalarFunc
	h *hashesVisitor
}

func (hv *hashValue) scalar(kind byte, v []byte) error {
	h := hv.h
	var b tuf.HexBytes
	if err := hexInto(&b)(kind, v); err != nil {
		return err
	}
	if h.sha256 {
		h.tv.t.Targets[len(h.tv.t.Targets)-1].SHA256 = b
	}
	return nil
}

// envelopeSignatures reads the signatures of a metadata file into env.
func envelopeSignatures(env *envelope) visitor {
	return items(func() (visitor, error) {
		// The element is visited before the next is appended, so the
		// pointer stays valid while it is used.
		env.Signatures = append(env.Signatures, envSignature{})
		s := &env.Signatures[len(env.Signatures)-1]
		return &fields{names: []string{"keyid", "sig"}, visit: func(i int) (visitor, error) {
			if i == 0 {
				return stringInto(&s.KeyID), nil
			}
			return hexInto(&s.Sig), nil
		}}, nil
	})
}

// readEnvelope reads a metadata file in one pass: its signatures, the
// canonical form of its signed part into env.Canonical, and that part's
// fields through signed.
func readEnvelope(data []byte, signed visitor) (*envelope, error) {
	env := &envelope{}
	src := skipSpace(data)
	if len(src) == 0 || src[0] != '{' {
		return nil, errNotCanonical
	}
	var haveSigs, haveSigned bool
	top := &fields{names: []string{"signatures", "signed"}, visit: func(i int) (visitor, error) {
		if i == 0 {
			if haveSigs {
				return nil, errNotCanonical
			}
			haveSigs = true
			return envelopeSignatures(env), nil
		}
		return nil, nil // read below, to keep its canonical form apart
	}}
	src = skipSpace(src[1:])
	if len(src) > 0 && src[0] == '}' {
		return nil, errNotCanonical
	}
	var scratch []byte
	for {
		key, rest, _, err := readString(src)
		if err != nil {
			return nil, err
		}
		rest = skipSpace(rest)
		if len(rest) == 0 || rest[0] != ':' {
			return nil, errNotCanonical
		}
		rest = rest[1:]
		if string(key) == "signed" {
			if haveSigned {
				return nil, errNotCanonical
			}
			haveSigned = true
			if len(skipSpace(rest)) == 0 || skipSpace(rest)[0] != '{' {
				return nil, errors.New("metadata 'signed' field is missing or not an object")
			}
			value := skipSpace(rest)
			buf := canonBuffers.Get().(*[]byte)
			var out []byte
			if out, rest, err = canonValue((*buf)[:0], value, signed); err != nil {
				canonBuffers.Put(buf)
				return nil, err
			}
			// Metadata written canonically is its own canonical
			// form: then the file's bytes are the payload, and the
			// scratch buffer goes back for the next file.
			if value = value[:len(value)-len(rest)]; bytes.Equal(out, value) {
				env.Canonical = value
				*buf = out
				canonBuffers.Put(buf)
			} else {
				env.Canonical = out
			}
		} else {
			v, err := top.member(key)
			if err != nil {
				return nil, err
			}
			if v == nil {
				return nil, errNotCanonical // a member go-tuf keeps aside
			}
			if scratch, rest, err = canonValue(scratch[:0], rest, v); err != nil {
				return nil, err
			}
		}
		rest = skipSpace(rest)
		if len(rest) == 0 {
			return nil, errNotCanonical
		}
		if rest[0] == '}' {
			if len(skipSpace(rest[1:])) != 0 {
				return nil, errNotCanonical
			}
			break
		}
		if rest[0] != ',' {
			return nil, errNotCanonical
		}
		src = skipSpace(rest[1:])
	}
	if !haveSigs || !haveSigned {
		return nil, errNotCanonical
	}
	return env, nil
}

// scratch holds buffers for canonical forms that turn out to be the
// file's own bytes.
var canonBuffers = sync.Pool{New: func() any { return new([]byte) }}

// canonicalJSON returns the OLPC canonical JSON of a valid JSON value,
// byte for byte what go-securesystemslib's cjson.EncodeCanonical makes of
// it: object keys sorted, no whitespace, strings escaping only \ and ".
// It refuses what it would have to interpret (duplicate keys, numbers
// that are not integers, invalid UTF-8), which then goes to go-tuf.
func canonicalJSON(src []byte) ([]byte, error) {
	out, rest, err := canonValue(make([]byte, 0, len(src)), src, nil)
	if err != nil {
		return nil, err
	}
	if len(skipSpace(rest)) != 0 {
		return nil, errNotCanonical
	}
	return out, nil
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// canonValue appends the canonical form of the value at the start of src
// and returns what follows it; v, when not nil, receives the value.
func canonValue(out, src []byte, v visitor) ([]byte, []byte, error) {
	src = skipSpace(src)
	if len(src) == 0 {
		return nil, nil, errNotCanonical
	}
	switch c := src[0]; {
	case c == '{':
		return canonObject(out, src[1:], v)
	case c == '[':
		return canonArray(out, src[1:], v)
	case c == '"':
		s, rest, escaped, err := readString(src)
		if err != nil {
			return nil, nil, err
		}
		if v != nil {
			kind := byte('"')
			if escaped {
				kind = '\\'
			}
			if err := v.scalar(kind, s); err != nil {
				return nil, nil, err
			}
		}
		return appendString(out, s), rest, nil
	case c == '-' || c >= '0' && c <= '9':
		n := integerLen(src)
		if n == 0 {
			return nil, nil, errNotCanonical
		}
		if v != nil {
			if err := v.scalar('0', src[:n]); err != nil {
				return nil, nil, err
			}
		}
		return append(out, src[:n]...), src[n:], nil
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(src, []byte(lit)) {
				if v != nil {
					if err := v.scalar(lit[0], nil); err != nil {
						return nil, nil, err
					}
				}
				return append(out, lit...), src[len(lit):], nil
			}
		}
		return nil, nil, errNotCanonical
	}
}

// integerLen is the length of the JSON integer at the start of src that
// fits an int64 (what cjson accepts), or 0. A fraction or exponent is
// refused, as cjson refuses it.
func integerLen(src []byte) int {
	n := 0
	if n < len(src) && src[n] == '-' {
		n++
	}
	start := n
	for n < len(src) && src[n] >= '0' && src[n] <= '9' {
		n++
	}
	switch {
	case n == start, src[start] == '0' && n > start+1:
		return 0
	case n < len(src) && (src[n] == '.' || src[n] == 'e' || src[n] == 'E'):
		return 0
	}
	if n-start > 18 {
		if _, err := strconv.ParseInt(string(src[:n]), 10, 64); err != nil {
			return 0
		}
	}
	return n
}

func canonArray(out, src []byte, v visitor) ([]byte, []byte, error) {
	if v != nil {
		if err := v.begin('['); err != nil {
			return nil, nil, err
		}
	}
	src = skipSpace(src)
	out = append(out, '[')
	if len(src) > 0 && src[0] == ']' {
		return append(out, ']'), src[1:], nil
	}
	for {
		var ev visitor
		if v != nil {
			var err error
			if ev, err = v.element(); err != nil {
				return nil, nil, err
			}
		}
		var err error
		if out, src, err = canonValue(out, src, ev); err != nil {
			return nil, nil, err
		}
		src = skipSpace(src)
		if len(src) == 0 {
			return nil, nil, errNotCanonical
		}
		if src[0] == ']' {
			return append(out, ']'), src[1:], nil
		}
		if src[0] != ',' {
			return nil, nil, errNotCanonical
		}
		out = append(out, ',')
		src = src[1:]
	}
}

// canonObject canonicalizes an object whose '{' was consumed. Members
// are written as they come, which is canonical when their keys are in
// order, as they are in metadata written canonically; an object whose
// keys are not is read again, keeping where each member's output lies,
// and reordered.
func canonObject(out, src []byte, v visitor) ([]byte, []byte, error) {
	if v != nil {
		if err := v.begin('{'); err != nil {
			return nil, nil, err
		}
	}
	start := len(out)
	res, rest, visited, err := canonMembers(out, src, v, nil, 0)
	if err != errUnsorted {
		return res, rest, err
	}
	var members []member
	if res, rest, _, err = canonMembers(out[:start], src, v, &members, visited); err != nil {
		return nil, nil, err
	}
	slices.SortFunc(members, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	begin := start + 1
	reordered := make([]byte, 0, len(res)-begin)
	for i, m := range members {
		if i > 0 {
			if bytes.Equal(m.key, members[i-1].key) {
				return nil, nil, errNotCanonical
			}
			reordered = append(reordered, ',')
		}
		reordered = append(reordered, res[m.start:m.end]...)
	}
	res = append(res[:begin], reordered...)
	return append(res, '}'), rest, nil
}

// member is where an object member's canonical form lies in the output.
type member struct {
	key        []byte
	start, end int
}

// errUnsorted stops the first reading of an object whose keys are out
// of order.
var errUnsorted = errors.New("object keys out of order")

// canonMembers writes an object's members and says how many it gave v.
// Without members, it stops at a key out of order with errUnsorted; with
// members, it records every member and leaves the closing brace and the
// ordering to the caller, giving v only the members from the skip-th on
// (the first reading gave it the others).
func canonMembers(out, src []byte, v visitor, members *[]member, skip int) ([]byte, []byte, int, error) {
	out = append(out, '{')
	src = skipSpace(src)
	if len(src) > 0 && src[0] == '}' {
		if members != nil {
			return out, src[1:], 0, nil
		}
		return append(out, '}'), src[1:], 0, nil
	}
	var prev []byte
	for n := 0; ; n++ {
		src = skipSpace(src)
		if len(src) == 0 || src[0] != '"' {
			return nil, nil, 0, errNotCanonical
		}
		key, rest, _, err := readString(src)
		if err != nil {
			return nil, nil, 0, err
		}
		rest = skipSpace(rest)
		if len(rest) == 0 || rest[0] != ':' {
			return nil, nil, 0, errNotCanonical
		}
		if n > 0 {
			if members == nil {
				switch bytes.Compare(prev, key) {
				case 0:
					return nil, nil, 0, errNotCanonical
				case 1:
					return nil, nil, n, errUnsorted
				}
			}
			out = append(out, ',')
		}
		prev = key
		var mv visitor
		if v != nil && n >= skip {
			if mv, err = v.member(key); err != nil {
				return nil, nil, 0, err
			}
		}
		m := member{key: key, start: len(out)}
		out = appendString(out, key)
		out = append(out, ':')
		if out, rest, err = canonValue(out, rest[1:], mv); err != nil {
			return nil, nil, 0, err
		}
		if members != nil {
			m.end = len(out)
			*members = append(*members, m)
		}
		rest = skipSpace(rest)
		if len(rest) == 0 {
			return nil, nil, 0, errNotCanonical
		}
		src = rest[1:]
		if rest[0] == '}' {
			break
		}
		if rest[0] != ',' {
			return nil, nil, 0, errNotCanonical
		}
	}
	if members != nil {
		return out, src, 0, nil
	}
	return append(out, '}'), src, 0, nil
}

// plain marks the bytes a JSON string holds as they are: not a quote, a
// backslash, a control character or a byte of a multi-byte rune.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// readString decodes the JSON string at the start of src, and says
// whether it held escapes.
func readString(src []byte) ([]byte, []byte, bool, error) {
	if len(src) == 0 || src[0] != '"' {
		return nil, nil, false, errNotCanonical
	}
	i := 1
	for i < len(src) && plain[src[i]] {
		i++
	}
	if i < len(src) && src[i] == '"' {
		return src[1:i], src[i+1:], false, nil
	}
	// Escapes or multi-byte runes: the slow way.
	escaped := false
	for ; i < len(src); i++ {
		switch c := src[i]; {
		case c == '\\':
			escaped = true
			i++
		case c == '"':
			raw := src[:i+1]
			if !utf8.Valid(raw) {
				return nil, nil, false, errNotCanonical
			}
			if !escaped {
				return raw[1:i], src[i+1:], false, nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, nil, false, errNotCanonical
			}
			return []byte(s), src[i+1:], true, nil
		case c < 0x20:
			return nil, nil, false, errNotCanonical
		}
	}
	return nil, nil, false, errNotCanonical
}

// appendString writes s as cjson does: only \ and " escaped.
func appendString(out, s []byte) []byte {
	out = append(out, '"')
	if bytes.IndexByte(s, '\\') < 0 && bytes.IndexByte(s, '"') < 0 {
		out = append(out, s...)
		return append(out, '"')
	}
	for _, c := range s {
		if c == '\\' || c == '"' {
			out = append(out, '\\')
		}
		out = append(out, c)
	}
	return append(out, '"')
}
