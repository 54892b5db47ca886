package client

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// The audit checks thousands of metadata files. go-tuf parses each with
// several passes of encoding/json and re-encodes it to canonical JSON for
// every key it checks; most of an audit went there. What follows checks a
// file as served instead: its canonical form is computed once from its
// own bytes (auditjson.go), and its signatures are checked against it
// with verifiers loaded once per key. A file this path does not accept
// (odd JSON, a signature that does not verify) is checked again by
// go-tuf, whose verdict and message the audit reports; so the fast path
// can only accept what the TUF specification accepts: a threshold of the
// role's keys signed the canonical JSON of exactly this "signed" object.

// envelope is a metadata file's signatures and the canonical JSON of its
// signed part.
type envelope struct {
	Signatures []envSignature
	Canonical  []byte
}

type envSignature struct {
	KeyID string
	Sig   tuf.HexBytes
}

// signedHeader holds the fields every role has, which go-tuf would
// refuse to parse if they were of the wrong type.
type signedHeader struct {
	Type        string    `json:"_type"`
	SpecVersion string    `json:"spec_version"`
	Version     int64     `json:"version"`
	Expires     time.Time `json:"expires"`
}

// lightSnapshot is the part of a snapshot the audit reads: the version
// of each file in meta, in the file's order.
type lightSnapshot struct {
	signedHeader
	Meta []metaEntry
}

type metaEntry struct {
	// Name may point into the file's bytes.
	Name    []byte
	Version int64
}

// version returns the version meta gives name. The audit looks up a
// few names per snapshot, so a scan beats building a map of all.
func (s *lightSnapshot) version(name string) (int64, bool) {
	for _, m := range s.Meta {
		if string(m.Name) == name {
			return m.Version, true
		}
	}
	return 0, false
}

// lightTargets is the part of targets-type metadata the audit reads of
// the files that delegate nothing (bins): each target's name and
// SHA-256, in the file's order.
type lightTargets struct {
	signedHeader
	Targets []targetEntry
}

type targetEntry struct {
	Name   string
	SHA256 tuf.HexBytes
}

// parseSnapshot and parseTargets read a file in one pass, checking what
// go-tuf's parser checks of the fields read: the type, and one signature
// per key. An error means only that go-tuf must parse the file.
func parseSnapshot(data []byte) (*envelope, *lightSnapshot, error) {
	s := &lightSnapshot{}
	env, err := parseEnvelope(data, tuf.SNAPSHOT, snapshotVisitor(s, len(data)), &s.signedHeader)
	return env, s, err
}

func parseTargets(data []byte) (*envelope, *lightTargets, error) {
	t := &lightTargets{}
	env, err := parseEnvelope(data, tuf.TARGETS, targetsVisitor(t), &t.signedHeader)
	return env, t, err
}

func parseEnvelope(data []byte, wantType string, v visitor, h *signedHeader) (*envelope, error) {
	env, err := readEnvelope(data, v)
	if err != nil {
		return nil, err
	}
	if h.Type != wantType {
		return nil, fmt.Errorf("expected metadata type %s, got - %s", wantType, h.Type)
	}
	seen := make(map[string]bool, len(env.Signatures))
	for _, s := range env.Signatures {
		if seen[s.KeyID] {
			return nil, fmt.Errorf("multiple signatures found for key ID %s", s.KeyID)
		}
		seen[s.KeyID] = true
	}
	return env, nil
}

// keyVerifier is a loaded public key: the verifier go-tuf would build
// for it and the fingerprint it counts signers by.
type keyVerifier struct {
	v signature.Verifier
	// ed is set for Ed25519 keys, checked without the copy of the
	// message sigstore's verifier makes first.
	ed          ed25519.PublicKey
	fingerprint [32]byte
	err         error
}

// verify is v.VerifySignature, which for Ed25519 is ed25519.Verify.
func (kv *keyVerifier) verify(sig, msg []byte) bool {
	if kv.ed != nil {
		return ed25519.Verify(kv.ed, msg, sig)
	}
	return kv.v.VerifySignature(bytes.NewReader(sig), bytes.NewReader(msg)) == nil
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
	if ed, ok := pub.(ed25519.PublicKey); ok && kv.err == nil {
		if _, sigstoreEd := kv.v.(*signature.ED25519Verifier); sigstoreEd {
			kv.ed = ed
		}
	}
	return kv
}

// signedByThreshold tells whether env carries valid signatures by at
// least threshold of keyIDs (distinct keys), keys being the delegator's
// keys. It says false, not why: the caller then asks go-tuf.
func (vs *verifiers) signedByThreshold(env *envelope, keys map[string]*tuf.Key, keyIDs []string, threshold int) bool {
	if env == nil || len(keyIDs) == 0 || threshold < 1 {
		return false
	}
	payload := env.Canonical
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
		if sig != nil && kv.verify(sig, payload) {
			signers[kv.fingerprint] = true
		}
	}
	return len(signers) >= threshold
}
