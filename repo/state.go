package repo

import (
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/translog"
)

// state is the repository as the current timestamp.json describes it,
// with the targets-type metadata loaded on demand and the changes a
// publish makes to it.
type state struct {
	st        Storage
	root      *tuf.Metadata[tuf.RootType]
	timestamp *tuf.Metadata[tuf.TimestampType]
	// tsETag is timestamp.json's ETag on conditional storage: the publish
	// replaces it only if nobody else did in between.
	tsETag   string
	snapshot *tuf.Metadata[tuf.SnapshotType]
	// roles holds targets-type metadata by role name: "targets", the
	// delegated roles and the bins loaded so far.
	roles map[string]*tuf.Metadata[tuf.TargetsType]
	// dirty names the roles changed since loading.
	dirty map[string]bool
	// fresh is set for a repository being created: every file is version 1.
	fresh bool
	// presigned holds targets-type metadata signed offline (a committed
	// staged file): written as it is, at the version it carries.
	presigned map[string][]byte
	// written lists the targets-type metadata commit wrote, for the
	// transparency log's entry.
	written []translog.File
}

func getMetadata[T tuf.Roles](ctx context.Context, st Storage, name string) (*tuf.Metadata[T], error) {
	data, err := st.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	return decodeMetadata[T](name, data)
}

func decodeMetadata[T tuf.Roles](name string, data []byte) (*tuf.Metadata[T], error) {
	var md tuf.Metadata[T]
	m, err := md.FromBytes(data)
	if err != nil {
		return nil, fmt.Errorf("%s is corrupt: %w", name, err)
	}
	return m, nil
}

// loadState reads the newest root, timestamp.json, the snapshot it names
// and the top-level targets.
func loadState(ctx context.Context, st Storage) (*state, error) {
	s := &state{st: st, roles: map[string]*tuf.Metadata[tuf.TargetsType]{}, dirty: map[string]bool{}}
	for v := int64(1); ; v++ {
		r, err := getMetadata[tuf.RootType](ctx, st, fmt.Sprintf("metadata/%d.root.json", v))
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
	var tsBytes []byte
	var err error
	if cs, ok := st.(ConditionalStorage); ok {
		tsBytes, s.tsETag, err = cs.GetWithETag(ctx, "metadata/timestamp.json")
	} else {
		tsBytes, err = st.Get(ctx, "metadata/timestamp.json")
	}
	if err != nil {
		return nil, err
	}
	if s.timestamp, err = decodeMetadata[tuf.TimestampType]("metadata/timestamp.json", tsBytes); err != nil {
		return nil, err
	}
	snapMeta, ok := s.timestamp.Signed.Meta["snapshot.json"]
	if !ok {
		return nil, errors.New("metadata/timestamp.json names no snapshot.json")
	}
	snapName := fmt.Sprintf("metadata/%d.snapshot.json", snapMeta.Version)
	snapBytes, err := st.Get(ctx, snapName)
	if err != nil {
		return nil, err
	}
	if err := snapMeta.VerifyLengthHashes(snapBytes); err != nil {
		return nil, fmt.Errorf("%s does not match timestamp.json: %w", snapName, err)
	}
	if s.snapshot, err = decodeMetadata[tuf.SnapshotType](snapName, snapBytes); err != nil {
		return nil, err
	}
	if _, err := s.role(ctx, tuf.TARGETS); err != nil {
		return nil, err
	}
	return s, nil
}

// role returns the targets-type metadata of a role, loading the version
// the snapshot names.
func (s *state) role(ctx context.Context, name string) (*tuf.Metadata[tuf.TargetsType], error) {
	if md, ok := s.roles[name]; ok {
		return md, nil
	}
	meta, ok := s.snapshot.Signed.Meta[name+".json"]
	if !ok {
		return nil, fmt.Errorf("the snapshot names no metadata for role %s", name)
	}
	md, err := getMetadata[tuf.TargetsType](ctx, s.st, fmt.Sprintf("metadata/%d.%s.json", meta.Version, name))
	if err != nil {
		return nil, err
	}
	s.roles[name] = md
	return md, nil
}

// delegatedRole finds the delegated role (measurements or releases) that
// a target name belongs to.
func (s *state) delegatedRole(name string) (*tuf.DelegatedRole, error) {
	targets := s.roles[tuf.TARGETS]
	if targets.Signed.Delegations != nil {
		for i, r := range targets.Signed.Delegations.Roles {
			if ok, _ := r.IsDelegatedPath(name); ok {
				return &targets.Signed.Delegations.Roles[i], nil
			}
		}
	}
	return nil, fmt.Errorf("no role of this repository may sign target %s (the targets role delegates no path that matches it)", name)
}

// binFor returns the name of the bin that holds a target, and the role
// that delegates to it.
func (s *state) binFor(ctx context.Context, name string) (bin, role string, err error) {
	dr, err := s.delegatedRole(name)
	if err != nil {
		return "", "", err
	}
	md, err := s.role(ctx, dr.Name)
	if err != nil {
		return "", "", err
	}
	if md.Signed.Delegations == nil || md.Signed.Delegations.SuccinctRoles == nil {
		return "", "", fmt.Errorf("role %s delegates to no hash bins", dr.Name)
	}
	res := md.Signed.Delegations.SuccinctRoles.GetRolesForTarget(name)
	return res[0].Name, dr.Name, nil
}

// keysOf returns the key ids and threshold that a role's metadata must be
// signed with, as its delegating role says.
func (s *state) keysOf(ctx context.Context, role string) ([]string, int, error) {
	switch role {
	case tuf.ROOT, tuf.TARGETS, tuf.SNAPSHOT, tuf.TIMESTAMP:
		r := s.root.Signed.Roles[role]
		return r.KeyIDs, r.Threshold, nil
	case RoleLog:
		return s.logKeysOf()
	}
	targets := s.roles[tuf.TARGETS]
	if targets.Signed.Delegations != nil {
		for _, r := range targets.Signed.Delegations.Roles {
			if r.Name == role {
				return r.KeyIDs, r.Threshold, nil
			}
		}
	}
	parent := signingRole(role)
	if parent != role {
		md, err := s.role(ctx, parent)
		if err != nil {
			return nil, 0, err
		}
		if sr := md.Signed.Delegations; sr != nil && sr.SuccinctRoles != nil && sr.SuccinctRoles.IsDelegatedRole(role) {
			return sr.SuccinctRoles.KeyIDs, sr.SuccinctRoles.Threshold, nil
		}
	}
	return nil, 0, fmt.Errorf("no role %s in this repository", role)
}

// signerSet returns the signers for one role's metadata.
type signerSet func(ctx context.Context, s *state, role string) ([]signature.Signer, error)

// commit writes the changes: target files first, then every changed
// targets-type file, then the snapshot, and timestamp.json last. Until
// timestamp.json is replaced clients see the old repository; afterwards
// every file the new one needs is in place. Write-once names that are
// taken (by a publisher that lost a race, or one that crashed) are
// skipped, since no snapshot refers to them; the timestamp is the single
// point where one publish wins.
func (s *state) commit(ctx context.Context, files map[string][]byte, signers signerSet, expiry func(role string) time.Time) error {
	for _, name := range writeOrder(files) {
		if err := s.st.PutOnce(ctx, name, files[name]); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(s.presigned)) {
		md := s.roles[name]
		if err := s.st.PutOnce(ctx, fmt.Sprintf("metadata/%d.%s.json", md.Signed.Version, name), s.presigned[name]); err != nil {
			return err
		}
		s.wrote(name, md.Signed.Version, s.presigned[name])
		s.snapshot.Signed.Meta[name+".json"] = tuf.MetaFile(md.Signed.Version)
	}
	for _, name := range slices.Sorted(maps.Keys(s.dirty)) {
		md := s.roles[name]
		v := int64(1)
		if m, ok := s.snapshot.Signed.Meta[name+".json"]; ok && !s.fresh {
			v = m.Version + 1
		}
		md.Signed.Expires = expiry(name)
		ss, err := signers(ctx, s, name)
		if err != nil {
			return err
		}
		var data []byte
		if v, err = putVersioned(ctx, s.st, name, v, func(v int64) ([]byte, error) {
			md.Signed.Version = v
			data, err = signAndEncode(md, ss)
			return data, err
		}); err != nil {
			return err
		}
		s.wrote(name, v, data)
		s.snapshot.Signed.Meta[name+".json"] = tuf.MetaFile(v)
	}
	v := int64(1)
	if !s.fresh {
		v = s.snapshot.Signed.Version + 1
	}
	s.snapshot.Signed.Expires = expiry(tuf.SNAPSHOT)
	ss, err := signers(ctx, s, tuf.SNAPSHOT)
	if err != nil {
		return err
	}
	var snapBytes []byte
	if _, err := putVersioned(ctx, s.st, tuf.SNAPSHOT, v, func(v int64) ([]byte, error) {
		s.snapshot.Signed.Version = v
		snapBytes, err = signAndEncode(s.snapshot, ss)
		return snapBytes, err
	}); err != nil {
		return err
	}
	if err := s.logSnapshot(ctx, signers, snapBytes); err != nil {
		return err
	}
	sum := sha256.Sum256(snapBytes)
	s.timestamp.Signed.Meta["snapshot.json"] = &tuf.MetaFiles{
		Version: s.snapshot.Signed.Version,
		Length:  int64(len(snapBytes)),
		Hashes:  tuf.Hashes{"sha256": sum[:]},
	}
	return s.writeTimestamp(ctx, signers, expiry)
}

func (s *state) writeTimestamp(ctx context.Context, signers signerSet, expiry func(string) time.Time) error {
	if s.fresh {
		s.timestamp.Signed.Version = 1
	} else {
		s.timestamp.Signed.Version++
	}
	s.timestamp.Signed.Expires = expiry(tuf.TIMESTAMP)
	ss, err := signers(ctx, s, tuf.TIMESTAMP)
	if err != nil {
		return err
	}
	tsBytes, err := signAndEncode(s.timestamp, ss)
	if err != nil {
		return fmt.Errorf("sign timestamp: %w", err)
	}
	if cs, ok := s.st.(ConditionalStorage); ok {
		return cs.ReplaceIf(ctx, "metadata/timestamp.json", tsBytes, s.tsETag)
	}
	return s.st.Replace(ctx, "metadata/timestamp.json", tsBytes)
}

// maxVersionSkips bounds how many taken write-once names a publish steps
// over; more than a few means something else is writing to the repository.
const maxVersionSkips = 16

// putVersioned writes metadata/V.role.json at the first free version from
// v on, and returns the version written.
func putVersioned(ctx context.Context, st Storage, role string, v int64, encode func(v int64) ([]byte, error)) (int64, error) {
	for range maxVersionSkips {
		data, err := encode(v)
		if err != nil {
			return 0, fmt.Errorf("sign %s: %w", role, err)
		}
		err = st.PutOnce(ctx, fmt.Sprintf("metadata/%d.%s.json", v, role), data)
		if err == nil {
			return v, nil
		}
		if !errors.Is(err, ErrExists) {
			return 0, err
		}
		v++
	}
	return 0, fmt.Errorf("metadata for %s: %d versions past the snapshot's are already taken; is another tool writing to this repository?", role, maxVersionSkips)
}

// writeOrder is the order in which a publish writes its target files:
// sorted by the target each holds (its name without the hash prefix), so
// that the order is the same on every run, whatever the content, and a
// crash or a failed write stops a publish at a point that can be reasoned
// about and replayed.
func writeOrder(files map[string][]byte) []string {
	return slices.SortedFunc(maps.Keys(files), func(a, b string) int {
		return cmp.Or(strings.Compare(unhashed(a), unhashed(b)), strings.Compare(a, b))
	})
}

// unhashed turns targets/DIR/SHA256.NAME (see targetFileName) back into
// targets/DIR/NAME.
func unhashed(file string) string {
	dir, base := path.Split(file)
	if _, name, ok := strings.Cut(base, "."); ok {
		return dir + name
	}
	return file
}

func signAndEncode[T tuf.Roles](md *tuf.Metadata[T], signers []signature.Signer) ([]byte, error) {
	md.ClearSignatures()
	for _, s := range signers {
		if _, err := md.Sign(s); err != nil {
			return nil, err
		}
	}
	// Compact JSON: these files are fetched by every client, and bins
	// and the snapshot are the bulk of what a client downloads.
	return md.ToBytes(false)
}
