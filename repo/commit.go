package repo

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/keys"
)

// CommitResult says what a commit published.
type CommitResult struct {
	Committed        []string `json:"committed"`
	SnapshotVersion  int64    `json:"snapshotVersion"`
	TimestampVersion int64    `json:"timestampVersion"`
}

// ErrThreshold marks a staged file that is not signed enough to commit.
var ErrThreshold = errors.New("threshold not met")

// Commit publishes every staged file once all its thresholds are met,
// checked against the repository's trusted metadata (never the staged
// file's own list of keys), then re-signs snapshot and timestamp. Nothing
// is published unless every staged file passes.
func (w *Workspace) Commit(ctx context.Context) (*CommitResult, error) {
	staged, err := w.Staged()
	if err != nil {
		return nil, err
	}
	if len(staged) == 0 {
		return nil, errors.New("nothing is staged: stage a change first with 'mtuf repo stage'")
	}
	var res *CommitResult
	err = w.update(ctx, func() error {
		s, err := loadState(ctx, w.Storage)
		if err != nil {
			return err
		}
		c, err := checkStaged(ctx, s, staged)
		if err != nil {
			return err
		}
		res, err = w.applyCommit(ctx, s, staged, c)
		return err
	})
	if err != nil {
		return nil, err
	}
	if err := w.save(); err != nil {
		return nil, err
	}
	for role := range staged {
		os.Remove(w.StagedPath(role))
	}
	return res, nil
}

// stagedChange is the staged metadata that passed its checks; a role not
// staged is nil or absent.
type stagedChange struct {
	root    *tuf.Metadata[tuf.RootType]
	targets *tuf.Metadata[tuf.TargetsType]
	roles   map[string]*tuf.Metadata[tuf.TargetsType]
}

// checkStaged checks every staged file top down, each against the
// metadata that will be trusted when it is published: a new root against
// the current root and itself, new targets against the root that will be
// trusted, a delegated role against the targets that will be trusted.
func checkStaged(ctx context.Context, s *state, staged map[string]*Staged) (*stagedChange, error) {
	c := &stagedChange{roles: map[string]*tuf.Metadata[tuf.TargetsType]{}}
	root := s.root
	if st := staged[tuf.ROOT]; st != nil {
		md, err := checkStagedRoot(s.root, st)
		if err != nil {
			return nil, err
		}
		c.root, root = md, md
	}
	targets := s.roles[tuf.TARGETS]
	if st := staged[tuf.TARGETS]; st != nil {
		md, err := tuf.Targets().FromBytes(st.Metadata)
		if err != nil {
			return nil, fmt.Errorf("staged targets: %w", err)
		}
		if err := checkVersion(tuf.TARGETS, md.Signed.Version, targets.Signed.Version); err != nil {
			return nil, err
		}
		if err := thresholdErr(st, root.VerifyDelegate(tuf.TARGETS, md), fmt.Sprintf("the targets keys of root v%d", root.Signed.Version)); err != nil {
			return nil, err
		}
		c.targets, targets = md, md
	}
	for _, d := range delegations {
		st := staged[d.name]
		if st == nil {
			continue
		}
		md, err := tuf.Targets().FromBytes(st.Metadata)
		if err != nil {
			return nil, fmt.Errorf("staged %s: %w", d.name, err)
		}
		cur, err := s.role(ctx, d.name)
		if err != nil {
			return nil, err
		}
		if err := checkVersion(d.name, md.Signed.Version, cur.Signed.Version); err != nil {
			return nil, err
		}
		if err := thresholdErr(st, targets.VerifyDelegate(d.name, md), fmt.Sprintf("the %s keys of targets v%d", d.name, targets.Signed.Version)); err != nil {
			return nil, err
		}
		c.roles[d.name] = md
	}
	return c, nil
}

// checkStagedRoot checks a staged root: the next version, signed by the
// threshold of the current root's root keys and of its own.
func checkStagedRoot(cur *tuf.Metadata[tuf.RootType], st *Staged) (*tuf.Metadata[tuf.RootType], error) {
	md, err := tuf.Root().FromBytes(st.Metadata)
	if err != nil {
		return nil, fmt.Errorf("staged root: %w", err)
	}
	if err := checkVersion(tuf.ROOT, md.Signed.Version, cur.Signed.Version); err != nil {
		return nil, err
	}
	if err := thresholdErr(st, cur.VerifyDelegate(tuf.ROOT, md), fmt.Sprintf("root v%d's root keys", cur.Signed.Version)); err != nil {
		return nil, err
	}
	if err := thresholdErr(st, md.VerifyDelegate(tuf.ROOT, md), fmt.Sprintf("root v%d's own root keys", md.Signed.Version)); err != nil {
		return nil, err
	}
	if !md.Signed.ConsistentSnapshot {
		return nil, errors.New("staged root turns consistent snapshots off; mtuf repositories always use them")
	}
	return md, nil
}

// applyCommit publishes a checked change: root first, then the staged
// targets-type metadata as signed, then everything re-signed with the
// workspace's keys, snapshot and timestamp last.
func (w *Workspace) applyCommit(ctx context.Context, s *state, staged map[string]*Staged, c *stagedChange) (*CommitResult, error) {
	res := &CommitResult{}
	// The workspace's online keys change first, so snapshot and
	// timestamp are signed by the keys the new root names.
	for _, st := range staged {
		w.applyWorkspaceKeys(ctx, st)
	}
	w.signerCache = map[string][]signature.Signer{}
	w.keyCache = nil
	if c.root != nil {
		data, err := c.root.ToBytes(true)
		if err != nil {
			return nil, err
		}
		if err := w.Storage.PutOnce(ctx, fmt.Sprintf("metadata/%d.root.json", c.root.Signed.Version), data); err != nil {
			return nil, err
		}
		s.root = c.root
		res.Committed = append(res.Committed, fmt.Sprintf("root v%d", c.root.Signed.Version))
	}
	s.presigned = map[string][]byte{}
	if c.targets != nil {
		s.roles[tuf.TARGETS] = c.targets
		s.presigned[tuf.TARGETS] = staged[tuf.TARGETS].Metadata
		res.Committed = append(res.Committed, fmt.Sprintf("targets v%d", c.targets.Signed.Version))
		// A delegated role whose keys changed re-signs its own
		// metadata and its bins with its new keys.
		for _, d := range c.targets.Signed.Delegations.Roles {
			if err := s.followDelegation(ctx, d); err != nil {
				return nil, err
			}
		}
	}
	for name, md := range c.roles {
		s.roles[name] = md
		s.presigned[name] = staged[name].Metadata
		delete(s.dirty, name)
		res.Committed = append(res.Committed, fmt.Sprintf("%s v%d", name, md.Signed.Version))
	}
	for _, role := range append(slices.Sorted(maps.Keys(s.dirty)), tuf.SNAPSHOT, tuf.TIMESTAMP) {
		if _, err := w.signers(ctx, s, role); err != nil {
			return nil, err
		}
	}
	if err := s.commit(ctx, nil, w.signers, w.expiry); err != nil {
		return nil, err
	}
	res.SnapshotVersion, res.TimestampVersion = s.snapshot.Signed.Version, s.timestamp.Signed.Version
	return res, nil
}

func checkVersion(role string, staged, current int64) error {
	if staged != current+1 {
		return fmt.Errorf("staged %s is version %d, but the repository's %s is at version %d, so the next is %d: stage it again", role, staged, role, current, current+1)
	}
	return nil
}

// thresholdErr explains a failed threshold check with who has signed and
// who still may.
func thresholdErr(st *Staged, err error, against string) error {
	if err == nil {
		return nil
	}
	var lines []string
	for _, p := range st.Progress() {
		signed := ""
		if len(p.SignedBy) > 0 {
			signed = " (" + shortList(p.SignedBy) + ")"
		}
		mayStill := "none"
		if len(p.MaySign) > 0 {
			mayStill = shortList(p.MaySign)
		}
		lines = append(lines, fmt.Sprintf("%s: %d of %d signed%s; may still sign: %s", p.Authority, len(p.SignedBy), p.Threshold, signed, mayStill))
	}
	// The path 'mtuf repo stage' printed, where the staged file is.
	path := st.path
	if path == "" {
		path = filepath.Join(StagedDir, st.Role+".json")
	}
	return fmt.Errorf("%w: staged %s v%d is not signed by enough of %s (%v)\n  %s\nsign it with 'mtuf repo sign %s --key KEY'", ErrThreshold, st.Role, st.Version(), against, err, strings.Join(lines, "\n  "), path)
}

// followDelegation brings a delegated role's metadata in line with the
// keys targets now gives it: its bins are signed by the same keys, so
// when they change the role and every bin are re-signed.
func (s *state) followDelegation(ctx context.Context, d tuf.DelegatedRole) error {
	md, err := s.role(ctx, d.Name)
	if err != nil {
		return err
	}
	sr := md.Signed.Delegations
	if sr == nil || sr.SuccinctRoles == nil {
		return nil
	}
	ids := append([]string(nil), d.KeyIDs...)
	slices.Sort(ids)
	old := append([]string(nil), sr.SuccinctRoles.KeyIDs...)
	slices.Sort(old)
	if slices.Equal(ids, old) && sr.SuccinctRoles.Threshold == d.Threshold {
		return nil
	}
	sr.SuccinctRoles.KeyIDs, sr.SuccinctRoles.Threshold = d.KeyIDs, d.Threshold
	sr.Keys = map[string]*tuf.Key{}
	for _, id := range d.KeyIDs {
		sr.Keys[id] = s.roles[tuf.TARGETS].Signed.Delegations.Keys[id]
	}
	s.dirty[d.Name] = true
	for _, bin := range sr.SuccinctRoles.GetRoles() {
		if _, err := s.role(ctx, bin); err != nil {
			return err
		}
		s.dirty[bin] = true
	}
	return nil
}

// applyWorkspaceKeys records the online keys a staged file adds and
// drops those it removes.
func (w *Workspace) applyWorkspaceKeys(ctx context.Context, st *Staged) {
	for role, ids := range st.RemoveWorkspaceKeys {
		var keep []string
		for _, ref := range w.Config.Keys[role] {
			if id, err := refKeyID(ctx, ref, w); err == nil && slices.Contains(ids, id) {
				continue
			}
			keep = append(keep, ref)
		}
		w.Config.Keys[role] = keep
	}
	for role, refs := range st.AddWorkspaceKeys {
		for _, ref := range refs {
			if !slices.Contains(w.Config.Keys[role], ref) {
				w.Config.Keys[role] = append(w.Config.Keys[role], ref)
			}
		}
	}
}

func refKeyID(ctx context.Context, ref string, w *Workspace) (string, error) {
	pub, err := publicKey(ctx, ref, w.resolver())
	if err != nil {
		return "", err
	}
	k, err := keys.TUFKey(pub)
	if err != nil {
		return "", err
	}
	return k.ID()
}

// StagedPaths lists the staged files of the workspace, for messages.
func (w *Workspace) StagedPaths() []string {
	m, _ := filepath.Glob(filepath.Join(w.Dir, StagedDir, "*.json"))
	return m
}
