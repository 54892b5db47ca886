package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/keys"
)

// RoleKeys names the keys of one role and how many must sign.
type RoleKeys struct {
	Keys      []string
	Threshold int
}

// InitConfig describes a new repository.
type InitConfig struct {
	Storage   string
	Root      RoleKeys
	Targets   RoleKeys
	Snapshot  RoleKeys
	Timestamp RoleKeys
	// Measurements signs measurements and their in-toto links (the CI
	// key); Releases signs CLI releases. Releases may be left out: the
	// repository then carries measurements only.
	Measurements RoleKeys
	Releases     RoleKeys
	// MeasurementsBins and ReleasesBins are the hash bin counts (powers
	// of two); zero means the default.
	MeasurementsBins int
	ReleasesBins     int
	Expiry           map[string]Duration
	// Log, when set, declares a transparency log in root: every snapshot
	// is then logged, and clients accept only logged snapshots.
	Log *LogSettings
}

func (rk RoleKeys) check(role string) error {
	if len(rk.Keys) == 0 {
		return fmt.Errorf("role %s has no keys: give --%s-key", role, role)
	}
	if rk.Threshold < 1 {
		return fmt.Errorf("role %s: threshold %d must be at least 1", role, rk.Threshold)
	}
	if rk.Threshold > len(rk.Keys) {
		return fmt.Errorf("role %s: threshold %d is more than its %d key(s); add keys or lower --%s-threshold", role, rk.Threshold, len(rk.Keys), role)
	}
	return nil
}

// Init creates a workspace in dir and a new repository on its storage:
// root, targets delegating measurements/* and cli/* to the measurements
// and releases roles, their hash bins, snapshot and timestamp, all at
// version 1, consistent snapshots on. Root is signed by every root key
// given and targets by every targets key; neither is recorded. The key
// references are resolved by kr (nil means keys.Files{}), which the
// workspace returned keeps as its Keys.
func Init(ctx context.Context, dir string, cfg InitConfig, kr keys.Resolver, now func() time.Time) (*Workspace, error) {
	if kr == nil {
		kr = keys.Files{}
	}
	if _, err := os.Stat(filepath.Join(dir, WorkspaceFile)); err == nil {
		return nil, fmt.Errorf("%s is already an mtuf workspace; use another directory", dir)
	}
	bins, err := cfg.check()
	if err != nil {
		return nil, err
	}
	storageURL, err := normalizeStorage(cfg.Storage)
	if err != nil {
		return nil, err
	}
	st, err := OpenStorage(ctx, storageURL)
	if err != nil {
		return nil, err
	}
	if _, err := st.Get(ctx, "metadata/1.root.json"); err == nil {
		return nil, fmt.Errorf("storage %s already holds a repository (metadata/1.root.json exists)", storageURL)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	w := &Workspace{Dir: dir, Storage: st, Keys: kr, Now: now, Config: WorkspaceConfig{
		Version: workspaceVersion,
		Storage: storageURL,
		Keys:    map[string][]string{},
		Expiry:  cfg.Expiry,
	}, signerCache: map[string][]signature.Signer{}}

	roles := cfg.roles()
	tufKeys, err := w.loadInitKeys(ctx, roles)
	if err != nil {
		return nil, err
	}
	root, rootBytes, err := w.newRoot(ctx, roles, tufKeys, cfg.Log)
	if err != nil {
		return nil, err
	}
	s := w.newState(st, root, roles, bins, tufKeys)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("workspace %s: %w", dir, err)
	}
	if err := w.save(); err != nil {
		return nil, fmt.Errorf("workspace %s: %w", dir, err)
	}
	if err := st.PutOnce(ctx, "metadata/1.root.json", rootBytes); err != nil {
		return nil, err
	}
	if err := s.commit(ctx, nil, w.signers, w.expiry); err != nil {
		return nil, err
	}
	// The offline keys were needed for this once; a workspace never
	// keeps them.
	delete(w.signerCache, tuf.ROOT)
	delete(w.signerCache, tuf.TARGETS)
	return w, nil
}

// initOrder is the order in which Init checks and loads the roles' keys:
// the top-level roles first, so that a mistake there is reported first.
var initOrder = []string{tuf.ROOT, tuf.TARGETS, tuf.SNAPSHOT, tuf.TIMESTAMP, RoleMeasurements, RoleReleases}

// roles returns the keys of each role by role name.
func (cfg InitConfig) roles() map[string]RoleKeys {
	return map[string]RoleKeys{tuf.ROOT: cfg.Root, tuf.TARGETS: cfg.Targets, tuf.SNAPSHOT: cfg.Snapshot, tuf.TIMESTAMP: cfg.Timestamp, RoleMeasurements: cfg.Measurements, RoleReleases: cfg.Releases}
}

// check checks every role's keys and threshold and the hash bin counts,
// before anything is written, and returns the bin count of each delegated
// role with the defaults filled in.
func (cfg InitConfig) check() (map[string]int, error) {
	roles := cfg.roles()
	for _, r := range initOrder {
		if r == RoleReleases && len(cfg.Releases.Keys) == 0 {
			continue
		}
		if err := roles[r].check(r); err != nil {
			return nil, err
		}
	}
	if cfg.Log != nil {
		if err := cfg.Log.check(); err != nil {
			return nil, err
		}
	}
	bins := map[string]int{RoleMeasurements: cfg.MeasurementsBins, RoleReleases: cfg.ReleasesBins}
	for _, d := range delegations {
		if bins[d.name] == 0 {
			bins[d.name] = d.defaultBins
		}
		if _, err := bitLength(bins[d.name]); err != nil {
			return nil, fmt.Errorf("--%s-bins: %w", d.name, err)
		}
	}
	return bins, nil
}

// loadInitKeys returns every role's keys as TUF sees them. It keeps the
// signers of the offline roles, root and targets, in the signer cache for
// the first signing, and records the references of the other roles' keys
// in the workspace configuration.
func (w *Workspace) loadInitKeys(ctx context.Context, roles map[string]RoleKeys) (map[string][]*tuf.Key, error) {
	tufKeys := map[string][]*tuf.Key{}
	for _, r := range initOrder {
		seen := map[string]string{}
		for _, ref := range roles[r].Keys {
			var key *tuf.Key
			if r == tuf.ROOT || r == tuf.TARGETS {
				signer, k, err := loadSigner(ctx, ref, w.Keys)
				if err != nil {
					return nil, fmt.Errorf("%s key %s: %w", r, ref, err)
				}
				w.signerCache[r] = append(w.signerCache[r], signer)
				key = k
			} else {
				pub, err := publicKey(ctx, ref, w.Keys)
				if err != nil {
					return nil, fmt.Errorf("%s key %s: %w", r, ref, err)
				}
				if key, err = keys.TUFKey(pub); err != nil {
					return nil, fmt.Errorf("%s key %s: %w", r, ref, err)
				}
				w.Config.Keys[r] = append(w.Config.Keys[r], recordRef(w.Keys, ref))
			}
			id, err := key.ID()
			if err != nil {
				return nil, fmt.Errorf("%s key %s: %w", r, ref, err)
			}
			if prev, dup := seen[id]; dup {
				return nil, fmt.Errorf("role %s: %s and %s are the same key; a threshold needs distinct keys", r, prev, ref)
			}
			seen[id] = ref
			tufKeys[r] = append(tufKeys[r], key)
		}
	}
	return tufKeys, nil
}

// newRoot returns version 1 of root, signed by every root key, and its
// bytes.
func (w *Workspace) newRoot(ctx context.Context, roles map[string]RoleKeys, tufKeys map[string][]*tuf.Key, log *LogSettings) (*tuf.Metadata[tuf.RootType], []byte, error) {
	root := tuf.Root(w.expiry(tuf.ROOT))
	root.Signed.ConsistentSnapshot = true
	for _, r := range []string{tuf.ROOT, tuf.TARGETS, tuf.SNAPSHOT, tuf.TIMESTAMP} {
		for _, k := range tufKeys[r] {
			if err := root.Signed.AddKey(k, r); err != nil {
				return nil, nil, fmt.Errorf("role %s: %w", r, err)
			}
		}
		root.Signed.Roles[r].Threshold = roles[r].Threshold
	}
	if log != nil {
		ref, err := w.declareLog(ctx, root, log)
		if err != nil {
			return nil, nil, err
		}
		w.Config.Keys[RoleLog] = []string{ref}
	}
	if _, err := signAndEncode(root, w.signerCache[tuf.ROOT]); err != nil {
		return nil, nil, fmt.Errorf("sign root: %w", err)
	}
	rootBytes, err := root.ToBytes(true)
	if err != nil {
		return nil, nil, err
	}
	return root, rootBytes, nil
}

// newState returns the first state of the repository, every role dirty:
// targets delegating to each delegated role that has keys, each of those
// delegating to its empty hash bins, snapshot and timestamp.
func (w *Workspace) newState(st Storage, root *tuf.Metadata[tuf.RootType], roles map[string]RoleKeys, bins map[string]int, tufKeys map[string][]*tuf.Key) *state {
	s := &state{st: st, root: root, fresh: true,
		snapshot:  tuf.Snapshot(w.expiry(tuf.SNAPSHOT)),
		timestamp: tuf.Timestamp(w.expiry(tuf.TIMESTAMP)),
		roles:     map[string]*tuf.Metadata[tuf.TargetsType]{},
		dirty:     map[string]bool{},
	}
	delete(s.snapshot.Signed.Meta, "targets.json")
	targets := tuf.Targets(w.expiry(tuf.TARGETS))
	targets.Signed.Delegations = &tuf.Delegations{Keys: map[string]*tuf.Key{}}
	s.roles[tuf.TARGETS], s.dirty[tuf.TARGETS] = targets, true
	for _, d := range delegations {
		if len(tufKeys[d.name]) == 0 {
			continue
		}
		var ids []string
		for _, k := range tufKeys[d.name] {
			id, _ := k.ID()
			ids = append(ids, id)
			targets.Signed.Delegations.Keys[id] = k
		}
		targets.Signed.Delegations.Roles = append(targets.Signed.Delegations.Roles, tuf.DelegatedRole{
			Name: d.name, KeyIDs: ids, Threshold: roles[d.name].Threshold, Terminating: true, Paths: d.paths,
		})
		bl, _ := bitLength(bins[d.name])
		dm := tuf.Targets(w.expiry(d.name))
		dm.Signed.Delegations = &tuf.Delegations{
			Keys:          map[string]*tuf.Key{},
			SuccinctRoles: &tuf.SuccinctRoles{KeyIDs: ids, Threshold: roles[d.name].Threshold, BitLength: bl, NamePrefix: binPrefix(d.name)},
		}
		for _, k := range tufKeys[d.name] {
			id, _ := k.ID()
			dm.Signed.Delegations.Keys[id] = k
		}
		s.roles[d.name], s.dirty[d.name] = dm, true
		for _, bin := range dm.Signed.Delegations.SuccinctRoles.GetRoles() {
			s.roles[bin], s.dirty[bin] = tuf.Targets(w.expiry(bin)), true
		}
	}
	return s
}

func loadSigner(ctx context.Context, ref string, r keys.Resolver) (signature.Signer, *tuf.Key, error) {
	priv, err := r.Private(ctx, ref)
	if err != nil {
		return nil, nil, err
	}
	signer, err := keys.Signer(priv)
	if err != nil {
		return nil, nil, err
	}
	key, err := keys.TUFKey(priv.Public())
	if err != nil {
		return nil, nil, err
	}
	return signer, key, nil
}

// signers returns the signers for a role's metadata, loading the
// workspace's keys once and checking that each is a key of the role and
// that there are enough of them for its threshold.
func (w *Workspace) signers(ctx context.Context, s *state, role string) ([]signature.Signer, error) {
	sr := signingRole(role)
	ids, threshold, err := s.keysOf(ctx, role)
	if err != nil {
		return nil, err
	}
	if cached, ok := w.signerCache[sr]; ok {
		if len(cached) < threshold {
			return nil, fmt.Errorf("role %s needs %d signatures but the workspace has %d key(s) for it", role, threshold, len(cached))
		}
		return cached, nil
	}
	refs := w.Config.Keys[sr]
	if len(refs) == 0 {
		return nil, fmt.Errorf("the workspace has no key for role %s: it is signed offline (see 'mtuf repo stage')", sr)
	}
	var out []signature.Signer
	for _, ref := range refs {
		signer, key, err := w.loadOnline(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("%s key %s: %w", sr, ref, err)
		}
		id, err := key.ID()
		if err != nil {
			return nil, fmt.Errorf("%s key %s: %w", sr, ref, err)
		}
		if !contains(ids, id) {
			return nil, fmt.Errorf("%s key %s (id %s) is not a key of role %s in this repository; check the workspace's keys", sr, ref, short(id), role)
		}
		out = append(out, signer)
	}
	if len(out) < threshold {
		return nil, fmt.Errorf("role %s needs %d signatures but the workspace has %d key(s) for it", role, threshold, len(out))
	}
	w.signerCache[sr] = out
	return out, nil
}

// loadOnline unlocks the online key ref once per workspace, however many
// roles it signs (one key commonly signs both snapshot and timestamp, and
// each unlock of a key file is a deliberately slow key derivation).
func (w *Workspace) loadOnline(ctx context.Context, ref string) (signature.Signer, *tuf.Key, error) {
	if k, ok := w.keyCache[ref]; ok {
		return k.signer, k.key, nil
	}
	signer, key, err := loadSigner(ctx, ref, w.resolver())
	if err != nil {
		return nil, nil, err
	}
	if w.keyCache == nil {
		w.keyCache = map[string]unlockedKey{}
	}
	w.keyCache[ref] = unlockedKey{signer, key}
	return signer, key, nil
}

type unlockedKey struct {
	signer signature.Signer
	key    *tuf.Key
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

// recordRef is ref as a workspace records it: with keys.Files, as absRef
// makes it; a reference of a caller's own resolver as it was given, since
// only that resolver knows what it means.
func recordRef(r keys.Resolver, ref string) string {
	if readsFiles(r) {
		return absRef(ref)
	}
	return ref
}

// readsFiles tells whether r is keys.Files, whose references are paths
// that the workspace may make absolute and check for without unlocking.
func readsFiles(r keys.Resolver) bool {
	switch r.(type) {
	case keys.Files, *keys.Files:
		return true
	}
	return false
}

// absRef makes a key file path absolute, so a workspace works from any
// directory; a key reference such as a pkcs11: URI is kept as it is.
func absRef(ref string) string {
	if strings.Contains(ref, ":") && !filepath.IsAbs(ref) {
		if _, err := os.Stat(ref); err != nil {
			return ref
		}
	}
	abs, err := filepath.Abs(ref)
	if err != nil {
		return ref
	}
	return abs
}
