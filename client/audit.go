package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/translog"
)

// auditFile keeps where the last audit stopped, for Audit with follow.
const auditFile = "audit.json"

// AuditReport is what a replay of the transparency log found.
type AuditReport struct {
	Origin string `json:"origin"`
	// From and Size are the entries replayed: [From, Size).
	From int64 `json:"from"`
	Size int64 `json:"size"`
	// Measurements lists every measurements document published (new or
	// changed) in the entries replayed.
	Measurements []PublishedMeasurement `json:"measurements"`
	// Problems lists what does not hold: metadata missing or differing
	// from its logged SHA-256, metadata not signed by the keys its role
	// had at the time.
	Problems []AuditProblem `json:"problems"`
}

// PublishedMeasurement is a measurements document a logged snapshot
// made available.
type PublishedMeasurement struct {
	Image    string `json:"image"`
	Platform string `json:"platform"`
	Target   string `json:"target"`
	SHA256   string `json:"sha256"`
	// Snapshot is the snapshot version that published it, LogIndex its
	// entry.
	Snapshot int64 `json:"snapshot"`
	LogIndex int64 `json:"logIndex"`
}

// AuditProblem is one finding.
type AuditProblem struct {
	LogIndex int64  `json:"logIndex"`
	File     string `json:"file"`
	Problem  string `json:"problem"`
}

// ErrAuditFindings marks an audit that found problems.
var ErrAuditFindings = errors.New("the audit found problems")

// auditState is where a followed audit stopped.
type auditState struct {
	Seen translog.Seen `json:"seen"`
	// Bins holds the target hashes of each measurements bin as last
	// replayed, to report only what changed.
	Bins map[string]map[string]string `json:"bins"`
}

// Audit replays the repository's transparency log from its tiles: every
// entry is checked against the metadata it names (consistent snapshots
// are immutable, so each version can still be fetched), every file's
// signatures against the keys its role had at the time, and every
// measurements document published is listed. With follow, it starts
// where the last followed audit stopped, checks that the log extends what
// it saw then, and records where it stops.
func (c *Client) Audit(ctx context.Context, follow bool) (*AuditReport, error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	_, tm, err := c.trustedRoot()
	if err != nil {
		return nil, err
	}
	cfg, err := rootLogConfig(tm.Root)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, fmt.Errorf("the trusted root of %s declares no transparency log: there is nothing to audit", c.config.Repository)
	}
	fetch := c.logFetch(ctx)
	r := &translog.Reader{Fetch: fetch}
	signed, err := fetch(ctx, translog.CheckpointPath)
	if err != nil {
		return nil, fmt.Errorf("transparency log of %s: %w", c.config.Repository, err)
	}
	cp, err := cfg.Verify(signed)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	st := &auditState{Bins: map[string]map[string]string{}}
	if follow {
		if prev, err := c.loadAudit(); err != nil {
			return nil, err
		} else if prev != nil {
			if err := r.Consistent(ctx, prev.Seen.Checkpoint(), cp); err != nil {
				return nil, fmt.Errorf("%w: %w", ErrUntrusted, err)
			}
			st = prev
		}
	}
	a := &auditor{c: c, fetch: fetch, files: map[string]*cachedFile{}, rootsChecked: map[string]bool{}, st: st,
		rep: &AuditReport{Origin: cp.Origin, From: st.Seen.Size, Size: cp.Size, Measurements: []PublishedMeasurement{}, Problems: []AuditProblem{}}}
	err = r.Entries(ctx, cp, st.Seen.Size, func(i int64, data []byte) error {
		e, err := translog.ParseEntry(data)
		if err != nil {
			a.problem(i, "", err.Error())
			return nil
		}
		return a.entry(ctx, i, e)
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	if follow {
		st.Seen = translog.Seen{Origin: cp.Origin, Size: cp.Size, Hash: cp.Hash[:]}
		if err := c.saveAudit(st); err != nil {
			return nil, err
		}
	}
	return a.rep, nil
}

type auditor struct {
	c     *Client
	fetch translog.Fetch
	st    *auditState
	rep   *AuditReport
	// files caches parsed metadata by file name; versioned names never
	// change.
	files map[string]*cachedFile
	// rootsChecked names the roots already checked: every entry names
	// the root in force, which changes rarely.
	rootsChecked map[string]bool
}

type cachedFile struct {
	sum  [32]byte
	root *tuf.Metadata[tuf.RootType]
	snap *tuf.Metadata[tuf.SnapshotType]
	tgts *tuf.Metadata[tuf.TargetsType]
	// err is a failed fetch, parseErr metadata that does not parse.
	err, parseErr error
}

func (a *auditor) problem(i int64, file, p string) {
	a.rep.Problems = append(a.rep.Problems, AuditProblem{LogIndex: i, File: file, Problem: p})
}

// load fetches and parses a versioned metadata file once.
func (a *auditor) load(ctx context.Context, role string, v int64) (string, *cachedFile) {
	name := fmt.Sprintf("metadata/%d.%s.json", v, role)
	if f, ok := a.files[name]; ok {
		return name, f
	}
	f := &cachedFile{}
	a.files[name] = f
	data, err := a.fetch(ctx, name)
	if err != nil {
		f.err = fmt.Errorf("cannot be fetched: %w", err)
		return name, f
	}
	f.sum = sha256.Sum256(data)
	switch role {
	case tuf.ROOT:
		f.root, f.parseErr = (&tuf.Metadata[tuf.RootType]{}).FromBytes(data)
	case tuf.SNAPSHOT:
		f.snap, f.parseErr = (&tuf.Metadata[tuf.SnapshotType]{}).FromBytes(data)
	default:
		f.tgts, f.parseErr = (&tuf.Metadata[tuf.TargetsType]{}).FromBytes(data)
	}
	return name, f
}

func (a *auditor) entry(ctx context.Context, i int64, e *translog.Entry) error {
	snapName, snap := a.load(ctx, tuf.SNAPSHOT, e.SnapshotVersion)
	if !a.matches(i, snapName, snap, e.SnapshotSHA256) {
		return nil
	}
	var root *tuf.Metadata[tuf.RootType]
	for _, f := range e.Files {
		if f.Role == tuf.ROOT {
			name, rf := a.load(ctx, tuf.ROOT, f.Version)
			if a.matches(i, name, rf, f.SHA256) {
				root = rf.root
				if !a.rootsChecked[name] {
					a.rootsChecked[name] = true
					a.checkRoot(ctx, i, name, rf.root)
				}
			}
		}
	}
	if root == nil {
		a.problem(i, snapName, "the entry names no root in force")
		return nil
	}
	a.signedBy(i, snapName, root.Signed.Roles[tuf.SNAPSHOT], snap.snap.Signatures, func() error {
		return root.VerifyDelegate(tuf.SNAPSHOT, snap.snap)
	})
	for _, f := range e.Files {
		if f.Role == tuf.ROOT {
			continue
		}
		name, tf := a.load(ctx, f.Role, f.Version)
		if !a.matches(i, name, tf, f.SHA256) {
			continue
		}
		if m, ok := snap.snap.Signed.Meta[f.Role+".json"]; !ok || m.Version != f.Version {
			a.problem(i, name, "the snapshot of this entry does not name this version")
		}
		a.checkDelegated(ctx, i, name, f.Role, tf.tgts, root, snap.snap)
		a.measurements(i, e.SnapshotVersion, f.Role, tf.tgts)
	}
	return nil
}

// matches checks that a logged file exists, parses and has the logged
// SHA-256.
func (a *auditor) matches(i int64, name string, f *cachedFile, sum []byte) bool {
	if f.err != nil {
		a.problem(i, name, f.err.Error())
		return false
	}
	if string(f.sum[:]) != string(sum) {
		a.problem(i, name, fmt.Sprintf("its SHA-256 is %x, the log says %x: the file was replaced after it was logged", f.sum, sum))
		return false
	}
	if f.parseErr != nil {
		a.problem(i, name, fmt.Sprintf("logged, but not valid metadata: %v", f.parseErr))
		return false
	}
	return true
}

// checkRoot checks a root against its own keys and its predecessor's.
func (a *auditor) checkRoot(ctx context.Context, i int64, name string, root *tuf.Metadata[tuf.RootType]) {
	sigs := root.Signatures
	if root.Signed.Version > 1 {
		sigs = nil // checked below against the keys of both roots
	}
	a.signedBy(i, name, root.Signed.Roles[tuf.ROOT], sigs, func() error { return root.VerifyDelegate(tuf.ROOT, root) })
	if v := root.Signed.Version; v > 1 {
		prevName, prev := a.load(ctx, tuf.ROOT, v-1)
		if err := cmpErr(prev.err, prev.parseErr); err != nil {
			a.problem(i, prevName, err.Error())
			return
		}
		a.signedBy(i, name, unionRole(prev.root.Signed.Roles[tuf.ROOT], root.Signed.Roles[tuf.ROOT]), root.Signatures, func() error { return prev.root.VerifyDelegate(tuf.ROOT, root) })
	}
}

// checkDelegated checks targets-type metadata against the role that
// delegated to it in the same snapshot.
func (a *auditor) checkDelegated(ctx context.Context, i int64, name, role string, md *tuf.Metadata[tuf.TargetsType], root *tuf.Metadata[tuf.RootType], snap *tuf.Metadata[tuf.SnapshotType]) {
	if role == tuf.TARGETS {
		a.signedBy(i, name, root.Signed.Roles[tuf.TARGETS], md.Signatures, func() error { return root.VerifyDelegate(tuf.TARGETS, md) })
		return
	}
	tm, ok := snap.Signed.Meta["targets.json"]
	if !ok {
		a.problem(i, name, "the snapshot names no targets")
		return
	}
	tName, targets := a.load(ctx, tuf.TARGETS, tm.Version)
	if err := cmpErr(targets.err, targets.parseErr); err != nil {
		a.problem(i, tName, err.Error())
		return
	}
	d := targets.tgts.Signed.Delegations
	if d == nil {
		a.problem(i, name, "targets delegates to no role")
		return
	}
	for _, dr := range d.Roles {
		if dr.Name == role {
			a.signedBy(i, name, &tuf.Role{KeyIDs: dr.KeyIDs, Threshold: dr.Threshold}, md.Signatures, func() error { return targets.tgts.VerifyDelegate(role, md) })
			return
		}
	}
	for _, dr := range d.Roles {
		pm, ok := snap.Signed.Meta[dr.Name+".json"]
		if !ok {
			continue
		}
		pName, parent := a.load(ctx, dr.Name, pm.Version)
		if err := cmpErr(parent.err, parent.parseErr); err != nil {
			a.problem(i, pName, err.Error())
			continue
		}
		pd := parent.tgts.Signed.Delegations
		if pd != nil && pd.SuccinctRoles != nil && pd.SuccinctRoles.IsDelegatedRole(role) {
			a.signedBy(i, name, &tuf.Role{KeyIDs: pd.SuccinctRoles.KeyIDs, Threshold: pd.SuccinctRoles.Threshold}, md.Signatures, func() error { return parent.tgts.VerifyDelegate(role, md) })
			return
		}
	}
	a.problem(i, name, fmt.Sprintf("no role in this snapshot delegates to %s", role))
}

// signedBy runs verify (a threshold check) and flags signatures by keys
// the role did not have.
func (a *auditor) signedBy(i int64, name string, role *tuf.Role, sigs []tuf.Signature, verify func() error) {
	if role == nil {
		a.problem(i, name, "its role is not defined at the time")
		return
	}
	if err := verify(); err != nil {
		a.problem(i, name, fmt.Sprintf("not signed by the threshold of its role's keys at the time: %v", err))
	}
	for _, sig := range sigs {
		if !slices.Contains(role.KeyIDs, sig.KeyID) {
			a.problem(i, name, fmt.Sprintf("signed by key %s, which its role did not have at the time", sig.KeyID))
		}
	}
}

// measurements lists the measurements documents a bin adds or changes.
func (a *auditor) measurements(i, snapVersion int64, role string, md *tuf.Metadata[tuf.TargetsType]) {
	if !strings.HasPrefix(role, "measurements-bin") {
		return
	}
	old := a.st.Bins[role]
	cur := map[string]string{}
	for _, name := range slices.Sorted(mapKeys(md.Signed.Targets)) {
		t := md.Signed.Targets[name]
		sum := hex.EncodeToString(t.Hashes["sha256"])
		cur[name] = sum
		if old[name] == sum {
			continue
		}
		tc, err := metadata.ParseTarget(name)
		if err != nil || tc.Kind != metadata.KindMeasurements {
			continue
		}
		a.rep.Measurements = append(a.rep.Measurements, PublishedMeasurement{Image: tc.Image, Platform: tc.Platform, Target: name, SHA256: sum, Snapshot: snapVersion, LogIndex: i})
	}
	a.st.Bins[role] = cur
}

// cmpErr returns the first of errs that is not nil.
func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// unionRole is a role whose keys are those of both: a new root carries
// the signatures of the old root keys and of the new ones.
func unionRole(a, b *tuf.Role) *tuf.Role {
	if a == nil || b == nil {
		return a
	}
	ids := slices.Clone(a.KeyIDs)
	for _, id := range b.KeyIDs {
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return &tuf.Role{KeyIDs: ids, Threshold: a.Threshold}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func (c *Client) loadAudit() (*auditState, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, auditFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", c.dir, err)
	}
	var st auditState
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, damagedState(c.dir, auditFile, err)
	}
	if st.Bins == nil {
		st.Bins = map[string]map[string]string{}
	}
	return &st, nil
}

func (c *Client) saveAudit(st *auditState) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.dir, auditFile), data, 0o644)
}
