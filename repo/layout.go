package repo

import (
	"bytes"
	"context"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// The in-toto layout is a target of the top-level targets role, signed with
// the offline targets keys: the layout decides whose measurements clients
// trust, so the online measurements key must not be able to replace it
// (the measurements role is delegated measurements/* only, and a client
// takes the layout from the top-level targets metadata alone).
//
// The layout is signed by its owner, whose public keys travel in the
// target's custom metadata (metadata.LayoutCustom).

// PublishedLayout is the in-toto layout a repository publishes.
type PublishedLayout struct {
	// Data is the signed layout.
	Data []byte
	// OwnerKeys are the layout owner keys from the target's custom metadata.
	OwnerKeys []crypto.PublicKey
	// SHA256 is the hex SHA-256 of Data.
	SHA256 string
}

// LayoutResult says what PublishLayout did.
type LayoutResult struct {
	Target           string `json:"target"`
	SHA256           string `json:"sha256"`
	Length           int64  `json:"length"`
	TargetsVersion   int64  `json:"targetsVersion"`
	SnapshotVersion  int64  `json:"snapshotVersion"`
	TimestampVersion int64  `json:"timestampVersion"`
	// OwnerKeyIDs are the in-toto key IDs of the layout owners.
	OwnerKeyIDs []string `json:"ownerKeyIDs"`
	// Unchanged is set when the repository already published exactly
	// this layout with these owner keys.
	Unchanged bool `json:"unchanged"`
}

// PublishLayout publishes layout, an in-toto layout signed by one of
// ownerKeys (see intoto.NewLayout), as the target metadata.LayoutTarget
// of the top-level targets role, with the owner keys in the target's custom
// metadata. The top-level targets metadata is re-signed with
// targetsSigners, which must be keys of the targets role and at least its
// threshold; they are used for this call only and never recorded. Snapshot
// and timestamp are signed with the workspace's keys.
//
// The layout must verify with the owner keys and must not have expired:
// a layout that no client would accept is refused here.
func (w *Workspace) PublishLayout(ctx context.Context, layout []byte, ownerKeys []crypto.PublicKey, targetsSigners []crypto.Signer) (*LayoutResult, error) {
	custom, ownerIDs, err := metadata.NewLayoutCustom(ownerKeys, intoto.KeyID)
	if err != nil {
		return nil, err
	}
	if err := checkLayout(layout, ownerKeys, w.now()); err != nil {
		return nil, err
	}
	if len(targetsSigners) == 0 {
		return nil, errors.New("no targets key given: the layout is a target of the top-level targets role, which only its offline keys sign")
	}
	var res *LayoutResult
	err = w.update(ctx, func() error {
		var err error
		res, err = w.tryPublishLayout(ctx, layout, custom, targetsSigners)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.OwnerKeyIDs = ownerIDs
	return res, nil
}

func (w *Workspace) tryPublishLayout(ctx context.Context, layout []byte, custom json.RawMessage, targetsSigners []crypto.Signer) (*LayoutResult, error) {
	s, err := loadState(ctx, w.Storage)
	if err != nil {
		return nil, err
	}
	tf, err := tuf.TargetFile().FromBytes(metadata.LayoutTarget, layout, "sha256")
	if err != nil {
		return nil, err
	}
	tf.Custom = &custom
	res := &LayoutResult{Target: metadata.LayoutTarget, SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Length: tf.Length}
	targets := s.roles[tuf.TARGETS]
	if old, ok := targets.Signed.Targets[metadata.LayoutTarget]; ok && old.Length == tf.Length &&
		bytes.Equal(old.Hashes["sha256"], tf.Hashes["sha256"]) && old.Custom != nil && bytes.Equal(*old.Custom, custom) {
		res.Unchanged = true
		res.TargetsVersion, res.SnapshotVersion, res.TimestampVersion = targets.Signed.Version, s.snapshot.Signed.Version, s.timestamp.Signed.Version
		return res, nil
	}
	signers, err := w.checkTargetsSigners(ctx, s, targetsSigners)
	if err != nil {
		return nil, err
	}
	// The offline keys serve this one commit; the workspace never keeps them.
	if w.signerCache == nil {
		w.signerCache = map[string][]signature.Signer{}
	}
	w.signerCache[tuf.TARGETS] = signers
	defer delete(w.signerCache, tuf.TARGETS)
	targets.Signed.Targets[metadata.LayoutTarget] = tf
	s.dirty[tuf.TARGETS] = true
	for _, role := range []string{tuf.TARGETS, tuf.SNAPSHOT, tuf.TIMESTAMP} {
		if _, err := w.signers(ctx, s, role); err != nil {
			return nil, err
		}
	}
	files := map[string][]byte{targetFileName(metadata.LayoutTarget, layout): layout}
	if err := s.commit(ctx, files, w.signers, w.expiry); err != nil {
		return nil, err
	}
	res.TargetsVersion = s.snapshot.Signed.Meta[tuf.TARGETS+".json"].Version
	res.SnapshotVersion, res.TimestampVersion = s.snapshot.Signed.Version, s.timestamp.Signed.Version
	return res, nil
}

// checkTargetsSigners turns the given keys into TUF signers after checking
// that each is a distinct key of the top-level targets role and that
// together they meet its threshold.
func (w *Workspace) checkTargetsSigners(ctx context.Context, s *state, given []crypto.Signer) ([]signature.Signer, error) {
	ids, threshold, err := s.keysOf(ctx, tuf.TARGETS)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []signature.Signer
	for i, priv := range given {
		id, err := keys.KeyID(priv.Public())
		if err != nil {
			return nil, fmt.Errorf("targets key %d: %w", i+1, err)
		}
		if !contains(ids, id) {
			return nil, fmt.Errorf("targets key %d (id %s) is not a key of the top-level targets role of this repository (its keys: %s)", i+1, short(id), shortIDs(ids))
		}
		if seen[id] {
			return nil, fmt.Errorf("targets key %d (id %s) is given twice; a threshold needs distinct keys", i+1, short(id))
		}
		seen[id] = true
		signer, err := keys.Signer(priv)
		if err != nil {
			return nil, fmt.Errorf("targets key %d (id %s): %w", i+1, short(id), err)
		}
		out = append(out, signer)
	}
	if len(out) < threshold {
		return nil, fmt.Errorf("the top-level targets role needs %d signatures, %d targets key(s) given", threshold, len(out))
	}
	return out, nil
}

// Layout returns the in-toto layout the repository publishes, or nil when
// it publishes none.
func (w *Workspace) Layout(ctx context.Context) (*PublishedLayout, error) {
	s, err := loadState(ctx, w.Storage)
	if err != nil {
		return nil, err
	}
	return s.layout(ctx)
}

// layout reads the layout target of the top-level targets role, checking
// the stored file against its signed length and hash.
func (s *state) layout(ctx context.Context) (*PublishedLayout, error) {
	tf, ok := s.roles[tuf.TARGETS].Signed.Targets[metadata.LayoutTarget]
	if !ok {
		return nil, nil
	}
	sum := hex.EncodeToString(tf.Hashes["sha256"])
	dir, base := path.Split(metadata.LayoutTarget)
	name := "targets/" + dir + sum + "." + base
	data, err := s.st.Get(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", metadata.LayoutTarget, err)
	}
	if err := tf.VerifyLengthHashes(data); err != nil {
		return nil, fmt.Errorf("layout %s: the stored file %s differs from the signed target: %w", metadata.LayoutTarget, name, err)
	}
	if tf.Custom == nil {
		return nil, fmt.Errorf("layout %s has no owner keys in its custom metadata", metadata.LayoutTarget)
	}
	owners, err := metadata.ParseLayoutCustom(*tf.Custom)
	if err != nil {
		return nil, fmt.Errorf("layout %s: %w", metadata.LayoutTarget, err)
	}
	return &PublishedLayout{Data: data, OwnerKeys: owners, SHA256: sum}, nil
}

// checkLayout refuses a layout that clients would refuse whatever links
// came with it: unreadable, not signed by an owner key, or expired. The
// supply chain verifier checks the layout before any link, so when it
// stops at the first missing link, the layout itself passed.
func checkLayout(layout []byte, ownerKeys []crypto.PublicKey, now time.Time) error {
	err := intoto.VerifySupplyChain(layout, ownerKeys, nil, nil, now)
	if err == nil || errors.Is(err, intoto.ErrLinkMissing) {
		return nil
	}
	return fmt.Errorf("the layout is not publishable: %w", err)
}

func shortIDs(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return strings.Join(out, ", ")
}
