package client

import (
	"bytes"
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// The audit checks thousands of metadata files. go-tuf parses each with
// several passes of encoding/json and re-encodes it to canonical JSON for
// every key it checks; most of an audit went there. What follows checks a
// file as served instead: its canonical form is computed once from its
// own bytes, and its signatures are checked against it with verifiers
// loaded once per key. A file this path does not accept (odd JSON, a
// signature that does not verify) is checked again by go-tuf, whose
// verdict and message the audit reports; so the fast path can only
// accept what the TUF specification accepts: a threshold of the role's
// keys signed the canonical JSON of exactly this "signed" object.

// envelope is a metadata file with its signed part kept as bytes.
type envelope struct {
	Signatures []struct {
		KeyID string       `json:"keyid"`
		Sig   tuf.HexBytes `json:"sig"`
	} `json:"signatures"`
	Signed json.RawMessage `json:"signed"`
}

// signedHeader holds the fields every role has, which go-tuf would
// refuse to parse if they were of the wrong type.
type signedHeader struct {
	Type        string    `json:"_type"`
	SpecVersion string    `json:"spec_version"`
	Version     int64     `json:"version"`
	Expires     time.Time `json:"expires"`
}

// lightSnapshot is the part of a snapshot the audit reads.
type lightSnapshot struct {
	signedHeader
	Meta map[string]struct {
		Version int64 `json:"version"`
	} `json:"meta"`
}

// lightTargets is the part of targets-type metadata the audit reads of
// the files that delegate nothing (bins).
type lightTargets struct {
	signedHeader
	Targets map[string]struct {
		Hashes map[string]tuf.HexBytes `json:"hashes"`
	} `json:"targets"`
	Delegations json.RawMessage `json:"delegations"`
}

// parseEnvelope reads a file's envelope and its signed part into v,
// checking what go-tuf's parser checks: the type, and one signature per
// key.
func parseEnvelope(data []byte, wantType string, v interface{ header() *signedHeader }) (*envelope, error) {
	var env envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, err
	}
	if len(env.Signed) == 0 || env.Signed[0] != '{' {
		return nil, errors.New("metadata 'signed' field is missing or not an object")
	}
	if err := json.Unmarshal(env.Signed, v); err != nil {
		return nil, err
	}
	if t := v.header().Type; t != wantType {
		return nil, fmt.Errorf("expected metadata type %s, got - %s", wantType, t)
	}
	seen := make(map[string]bool, len(env.Signatures))
	for _, s := range env.Signatures {
		if seen[s.KeyID] {
			return nil, fmt.Errorf("multiple signatures found for key ID %s", s.KeyID)
		}
		seen[s.KeyID] = true
	}
	return &env, nil
}

func (h *signedHeader) header() *signedHeader { return h }

// keyVerifier is a loaded public key: the verifier go-tuf would build
// for it and the fingerprint it counts signers by.
type keyVerifier struct {
	v           signature.Verifier
	fingerprint [32]byte
	err         error
}

// verifiers caches loaded keys; the delegating metadata they come from
// is parsed once per audit, so a key pointer names one key.
type verifiers struct {
	mu sync.Mutex
	m  map[*tuf.Key]*keyVerifier
}

func (vs *verifiers) get(key *tuf.Key) *keyVerifier {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if kv, ok := vs.m[key]; ok {
		return kv
	}
	kv := loadVerifier(key)
	if vs.m == nil {
		vs.m = map[*tuf.Key]*keyVerifier{}
	}
	vs.m[key] = kv
	return kv
}

// loadVerifier builds a verifier for key as go-tuf's VerifyDelegate does.
func loadVerifier(key *tuf.Key) *keyVerifier {
	pub, err := key.ToPublicKey()
	if err != nil {
		return &keyVerifier{err: err}
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return &keyVerifier{err: err}
	}
	kv := &keyVerifier{fingerprint: sha256.Sum256(der)}
	hash := crypto.Hash(0)
	if key.Type != tuf.KeyTypeEd25519 {
		switch key.Scheme {
		case tuf.KeySchemeECDSA_SHA2_P384:
			hash = crypto.SHA384
		default:
			hash = crypto.SHA256
		}
	}
	if key.Type == tuf.KeyTypeRSASSA_PSS_SHA256 {
		rsaPub, ok := pub.(*rsa.PublicKey)
		if !ok {
			kv.err = errors.New("failed to convert public key to RSA PSS key")
			return kv
		}
		kv.v, kv.err = signature.LoadRSAPSSVerifier(rsaPub, hash, &rsa.PSSOptions{Hash: crypto.SHA256})
	} else {
		kv.v, kv.err = signature.LoadVerifier(pub, hash)
	}
	return kv
}

// signedByThreshold tells whether env carries valid signatures by at
// least threshold of keyIDs (distinct keys), keys being the delegator's
// keys. It says false, not why: the caller then asks go-tuf.
func (vs *verifiers) signedByThreshold(env *envelope, keys map[string]*tuf.Key, keyIDs []string, threshold int) bool {
	if len(keyIDs) == 0 || threshold < 1 {
		return false
	}
	payload, err := canonicalJSON(env.Signed)
	if err != nil {
		return false
	}
	signers := map[[32]byte]bool{}
	for _, id := range keyIDs {
		key, ok := keys[id]
		if !ok {
			return false
		}
		kv := vs.get(key)
		if kv.err != nil {
			return false
		}
		var sig []byte
		for _, s := range env.Signatures {
			if s.KeyID == id {
				sig = s.Sig
			}
		}
		if sig != nil && kv.v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(payload)) == nil {
			signers[kv.fingerprint] = true
		}
	}
	return len(signers) >= threshold
}

// errNotCanonical marks JSON that canonicalJSON leaves to go-tuf.
var errNotCanonical = errors.New("not in the subset of JSON canonicalized directly")

// canonicalJSON returns the OLPC canonical JSON of a valid JSON value,
// byte for byte what go-securesystemslib's cjson.EncodeCanonical makes of
// it: object keys sorted, no whitespace, strings escaping only \ and ".
// It refuses what it would have to interpret (duplicate keys, numbers
// that are not integers, invalid UTF-8), which then goes to go-tuf.
func canonicalJSON(src []byte) ([]byte, error) {
	out := make([]byte, 0, len(src))
	out, rest, err := canonValue(out, src)
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
// and returns what follows it.
func canonValue(out, src []byte) ([]byte, []byte, error) {
	src = skipSpace(src)
	if len(src) == 0 {
		return nil, nil, errNotCanonical
	}
	switch c := src[0]; {
	case c == '{':
		return canonObject(out, src[1:])
	case c == '[':
		src = skipSpace(src[1:])
		out = append(out, '[')
		if len(src) > 0 && src[0] == ']' {
			return append(out, ']'), src[1:], nil
		}
		for {
			var err error
			if out, src, err = canonValue(out, src); err != nil {
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
	case c == '"':
		s, rest, err := readString(src)
		if err != nil {
			return nil, nil, err
		}
		return appendString(out, s), rest, nil
	case c == '-' || c >= '0' && c <= '9':
		n := 1
		for n < len(src) && (src[n] >= '0' && src[n] <= '9' || src[n] == '.' || src[n] == 'e' || src[n] == 'E' || src[n] == '+' || src[n] == '-') {
			n++
		}
		if _, err := strconv.ParseInt(string(src[:n]), 10, 64); err != nil {
			return nil, nil, errNotCanonical
		}
		return append(out, src[:n]...), src[n:], nil
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(src, []byte(lit)) {
				return append(out, lit...), src[len(lit):], nil
			}
		}
		return nil, nil, errNotCanonical
	}
}

// canonObject canonicalizes an object whose '{' was consumed. Members
// are written as they come; an object whose keys were not in order is
// then reordered in place.
func canonObject(out, src []byte) ([]byte, []byte, error) {
	type member struct {
		key        []byte
		start, end int
	}
	var small [8]member
	members := small[:0]
	out = append(out, '{')
	begin := len(out)
	src = skipSpace(src)
	if len(src) > 0 && src[0] == '}' {
		return append(out, '}'), src[1:], nil
	}
	sorted := true
	for {
		src = skipSpace(src)
		if len(src) == 0 || src[0] != '"' {
			return nil, nil, errNotCanonical
		}
		key, rest, err := readString(src)
		if err != nil {
			return nil, nil, err
		}
		rest = skipSpace(rest)
		if len(rest) == 0 || rest[0] != ':' {
			return nil, nil, errNotCanonical
		}
		if n := len(members); n > 0 {
			switch bytes.Compare(members[n-1].key, key) {
			case 0:
				return nil, nil, errNotCanonical
			case 1:
				sorted = false
			}
			out = append(out, ',')
		}
		m := member{key: key, start: len(out)}
		out = appendString(out, key)
		out = append(out, ':')
		if out, rest, err = canonValue(out, rest[1:]); err != nil {
			return nil, nil, err
		}
		m.end = len(out)
		members = append(members, m)
		rest = skipSpace(rest)
		if len(rest) == 0 {
			return nil, nil, errNotCanonical
		}
		src = rest[1:]
		if rest[0] == '}' {
			break
		}
		if rest[0] != ',' {
			return nil, nil, errNotCanonical
		}
	}
	if !sorted {
		slices.SortFunc(members, func(a, b member) int { return bytes.Compare(a.key, b.key) })
		reordered := make([]byte, 0, len(out)-begin)
		for i, m := range members {
			if i > 0 {
				if bytes.Equal(m.key, members[i-1].key) {
					return nil, nil, errNotCanonical
				}
				reordered = append(reordered, ',')
			}
			reordered = append(reordered, out[m.start:m.end]...)
		}
		out = append(out[:begin], reordered...)
	}
	return append(out, '}'), src, nil
}

// readString decodes the JSON string at the start of src.
func readString(src []byte) ([]byte, []byte, error) {
	escaped := false
	for i := 1; i < len(src); i++ {
		switch c := src[i]; {
		case c == '\\':
			escaped = true
			i++
		case c == '"':
			raw := src[:i+1]
			if !utf8.Valid(raw) {
				return nil, nil, errNotCanonical
			}
			if !escaped {
				return raw[1:i], src[i+1:], nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return nil, nil, errNotCanonical
			}
			return []byte(s), src[i+1:], nil
		case c < 0x20:
			return nil, nil, errNotCanonical
		}
	}
	return nil, nil, errNotCanonical
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
