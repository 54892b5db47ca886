package repo

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/keys"
)

// A staged file is the proposed next version of one role's metadata. It is
// written unsigned by 'mtuf repo stage', carried to the machines that hold
// the keys, signed there one key at a time by 'mtuf repo sign' (which
// needs nothing but the file and the key), and published by 'mtuf repo
// commit' once every threshold is met.
//
// The file names the key sets whose thresholds apply (for a new root, the
// current root's root keys and the new root's), so an offline machine can
// tell whether its key belongs. Commit never trusts that list: it checks
// the signatures against the repository's own trusted metadata.

// stagedFormat identifies the staged file format.
const stagedFormat = "mtuf-staged-v1"

// Staged is a staged file.
type Staged struct {
	Format string `json:"format"`
	Role   string `json:"role"`
	// Metadata is the proposed metadata with the signatures so far.
	Metadata json.RawMessage `json:"metadata"`
	// Authorities are the key sets that must each meet their threshold.
	Authorities []Authority `json:"authorities"`
	// AddWorkspaceKeys and RemoveWorkspaceKeys change the keys the
	// workspace signs online roles with, when the commit publishes.
	AddWorkspaceKeys    map[string][]string `json:"addWorkspaceKeys,omitempty"`
	RemoveWorkspaceKeys map[string][]string `json:"removeWorkspaceKeys,omitempty"`

	// path is the file ReadStaged read, for messages that say what to sign.
	path string
}

// Authority is a set of keys of which Threshold must sign.
type Authority struct {
	Name      string              `json:"name"`
	Keys      map[string]*tuf.Key `json:"keys"`
	Threshold int                 `json:"threshold"`
}

// KeyChange is one change of a role's keys in a staged root or targets.
type KeyChange struct {
	// Role whose keys change: for a staged root, root, targets, snapshot
	// or timestamp; for a staged targets, a delegated role.
	Role string
	// Add names key files (public, or private for an online role whose
	// workspace should sign with it); Remove names key files or key ids.
	Add, Remove []string
	// Threshold, when not zero, is the role's new threshold.
	Threshold int
}

// StageRequest describes the next version of a role.
type StageRequest struct {
	Role    string
	Changes []KeyChange
	// Expires, when not zero, is the new metadata's validity period.
	Expires time.Duration
	// Log, for a staged root, declares the transparency log anew: a new
	// log key, witnesses or quorum.
	Log *LogSettings
}

// StagedDir is where a workspace keeps staged files.
const StagedDir = "staged"

// StagedPath is the staged file of a role in the workspace.
func (w *Workspace) StagedPath(role string) string {
	return filepath.Join(w.Dir, StagedDir, role+".json")
}

// Stage writes the proposed next version of a role, unsigned, to the
// workspace's staged directory and returns its path.
func (w *Workspace) Stage(ctx context.Context, req StageRequest) (string, error) {
	s, err := loadState(ctx, w.Storage)
	if err != nil {
		return "", err
	}
	st := &Staged{Format: stagedFormat, Role: req.Role, AddWorkspaceKeys: map[string][]string{}, RemoveWorkspaceKeys: map[string][]string{}}
	period := w.period(req.Role)
	if req.Expires > 0 {
		period = req.Expires
	}
	expires := w.now().Add(period).Truncate(time.Second)
	var md any
	switch req.Role {
	case tuf.ROOT:
		md, err = w.stageRoot(ctx, s, req, expires, st)
	case tuf.TARGETS:
		md, err = w.stageTargets(ctx, s, req, expires, st)
	default:
		md, err = stageDelegated(ctx, s, req, expires, st)
	}
	if err != nil {
		return "", err
	}
	raw, err := json.Marshal(md)
	if err != nil {
		return "", err
	}
	st.Metadata = raw
	p := w.StagedPath(req.Role)
	if _, err := os.Stat(p); err == nil {
		return "", fmt.Errorf("%s is already staged (%s): commit it, or remove the file to start over", req.Role, p)
	}
	return p, writeStaged(p, st)
}

// stageRoot returns the next root with the key changes applied; both the
// current root's root keys and the new root's must sign it.
func (w *Workspace) stageRoot(ctx context.Context, s *state, req StageRequest, expires time.Time, st *Staged) (*tuf.Metadata[tuf.RootType], error) {
	next, err := copyMetadata(s.root)
	if err != nil {
		return nil, err
	}
	next.Signed.Version++
	next.Signed.Expires = expires
	for _, c := range req.Changes {
		if _, ok := next.Signed.Roles[c.Role]; !ok {
			return nil, fmt.Errorf("a root has no role %q: change root, targets, snapshot or timestamp keys", c.Role)
		}
		if err := w.applyRootChange(ctx, next, c, st); err != nil {
			return nil, err
		}
	}
	if req.Log != nil {
		if err := w.stageLog(ctx, s, next, req.Log, st); err != nil {
			return nil, err
		}
	}
	st.Authorities = []Authority{
		authorityOf(fmt.Sprintf("root keys of root v%d (current)", s.root.Signed.Version), s.root.Signed.Keys, s.root.Signed.Roles[tuf.ROOT]),
		authorityOf(fmt.Sprintf("root keys of root v%d (new)", next.Signed.Version), next.Signed.Keys, next.Signed.Roles[tuf.ROOT]),
	}
	return next, nil
}

// stageTargets returns the next top-level targets with the changes to
// its delegations' keys applied.
func (w *Workspace) stageTargets(ctx context.Context, s *state, req StageRequest, expires time.Time, st *Staged) (*tuf.Metadata[tuf.TargetsType], error) {
	next, err := copyMetadata(s.roles[tuf.TARGETS])
	if err != nil {
		return nil, err
	}
	next.Signed.Version++
	next.Signed.Expires = expires
	for _, c := range req.Changes {
		if err := w.applyDelegationChange(ctx, next, c, st); err != nil {
			return nil, err
		}
	}
	// With a new root staged too, the targets keys it names sign;
	// both are committed together.
	root := s.root
	if sr, err := ReadStaged(w.StagedPath(tuf.ROOT)); err == nil {
		if r, err := tuf.Root().FromBytes(sr.Metadata); err == nil {
			root = r
		}
	}
	st.Authorities = []Authority{authorityOf(fmt.Sprintf("targets keys of root v%d", root.Signed.Version), root.Signed.Keys, root.Signed.Roles[tuf.TARGETS])}
	return next, nil
}

// stageDelegated returns the next version of a delegated role, the same
// content with a new expiry: its keys are changed by staging targets.
func stageDelegated(ctx context.Context, s *state, req StageRequest, expires time.Time, st *Staged) (*tuf.Metadata[tuf.TargetsType], error) {
	if _, ok := delegationFor(req.Role); !ok {
		return nil, fmt.Errorf("cannot stage %q: stage root, targets, %s or %s", req.Role, RoleMeasurements, RoleReleases)
	}
	if len(req.Changes) > 0 {
		return nil, fmt.Errorf("the keys of role %s are set by the targets role: stage targets with --add-key %s:FILE", req.Role, req.Role)
	}
	cur, err := s.role(ctx, req.Role)
	if err != nil {
		return nil, err
	}
	next, err := copyMetadata(cur)
	if err != nil {
		return nil, err
	}
	next.Signed.Version++
	next.Signed.Expires = expires
	ids, threshold, err := s.keysOf(ctx, req.Role)
	if err != nil {
		return nil, err
	}
	st.Authorities = []Authority{authorityOf(fmt.Sprintf("%s keys of targets v%d", req.Role, s.roles[tuf.TARGETS].Signed.Version), s.roles[tuf.TARGETS].Signed.Delegations.Keys, &tuf.Role{KeyIDs: ids, Threshold: threshold})}
	return next, nil
}

func copyMetadata[T tuf.Roles](md *tuf.Metadata[T]) (*tuf.Metadata[T], error) {
	data, err := md.ToBytes(false)
	if err != nil {
		return nil, err
	}
	var out tuf.Metadata[T]
	cp, err := out.FromBytes(data)
	if err != nil {
		return nil, err
	}
	cp.ClearSignatures()
	return cp, nil
}

func authorityOf(name string, all map[string]*tuf.Key, role *tuf.Role) Authority {
	a := Authority{Name: name, Keys: map[string]*tuf.Key{}, Threshold: role.Threshold}
	for _, id := range role.KeyIDs {
		a.Keys[id] = all[id]
	}
	return a
}

// isOnline tells whether a workspace signs the role's metadata itself.
func isOnline(role string) bool {
	for _, r := range onlineRoles {
		if r == role {
			return true
		}
	}
	return false
}

// changeKey loads a key to add: a public key, or for an online role a
// private key that the workspace will sign with.
func (w *Workspace) changeKey(ctx context.Context, role, ref string, st *Staged) (*tuf.Key, error) {
	r := w.resolver()
	pub, err := publicKey(ctx, ref, r)
	if err != nil {
		return nil, fmt.Errorf("%s key %s: %w", role, ref, err)
	}
	if isOnline(role) {
		priv := ref
		if readsFiles(r) {
			// Checked without unlocking the key: the commit will.
			if strings.HasSuffix(ref, ".pub") {
				priv = strings.TrimSuffix(ref, ".pub") + ".key"
			}
			if _, err := os.Stat(priv); err != nil && !strings.HasPrefix(priv, "pkcs11:") && !strings.HasPrefix(priv, "awskms://") {
				return nil, fmt.Errorf("role %s is signed online, so the workspace needs its private key: %s not found", role, priv)
			}
			priv = absRef(priv)
		} else if _, err := r.Private(ctx, priv); err != nil {
			return nil, fmt.Errorf("role %s is signed online, so the workspace needs its private key: %w", role, err)
		}
		st.AddWorkspaceKeys[role] = append(st.AddWorkspaceKeys[role], priv)
	}
	return keys.TUFKey(pub)
}

// removeKeyID resolves a key to remove, given as a key file or a key id
// (or its first 8 or more characters), among ids.
func (w *Workspace) removeKeyID(ctx context.Context, role, ref string, ids []string) (string, error) {
	if pub, err := w.resolver().Public(ctx, ref); err == nil {
		k, err := keys.TUFKey(pub)
		if err != nil {
			return "", err
		}
		id, _ := k.ID()
		if contains(ids, id) {
			return id, nil
		}
		return "", fmt.Errorf("key %s (id %s) is not a key of role %s", ref, short(id), role)
	}
	var match []string
	for _, id := range ids {
		if len(ref) >= 8 && strings.HasPrefix(id, ref) {
			match = append(match, id)
		}
	}
	if len(match) != 1 {
		return "", fmt.Errorf("%q names no single key of role %s (give a key file or at least 8 characters of a key id; its keys are %s)", ref, role, shortList(ids))
	}
	return match[0], nil
}

func shortList(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = short(id)
	}
	return strings.Join(out, ", ")
}

// keyDER is a key's public key in PKIX form, to tell whether two key
// records are one key.
func keyDER(k *tuf.Key) string {
	pub, err := k.ToPublicKey()
	if err != nil {
		return ""
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return ""
	}
	return string(der)
}

// applyKeyChange changes one role's key ids and threshold, refusing a
// key that is already there under any id: two records of one key would
// let one signature count twice toward a threshold.
func (w *Workspace) applyKeyChange(ctx context.Context, c KeyChange, ids []string, threshold int, keyOf func(string) *tuf.Key, st *Staged) ([]string, int, []*tuf.Key, error) {
	var added []*tuf.Key
	for _, ref := range c.Add {
		k, err := w.changeKey(ctx, c.Role, ref, st)
		if err != nil {
			return nil, 0, nil, err
		}
		id, _ := k.ID()
		for _, old := range ids {
			if ok := keyOf(old); ok != nil && keyDER(ok) == keyDER(k) {
				return nil, 0, nil, fmt.Errorf("key %s is already a key of role %s (id %s)", ref, c.Role, short(old))
			}
		}
		ids = append(ids, id)
		added = append(added, k)
	}
	for _, ref := range c.Remove {
		id, err := w.removeKeyID(ctx, c.Role, ref, ids)
		if err != nil {
			return nil, 0, nil, err
		}
		out := ids[:0:0]
		for _, v := range ids {
			if v != id {
				out = append(out, v)
			}
		}
		ids = out
		if isOnline(c.Role) {
			st.RemoveWorkspaceKeys[c.Role] = append(st.RemoveWorkspaceKeys[c.Role], id)
		}
	}
	if c.Threshold != 0 {
		threshold = c.Threshold
	}
	if threshold < 1 {
		return nil, 0, nil, fmt.Errorf("role %s: threshold %d must be at least 1", c.Role, threshold)
	}
	if threshold > len(ids) {
		return nil, 0, nil, fmt.Errorf("role %s: threshold %d is more than its %d key(s)", c.Role, threshold, len(ids))
	}
	return ids, threshold, added, nil
}

func (w *Workspace) applyRootChange(ctx context.Context, root *tuf.Metadata[tuf.RootType], c KeyChange, st *Staged) error {
	role := root.Signed.Roles[c.Role]
	ids, threshold, added, err := w.applyKeyChange(ctx, c, append([]string(nil), role.KeyIDs...), role.Threshold, func(id string) *tuf.Key { return root.Signed.Keys[id] }, st)
	if err != nil {
		return err
	}
	for _, k := range added {
		id, _ := k.ID()
		root.Signed.Keys[id] = k
	}
	role.KeyIDs, role.Threshold = ids, threshold
	pruneKeys(root.Signed.Keys, func(yield func([]string) bool) {
		for _, r := range root.Signed.Roles {
			if !yield(r.KeyIDs) {
				return
			}
		}
	})
	return nil
}

func (w *Workspace) applyDelegationChange(ctx context.Context, targets *tuf.Metadata[tuf.TargetsType], c KeyChange, st *Staged) error {
	d := targets.Signed.Delegations
	var role *tuf.DelegatedRole
	if d != nil {
		for i := range d.Roles {
			if d.Roles[i].Name == c.Role {
				role = &d.Roles[i]
			}
		}
	}
	if role == nil {
		return fmt.Errorf("targets delegates to no role %q (its roles: %s, %s); root, targets, snapshot and timestamp keys are changed by staging root", c.Role, RoleMeasurements, RoleReleases)
	}
	ids, threshold, added, err := w.applyKeyChange(ctx, c, append([]string(nil), role.KeyIDs...), role.Threshold, func(id string) *tuf.Key { return d.Keys[id] }, st)
	if err != nil {
		return err
	}
	for _, k := range added {
		id, _ := k.ID()
		d.Keys[id] = k
	}
	role.KeyIDs, role.Threshold = ids, threshold
	pruneKeys(d.Keys, func(yield func([]string) bool) {
		for _, r := range d.Roles {
			if !yield(r.KeyIDs) {
				return
			}
		}
	})
	return nil
}

// pruneKeys drops key records that no role uses any more.
func pruneKeys(all map[string]*tuf.Key, roles func(func([]string) bool)) {
	used := map[string]bool{}
	roles(func(ids []string) bool {
		for _, id := range ids {
			used[id] = true
		}
		return true
	})
	for id := range all {
		if !used[id] {
			delete(all, id)
		}
	}
}

func writeStaged(path string, st *Staged) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	fs, err := NewFileStorage(filepath.Dir(path))
	if err != nil {
		return err
	}
	return fs.Replace(context.Background(), filepath.Base(path), append(data, '\n'))
}

// ReadStaged reads and checks a staged file: every signature it carries
// must still verify, so a file edited after signing is refused.
func ReadStaged(path string) (*Staged, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("staged file: %w", err)
	}
	var st Staged
	if err := json.Unmarshal(data, &st); err != nil || st.Format != stagedFormat {
		return nil, fmt.Errorf("%s is not an mtuf staged file (made by 'mtuf repo stage')", path)
	}
	sigs, err := st.signatures()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, sig := range sigs {
		if !st.signedBy(sig.KeyID) {
			return nil, fmt.Errorf("%s: the signature by key %s does not verify: the file was changed after it was signed; stage it again", path, short(sig.KeyID))
		}
	}
	st.path = path
	return &st, nil
}

func (st *Staged) signatures() ([]tuf.Signature, error) {
	var probe struct {
		Signatures []tuf.Signature `json:"signatures"`
		Signed     struct {
			Type    string `json:"_type"`
			Version int64  `json:"version"`
		} `json:"signed"`
	}
	if err := json.Unmarshal(st.Metadata, &probe); err != nil {
		return nil, fmt.Errorf("staged metadata is corrupt: %w", err)
	}
	want := tuf.TARGETS
	if st.Role == tuf.ROOT {
		want = tuf.ROOT
	}
	if probe.Signed.Type != want {
		return nil, fmt.Errorf("staged %s holds %q metadata", st.Role, probe.Signed.Type)
	}
	return probe.Signatures, nil
}

// Version is the version the staged metadata proposes.
func (st *Staged) Version() int64 {
	var probe struct {
		Signed struct {
			Version int64 `json:"version"`
		} `json:"signed"`
	}
	json.Unmarshal(st.Metadata, &probe)
	return probe.Signed.Version
}

// key finds a key record among the authorities.
func (st *Staged) key(id string) *tuf.Key {
	for _, a := range st.Authorities {
		if k, ok := a.Keys[id]; ok {
			return k
		}
	}
	return nil
}

// signedBy tells whether the metadata carries a valid signature by the
// key id, which must be one of the authorities' keys.
func (st *Staged) signedBy(id string) bool {
	k := st.key(id)
	if k == nil {
		return false
	}
	return verifyWith(st.Role, st.Metadata, map[string]*tuf.Key{id: k}, []string{id}, 1) == nil
}

// verifyWith checks that metadata is signed by threshold of ids, with
// go-tuf's own check (which counts one public key once, whatever ids it
// is listed under), through a throwaway delegator.
func verifyWith(role string, data []byte, keys map[string]*tuf.Key, ids []string, threshold int) error {
	delegator := tuf.Root()
	delegator.Signed.Keys = keys
	delegator.Signed.Roles = map[string]*tuf.Role{"check": {KeyIDs: ids, Threshold: threshold}}
	if role == tuf.ROOT {
		md, err := tuf.Root().FromBytes(data)
		if err != nil {
			return err
		}
		return delegator.VerifyDelegate("check", md)
	}
	md, err := tuf.Targets().FromBytes(data)
	if err != nil {
		return err
	}
	return delegator.VerifyDelegate("check", md)
}

// Progress is how far one authority's threshold is.
type Progress struct {
	Authority string   `json:"authority"`
	Threshold int      `json:"threshold"`
	SignedBy  []string `json:"signedBy"`
	MaySign   []string `json:"maySign"`
	Met       bool     `json:"met"`
}

// Progress reports, for each authority, who signed and who still may.
func (st *Staged) Progress() []Progress {
	sigs, _ := st.signatures()
	signed := map[string]bool{}
	for _, s := range sigs {
		if st.signedBy(s.KeyID) {
			signed[s.KeyID] = true
		}
	}
	var out []Progress
	for _, a := range st.Authorities {
		p := Progress{Authority: a.Name, Threshold: a.Threshold, SignedBy: []string{}, MaySign: []string{}}
		var ids []string
		for id := range a.Keys {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			if signed[id] {
				p.SignedBy = append(p.SignedBy, id)
			} else {
				p.MaySign = append(p.MaySign, id)
			}
		}
		p.Met = verifyWith(st.Role, st.Metadata, a.Keys, ids, a.Threshold) == nil
		out = append(out, p)
	}
	return out
}

// Sign adds one signature to a staged file with the key that r resolves
// ref to (nil means keys.Files{}), and writes the file back. It needs
// nothing but the file and the key.
func Sign(ctx context.Context, path, ref string, r keys.Resolver) (*Staged, string, error) {
	st, err := ReadStaged(path)
	if err != nil {
		return nil, "", err
	}
	if r == nil {
		r = keys.Files{}
	}
	priv, err := r.Private(ctx, ref)
	if err != nil {
		return nil, "", err
	}
	k, err := keys.TUFKey(priv.Public())
	if err != nil {
		return nil, "", err
	}
	id, _ := k.ID()
	if st.key(id) == nil {
		var names []string
		for _, a := range st.Authorities {
			names = append(names, a.Name)
		}
		return nil, "", fmt.Errorf("key %s (id %s) may not sign the staged %s v%d: it is not one of the %s", ref, short(id), st.Role, st.Version(), strings.Join(names, " or "))
	}
	signer, err := keys.Signer(priv)
	if err != nil {
		return nil, "", err
	}
	raw, err := signStaged(st.Role, st.Metadata, signer, id)
	if err != nil {
		return nil, "", err
	}
	st.Metadata = raw
	if err := writeStaged(path, st); err != nil {
		return nil, "", err
	}
	return st, id, nil
}

func signStaged(role string, data []byte, signer signature.Signer, id string) ([]byte, error) {
	if role == tuf.ROOT {
		md, err := tuf.Root().FromBytes(data)
		if err != nil {
			return nil, err
		}
		return addSignature(md, signer, id)
	}
	md, err := tuf.Targets().FromBytes(data)
	if err != nil {
		return nil, err
	}
	return addSignature(md, signer, id)
}

func addSignature[T tuf.Roles](md *tuf.Metadata[T], signer signature.Signer, id string) ([]byte, error) {
	for _, s := range md.Signatures {
		if s.KeyID == id {
			return nil, fmt.Errorf("key %s has signed this file already", short(id))
		}
	}
	if _, err := md.Sign(signer); err != nil {
		return nil, err
	}
	return json.Marshal(md)
}

// Staged lists the workspace's staged files by role.
func (w *Workspace) Staged() (map[string]*Staged, error) {
	entries, err := os.ReadDir(filepath.Join(w.Dir, StagedDir))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]*Staged{}, nil
	}
	if err != nil {
		return nil, err
	}
	out := map[string]*Staged{}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		st, err := ReadStaged(filepath.Join(w.Dir, StagedDir, e.Name()))
		if err != nil {
			return nil, err
		}
		out[st.Role] = st
	}
	return out, nil
}
