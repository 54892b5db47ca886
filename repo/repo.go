package repo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/keys"
)

// The top-level roles. Snapshot and timestamp are online roles: their keys
// live in the workspace so that publish and refresh can sign unattended.
var onlineRoles = []string{tuf.TARGETS, tuf.SNAPSHOT, tuf.TIMESTAMP}

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
	Expiry    map[string]Duration
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
// version 1 of root, targets, snapshot and timestamp, consistent snapshots
// on. The root is signed by every root key given.
func Init(ctx context.Context, dir string, cfg InitConfig, pw keys.PasswordSource, now func() time.Time) (*Workspace, error) {
	if _, err := os.Stat(filepath.Join(dir, WorkspaceFile)); err == nil {
		return nil, fmt.Errorf("%s is already an mtuf workspace; use another directory", dir)
	}
	roles := map[string]RoleKeys{tuf.ROOT: cfg.Root, tuf.TARGETS: cfg.Targets, tuf.SNAPSHOT: cfg.Snapshot, tuf.TIMESTAMP: cfg.Timestamp}
	for _, r := range []string{tuf.ROOT, tuf.TARGETS, tuf.SNAPSHOT, tuf.TIMESTAMP} {
		if err := roles[r].check(r); err != nil {
			return nil, err
		}
	}
	storageURL, err := normalizeStorage(cfg.Storage)
	if err != nil {
		return nil, err
	}
	st, err := OpenStorage(storageURL)
	if err != nil {
		return nil, err
	}
	if _, err := st.Get(ctx, "metadata/1.root.json"); err == nil {
		return nil, fmt.Errorf("storage %s already holds a repository (metadata/1.root.json exists)", storageURL)
	} else if !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("workspace %s: %w", dir, err)
	}
	w := &Workspace{Dir: dir, Storage: st, Password: pw, Now: now, Config: WorkspaceConfig{
		Storage: storageURL,
		Keys:    map[string][]string{},
		Expiry:  cfg.Expiry,
	}}

	root := tuf.Root(w.expiry(tuf.ROOT))
	root.Signed.ConsistentSnapshot = true
	var rootSigners []signature.Signer
	for _, r := range []string{tuf.ROOT, tuf.TARGETS, tuf.SNAPSHOT, tuf.TIMESTAMP} {
		rk := roles[r]
		seen := map[string]string{}
		for _, ref := range rk.Keys {
			var key *tuf.Key
			if r == tuf.ROOT {
				signer, k, err := loadSigner(ctx, ref, pw)
				if err != nil {
					return nil, fmt.Errorf("root key %s: %w", ref, err)
				}
				rootSigners = append(rootSigners, signer)
				key = k
			} else {
				pub, err := publicKey(ctx, ref, pw)
				if err != nil {
					return nil, fmt.Errorf("%s key %s: %w", r, ref, err)
				}
				if key, err = keys.TUFKey(pub); err != nil {
					return nil, fmt.Errorf("%s key %s: %w", r, ref, err)
				}
				abs, err := filepath.Abs(ref)
				if err != nil {
					return nil, err
				}
				w.Config.Keys[r] = append(w.Config.Keys[r], abs)
			}
			id, err := key.ID()
			if err != nil {
				return nil, fmt.Errorf("%s key %s: %w", r, ref, err)
			}
			if prev, dup := seen[id]; dup {
				return nil, fmt.Errorf("role %s: %s and %s are the same key; a threshold needs distinct keys", r, prev, ref)
			}
			seen[id] = ref
			if err := root.Signed.AddKey(key, r); err != nil {
				return nil, fmt.Errorf("role %s: %w", r, err)
			}
		}
		root.Signed.Roles[r].Threshold = rk.Threshold
	}
	for _, s := range rootSigners {
		if _, err := root.Sign(s); err != nil {
			return nil, fmt.Errorf("sign root: %w", err)
		}
	}

	targets := tuf.Targets(w.expiry(tuf.TARGETS))
	snapshot := tuf.Snapshot(w.expiry(tuf.SNAPSHOT))
	timestamp := tuf.Timestamp(w.expiry(tuf.TIMESTAMP))
	s := &state{root: root, targets: targets, snapshot: snapshot, timestamp: timestamp}
	signers, err := w.onlineSigners(ctx, s)
	if err != nil {
		return nil, err
	}
	rootBytes, err := root.ToBytes(true)
	if err != nil {
		return nil, err
	}
	if err := w.save(); err != nil {
		return nil, fmt.Errorf("workspace %s: %w", dir, err)
	}
	if err := st.PutOnce(ctx, "metadata/1.root.json", rootBytes); err != nil {
		return nil, err
	}
	if err := w.commit(ctx, s, signers, nil); err != nil {
		return nil, err
	}
	return w, nil
}

func loadSigner(ctx context.Context, ref string, pw keys.PasswordSource) (signature.Signer, *tuf.Key, error) {
	priv, err := keys.LoadPrivate(ctx, ref, pw)
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

// state is the repository as the current timestamp.json describes it.
type state struct {
	root      *tuf.Metadata[tuf.RootType]
	targets   *tuf.Metadata[tuf.TargetsType]
	snapshot  *tuf.Metadata[tuf.SnapshotType]
	timestamp *tuf.Metadata[tuf.TimestampType]
}

func getJSON[T tuf.Roles](ctx context.Context, st Storage, name string) (*tuf.Metadata[T], error) {
	data, err := st.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	var md tuf.Metadata[T]
	m, err := md.FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return m, nil
}

// loadState reads the newest root and the metadata that timestamp.json
// points to.
func loadState(ctx context.Context, st Storage) (*state, error) {
	s := &state{}
	for v := int64(1); ; v++ {
		r, err := getJSON[tuf.RootType](ctx, st, fmt.Sprintf("metadata/%d.root.json", v))
		if errors.Is(err, ErrNotFound) {
			if v == 1 {
				return nil, errors.New("no repository on this storage (metadata/1.root.json is missing): run 'mtuf repo init'")
			}
			break
		}
		if err != nil {
			return nil, err
		}
		s.root = r
	}
	var err error
	if s.timestamp, err = getJSON[tuf.TimestampType](ctx, st, "metadata/timestamp.json"); err != nil {
		return nil, err
	}
	snapMeta, ok := s.timestamp.Signed.Meta["snapshot.json"]
	if !ok {
		return nil, errors.New("metadata/timestamp.json names no snapshot.json")
	}
	if s.snapshot, err = getJSON[tuf.SnapshotType](ctx, st, fmt.Sprintf("metadata/%d.snapshot.json", snapMeta.Version)); err != nil {
		return nil, err
	}
	tMeta, ok := s.snapshot.Signed.Meta["targets.json"]
	if !ok {
		return nil, fmt.Errorf("metadata/%d.snapshot.json names no targets.json", snapMeta.Version)
	}
	if s.targets, err = getJSON[tuf.TargetsType](ctx, st, fmt.Sprintf("metadata/%d.targets.json", tMeta.Version)); err != nil {
		return nil, err
	}
	return s, nil
}

// onlineSigners loads the workspace's keys for targets, snapshot and
// timestamp and checks that each is a key of its role in root and that
// enough of them are there to meet the role's threshold.
func (w *Workspace) onlineSigners(ctx context.Context, s *state) (map[string][]signature.Signer, error) {
	out := map[string][]signature.Signer{}
	for _, r := range onlineRoles {
		role := s.root.Signed.Roles[r]
		for _, ref := range w.Config.Keys[r] {
			signer, key, err := loadSigner(ctx, ref, w.Password)
			if err != nil {
				return nil, fmt.Errorf("%s key %s: %w", r, ref, err)
			}
			id, err := key.ID()
			if err != nil {
				return nil, fmt.Errorf("%s key %s: %w", r, ref, err)
			}
			if !contains(role.KeyIDs, id) {
				return nil, fmt.Errorf("%s key %s (id %s) is not a %s key of this repository's root; check the workspace's keys", r, ref, short(id), r)
			}
			out[r] = append(out[r], signer)
		}
		if len(out[r]) < role.Threshold {
			return nil, fmt.Errorf("role %s needs %d signatures but the workspace has %d key(s) for it", r, role.Threshold, len(out[r]))
		}
	}
	return out, nil
}

// commit signs targets, snapshot and timestamp at the versions the caller
// set, and writes target files first, then targets, then snapshot, and
// timestamp.json last: until timestamp.json is replaced, clients see the
// old repository, and afterwards every file the new one needs is there.
func (w *Workspace) commit(ctx context.Context, s *state, signers map[string][]signature.Signer, files map[string][]byte) error {
	for name, data := range files {
		if err := w.Storage.PutOnce(ctx, name, data); err != nil {
			return err
		}
	}
	s.targets.Signed.Expires = w.expiry(tuf.TARGETS)
	targetsBytes, err := signAndEncode(s.targets, signers[tuf.TARGETS])
	if err != nil {
		return fmt.Errorf("sign targets: %w", err)
	}
	s.snapshot.Signed.Meta["targets.json"] = tuf.MetaFile(s.targets.Signed.Version)
	s.snapshot.Signed.Expires = w.expiry(tuf.SNAPSHOT)
	snapBytes, err := signAndEncode(s.snapshot, signers[tuf.SNAPSHOT])
	if err != nil {
		return fmt.Errorf("sign snapshot: %w", err)
	}
	sum := sha256.Sum256(snapBytes)
	s.timestamp.Signed.Meta["snapshot.json"] = &tuf.MetaFiles{
		Version: s.snapshot.Signed.Version,
		Length:  int64(len(snapBytes)),
		Hashes:  tuf.Hashes{"sha256": sum[:]},
	}
	s.timestamp.Signed.Expires = w.expiry(tuf.TIMESTAMP)
	tsBytes, err := signAndEncode(s.timestamp, signers[tuf.TIMESTAMP])
	if err != nil {
		return fmt.Errorf("sign timestamp: %w", err)
	}
	if err := w.Storage.PutOnce(ctx, fmt.Sprintf("metadata/%d.targets.json", s.targets.Signed.Version), targetsBytes); err != nil {
		return err
	}
	if err := w.Storage.PutOnce(ctx, fmt.Sprintf("metadata/%d.snapshot.json", s.snapshot.Signed.Version), snapBytes); err != nil {
		return err
	}
	return w.Storage.Replace(ctx, "metadata/timestamp.json", tsBytes)
}

func signAndEncode[T tuf.Roles](md *tuf.Metadata[T], signers []signature.Signer) ([]byte, error) {
	md.ClearSignatures()
	for _, s := range signers {
		if _, err := md.Sign(s); err != nil {
			return nil, err
		}
	}
	return md.ToBytes(true)
}

// targetFileName is where a target's bytes are stored: hash-prefixed, as
// consistent snapshots require, so a target file is never overwritten.
func targetFileName(name string, data []byte) string {
	sum := sha256.Sum256(data)
	dir, base := path.Split(name)
	return "targets/" + dir + hex.EncodeToString(sum[:]) + "." + base
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

// customJSON encodes custom target metadata.
func customJSON(v any) (*json.RawMessage, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	raw := json.RawMessage(b)
	return &raw, nil
}
