package client

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/translog"
)

// auditBatchSize is how many entries are audited in parallel at a time;
// auditWorkers is how many at once: more than the processors, to keep
// fetches from a remote repository in flight.
const (
	auditBatchSize = 1024
	auditWorkers   = 16
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
	a := &auditor{c: c, fetch: fetch, files: map[string]*cachedFile{}, rootsChecked: map[string]bool{}, st: st, bins: map[string][]targetEntry{},
		rep: &AuditReport{Origin: cp.Origin, From: st.Seen.Size, Size: cp.Size, Measurements: []PublishedMeasurement{}, Problems: []AuditProblem{}}}
	var batch []loggedEntry
	err = r.Entries(ctx, cp, st.Seen.Size, func(i int64, data []byte) error {
		e, err := translog.ParseEntry(data)
		batch = append(batch, loggedEntry{i: i, e: e, err: err})
		if len(batch) == auditBatchSize {
			a.auditBatch(ctx, batch)
			batch = batch[:0]
		}
		return nil
	})
	if err == nil {
		a.auditBatch(ctx, batch)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUntrusted, err)
	}
	if follow {
		a.saveBins()
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
	// mu guards files and rootsChecked.
	mu sync.Mutex
	// files caches fetched metadata by file name; versioned names never
	// change, so each is fetched, parsed and checked once.
	files map[string]*cachedFile
	// rootsChecked names the roots already checked: every entry names
	// the root in force, which changes rarely.
	rootsChecked map[string]bool
	keys         verifiers
	// bins holds the targets of each bin's last version replayed.
	bins map[string][]targetEntry
}

type cachedFile struct {
	// keep marks roots and delegators, which later entries read again;
	// the other files are dropped after their batch, so that an audit's
	// memory does not grow with the log.
	keep atomic.Bool
	once sync.Once
	data []byte
	sum  [32]byte
	// err is a failed fetch, parseErr metadata that does not parse.
	err, parseErr error
	env           *envelope
	root          *tuf.Metadata[tuf.RootType]
	snap          *lightSnapshot
	tgts          *lightTargets
	// full is go-tuf's parse of a snapshot or targets-type file, made
	// only when needed: for a delegator's keys, or to have go-tuf judge
	// signatures the direct check did not accept.
	fullOnce sync.Once
	fullSnap *tuf.Metadata[tuf.SnapshotType]
	fullTgts *tuf.Metadata[tuf.TargetsType]
	fullErr  error
}

// full returns go-tuf's parse of a snapshot or targets-type file.
func (f *cachedFile) full(role string) (*tuf.Metadata[tuf.SnapshotType], *tuf.Metadata[tuf.TargetsType], error) {
	f.fullOnce.Do(func() {
		if role == tuf.SNAPSHOT {
			f.fullSnap, f.fullErr = (&tuf.Metadata[tuf.SnapshotType]{}).FromBytes(f.data)
		} else {
			f.fullTgts, f.fullErr = (&tuf.Metadata[tuf.TargetsType]{}).FromBytes(f.data)
		}
	})
	return f.fullSnap, f.fullTgts, f.fullErr
}

// fromFull fills the parts the audit reads from go-tuf's parse.
func (f *cachedFile) fromFull(role string) error {
	snap, tgts, err := f.full(role)
	if err != nil {
		return err
	}
	if snap != nil {
		f.snap = &lightSnapshot{}
		for name, m := range snap.Signed.Meta {
			f.snap.Meta = append(f.snap.Meta, metaEntry{Name: []byte(name), Version: m.Version})
		}
		return nil
	}
	f.tgts = &lightTargets{}
	for name, t := range tgts.Signed.Targets {
		f.tgts.Targets = append(f.tgts.Targets, targetEntry{Name: name, SHA256: t.Hashes["sha256"]})
	}
	return nil
}

// delegations returns the delegations of a targets-type file, parsed by
// go-tuf.
func (f *cachedFile) delegations(role string) (*tuf.Metadata[tuf.TargetsType], error) {
	_, t, err := f.full(role)
	return t, err
}

func (f *cachedFile) sigKeyIDs() []string {
	var ids []string
	switch {
	case f.env != nil:
		for _, s := range f.env.Signatures {
			ids = append(ids, s.KeyID)
		}
	case f.fullSnap != nil:
		for _, s := range f.fullSnap.Signatures {
			ids = append(ids, s.KeyID)
		}
	case f.fullTgts != nil:
		for _, s := range f.fullTgts.Signatures {
			ids = append(ids, s.KeyID)
		}
	}
	return ids
}

// entryResult is what the audit of one entry found; entries are audited
// in parallel and their results reported in log order.
type entryResult struct {
	i        int64
	problems []AuditProblem
	// bins are the measurements bins the entry wrote, for the listing.
	bins []loggedBin
	// checkRoots names the roots this entry is the first to name.
	checkRoots map[string]bool
}

type loggedBin struct {
	role string
	md   *lightTargets
}

func (r *entryResult) problem(file, p string) {
	r.problems = append(r.problems, AuditProblem{LogIndex: r.i, File: file, Problem: p})
}

// load fetches and parses a versioned metadata file once.
func (a *auditor) load(ctx context.Context, role string, v int64) (string, *cachedFile) {
	name := fmt.Sprintf("metadata/%d.%s.json", v, role)
	a.mu.Lock()
	f, ok := a.files[name]
	if !ok {
		f = &cachedFile{}
		a.files[name] = f
	}
	a.mu.Unlock()
	f.once.Do(func() {
		data, err := a.fetch(ctx, name)
		if err != nil {
			f.err = fmt.Errorf("cannot be fetched: %w", err)
			return
		}
		f.data = data
		f.sum = sha256.Sum256(data)
		switch role {
		case tuf.ROOT:
			f.keep.Store(true)
			f.root, f.parseErr = (&tuf.Metadata[tuf.RootType]{}).FromBytes(data)
			return
		case tuf.SNAPSHOT:
			f.env, f.snap, f.parseErr = parseSnapshot(data)
		default:
			f.env, f.tgts, f.parseErr = parseTargets(data)
		}
		if f.parseErr != nil {
			// The one-pass reader leaves the file to go-tuf: its
			// words for what is wrong, or its reading of the file,
			// whose signatures it then judges too.
			f.env = nil
			f.parseErr = f.fromFull(role)
		}
	})
	return name, f
}

// auditBatch audits entries in parallel and adds what they found to the
// report in log order.
func (a *auditor) auditBatch(ctx context.Context, batch []loggedEntry) {
	results := make([]*entryResult, len(batch))
	for k, le := range batch {
		results[k] = &entryResult{i: le.i, checkRoots: map[string]bool{}}
		if le.err != nil {
			continue
		}
		for _, f := range le.e.Files {
			if f.Role != tuf.ROOT {
				continue
			}
			name := fmt.Sprintf("metadata/%d.%s.json", f.Version, f.Role)
			if !a.rootsChecked[name] {
				a.rootsChecked[name] = true
				results[k].checkRoots[name] = true
			}
		}
	}
	inParallel(len(batch), max(auditWorkers, runtime.GOMAXPROCS(0)), func(k int) {
		if batch[k].err != nil {
			results[k].problem("", batch[k].err.Error())
			return
		}
		a.entry(ctx, results[k], batch[k].e)
	})
	// Room for the targets the bins gain, each listed: a publish of
	// many targets then grows the list once.
	n, size := 0, map[string]int{}
	for _, r := range results {
		for _, b := range r.bins {
			prev, ok := size[b.role]
			if !ok {
				if last, replayed := a.bins[b.role]; replayed {
					prev = len(last)
				} else {
					prev = len(a.st.Bins[b.role]) // where a followed audit stopped
				}
			}
			n += max(0, len(b.md.Targets)-prev)
			size[b.role] = len(b.md.Targets)
		}
	}
	a.rep.Measurements = slices.Grow(a.rep.Measurements, n)
	for k, r := range results {
		a.rep.Problems = append(a.rep.Problems, r.problems...)
		for _, b := range r.bins {
			a.measurements(r.i, batch[k].e.SnapshotVersion, b.role, b.md)
		}
	}
	for name, f := range a.files {
		if !f.keep.Load() {
			delete(a.files, name)
		}
	}
}

// loggedEntry is an entry read from the log.
type loggedEntry struct {
	i   int64
	e   *translog.Entry
	err error
}

func (a *auditor) entry(ctx context.Context, r *entryResult, e *translog.Entry) {
	snapName, snap := a.load(ctx, tuf.SNAPSHOT, e.SnapshotVersion)
	if !a.matches(r, snapName, snap, e.SnapshotSHA256) {
		return
	}
	var root *tuf.Metadata[tuf.RootType]
	for _, f := range e.Files {
		if f.Role == tuf.ROOT {
			name, rf := a.load(ctx, tuf.ROOT, f.Version)
			if a.matches(r, name, rf, f.SHA256) {
				root = rf.root
				if r.checkRoots[name] {
					a.checkRoot(ctx, r, name, rf.root)
				}
			}
		}
	}
	if root == nil {
		r.problem(snapName, "the entry names no root in force")
		return
	}
	if role := root.Signed.Roles[tuf.SNAPSHOT]; role != nil {
		a.signedBy(r, snapName, role, snap.sigKeyIDs(), func() bool {
			return a.keys.signedByThreshold(snap.env, root.Signed.Keys, role.KeyIDs, role.Threshold)
		}, func() error {
			full, _, err := snap.full(tuf.SNAPSHOT)
			if err != nil {
				return err
			}
			return root.VerifyDelegate(tuf.SNAPSHOT, full)
		})
	} else {
		r.problem(snapName, "its role is not defined at the time")
	}
	var files []translog.File
	for _, f := range e.Files {
		if f.Role != tuf.ROOT {
			files = append(files, f)
		}
	}
	// An entry may name many files (a first publish writes every bin):
	// they are checked in parallel, and reported in the entry's order.
	found := make([]entryResult, len(files))
	inParallel(len(files), runtime.GOMAXPROCS(0), func(j int) {
		found[j].i = r.i
		a.file(ctx, &found[j], files[j], root, snap.snap)
	})
	for _, fr := range found {
		r.problems = append(r.problems, fr.problems...)
		r.bins = append(r.bins, fr.bins...)
	}
}

// file checks one targets-type file an entry names against the entry's
// snapshot and root.
func (a *auditor) file(ctx context.Context, r *entryResult, f translog.File, root *tuf.Metadata[tuf.RootType], snap *lightSnapshot) {
	name, tf := a.load(ctx, f.Role, f.Version)
	if !a.matches(r, name, tf, f.SHA256) {
		return
	}
	if v, ok := snap.version(f.Role + ".json"); !ok || v != f.Version {
		r.problem(name, "the snapshot of this entry does not name this version")
	}
	a.checkDelegated(ctx, r, name, f.Role, tf, root, snap)
	if strings.HasPrefix(f.Role, "measurements-bin") {
		r.bins = append(r.bins, loggedBin{role: f.Role, md: tf.tgts})
	}
}

// inParallel calls fn for 0..n-1 on up to workers goroutines, or on this
// one when there is a single call to make.
func inParallel(n, workers int, fn func(k int)) {
	if n == 1 {
		fn(0)
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(workers, n) {
		wg.Go(func() {
			for k := next.Add(1) - 1; k < int64(n); k = next.Add(1) - 1 {
				fn(int(k))
			}
		})
	}
	wg.Wait()
}

// matches checks that a logged file exists, parses and has the logged
// SHA-256.
func (a *auditor) matches(r *entryResult, name string, f *cachedFile, sum []byte) bool {
	if f.err != nil {
		r.problem(name, f.err.Error())
		return false
	}
	if string(f.sum[:]) != string(sum) {
		r.problem(name, fmt.Sprintf("its SHA-256 is %x, the log says %x: the file was replaced after it was logged", f.sum, sum))
		return false
	}
	if f.parseErr != nil {
		r.problem(name, fmt.Sprintf("logged, but not valid metadata: %v", f.parseErr))
		return false
	}
	return true
}

// checkRoot checks a root against its own keys and its predecessor's.
func (a *auditor) checkRoot(ctx context.Context, r *entryResult, name string, root *tuf.Metadata[tuf.RootType]) {
	var sigs []string
	if root.Signed.Version == 1 {
		for _, s := range root.Signatures {
			sigs = append(sigs, s.KeyID)
		}
	} // else checked below against the keys of both roots
	verify := func() error { return root.VerifyDelegate(tuf.ROOT, root) }
	a.signedBy(r, name, root.Signed.Roles[tuf.ROOT], sigs, func() bool { return false }, verify)
	if v := root.Signed.Version; v > 1 {
		prevName, prev := a.load(ctx, tuf.ROOT, v-1)
		if err := cmpErr(prev.err, prev.parseErr); err != nil {
			r.problem(prevName, err.Error())
			return
		}
		sigs = nil
		for _, s := range root.Signatures {
			sigs = append(sigs, s.KeyID)
		}
		a.signedBy(r, name, unionRole(prev.root.Signed.Roles[tuf.ROOT], root.Signed.Roles[tuf.ROOT]), sigs, func() bool { return false }, func() error { return prev.root.VerifyDelegate(tuf.ROOT, root) })
	}
}

// checkDelegated checks targets-type metadata against the role that
// delegated to it in the same snapshot.
func (a *auditor) checkDelegated(ctx context.Context, r *entryResult, name, role string, f *cachedFile, root *tuf.Metadata[tuf.RootType], snap *lightSnapshot) {
	full := func() (*tuf.Metadata[tuf.TargetsType], error) { return f.delegations(role) }
	if role == tuf.TARGETS {
		tr := root.Signed.Roles[tuf.TARGETS]
		if tr == nil {
			r.problem(name, "its role is not defined at the time")
			return
		}
		a.signedBy(r, name, tr, f.sigKeyIDs(), func() bool {
			return a.keys.signedByThreshold(f.env, root.Signed.Keys, tr.KeyIDs, tr.Threshold)
		}, func() error {
			md, err := full()
			if err != nil {
				return err
			}
			return root.VerifyDelegate(tuf.TARGETS, md)
		})
		return
	}
	tv, ok := snap.version("targets.json")
	if !ok {
		r.problem(name, "the snapshot names no targets")
		return
	}
	tName, targetsFile := a.load(ctx, tuf.TARGETS, tv)
	targetsFile.keep.Store(true)
	targets, err := targetsFile.delegations(tuf.TARGETS)
	if err := cmpErr(targetsFile.err, err); err != nil {
		r.problem(tName, err.Error())
		return
	}
	d := targets.Signed.Delegations
	if d == nil {
		r.problem(name, "targets delegates to no role")
		return
	}
	// delegated checks f against a delegator's keys.
	delegated := func(delegator *tuf.Metadata[tuf.TargetsType], keys map[string]*tuf.Key, keyIDs []string, threshold int) {
		a.signedBy(r, name, &tuf.Role{KeyIDs: keyIDs, Threshold: threshold}, f.sigKeyIDs(), func() bool {
			return a.keys.signedByThreshold(f.env, keys, keyIDs, threshold)
		}, func() error {
			md, err := full()
			if err != nil {
				return err
			}
			return delegator.VerifyDelegate(role, md)
		})
	}
	for _, dr := range d.Roles {
		if dr.Name == role {
			delegated(targets, d.Keys, dr.KeyIDs, dr.Threshold)
			return
		}
	}
	for _, dr := range d.Roles {
		pv, ok := snap.version(dr.Name + ".json")
		if !ok {
			continue
		}
		pName, parentFile := a.load(ctx, dr.Name, pv)
		parentFile.keep.Store(true)
		parent, err := parentFile.delegations(dr.Name)
		if err := cmpErr(parentFile.err, err); err != nil {
			r.problem(pName, err.Error())
			continue
		}
		pd := parent.Signed.Delegations
		if pd != nil && pd.SuccinctRoles != nil && pd.SuccinctRoles.IsDelegatedRole(role) {
			delegated(parent, pd.Keys, pd.SuccinctRoles.KeyIDs, pd.SuccinctRoles.Threshold)
			return
		}
	}
	r.problem(name, fmt.Sprintf("no role in this snapshot delegates to %s", role))
}

// signedBy checks that a file is signed by the threshold of its role's
// keys (fast, else verify, go-tuf's check, which has the last word) and
// flags signatures by keys the role did not have.
func (a *auditor) signedBy(r *entryResult, name string, role *tuf.Role, sigs []string, fast func() bool, verify func() error) {
	if role == nil {
		r.problem(name, "its role is not defined at the time")
		return
	}
	if !fast() {
		if err := verify(); err != nil {
			r.problem(name, fmt.Sprintf("not signed by the threshold of its role's keys at the time: %v", err))
		}
	}
	for _, id := range sigs {
		if !slices.Contains(role.KeyIDs, id) {
			r.problem(name, fmt.Sprintf("signed by key %s, which its role did not have at the time", id))
		}
	}
}

// measurements lists the measurements documents a bin adds or changes:
// a merge of its sorted targets with those of the bin's last version,
// which formats and parses only what changed.
func (a *auditor) measurements(i, snapVersion int64, role string, md *lightTargets) {
	byName := func(a, b targetEntry) int { return strings.Compare(a.Name, b.Name) }
	if !slices.IsSortedFunc(md.Targets, byName) {
		slices.SortFunc(md.Targets, byName)
	}
	old, ok := a.bins[role]
	if !ok {
		old = binFromState(a.st.Bins[role])
	}
	k := 0
	for _, t := range md.Targets {
		for k < len(old) && old[k].Name < t.Name {
			k++
		}
		if k < len(old) && old[k].Name == t.Name && bytes.Equal(old[k].SHA256, t.SHA256) {
			continue
		}
		tc, err := metadata.ParseTarget(t.Name)
		if err != nil || tc.Kind != metadata.KindMeasurements {
			continue
		}
		a.rep.Measurements = append(a.rep.Measurements, PublishedMeasurement{Image: tc.Image, Platform: tc.Platform, Target: t.Name, SHA256: hex.EncodeToString(t.SHA256), Snapshot: snapVersion, LogIndex: i})
	}
	a.bins[role] = md.Targets
}

// binFromState is a bin's targets as a followed audit recorded them.
func binFromState(hashes map[string]string) []targetEntry {
	out := make([]targetEntry, 0, len(hashes))
	for name, sum := range hashes {
		b, err := hex.DecodeString(sum)
		if err != nil {
			continue // reported again as changed, which it then is
		}
		out = append(out, targetEntry{Name: name, SHA256: b})
	}
	slices.SortFunc(out, func(a, b targetEntry) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// saveBins records in the state the bins the audit replayed.
func (a *auditor) saveBins() {
	for role, targets := range a.bins {
		m := make(map[string]string, len(targets))
		for _, t := range targets {
			m[t.Name] = hex.EncodeToString(t.SHA256)
		}
		a.st.Bins[role] = m
	}
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
