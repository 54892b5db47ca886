package repo

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
)

// ErrUntrustedSource marks a mirror refused because the source failed a
// check that a client makes: a bad signature, an expired role, a rollback,
// a file whose length or hash differs from the signed one. Nothing was
// written to the destination.
var ErrUntrustedSource = errors.New("source repository refused")

// Limits on metadata read from a mirror's source, the same as a go-tuf
// client's: the signed lengths bound everything else.
const (
	mirrorRootMaxLength      = 512000
	mirrorTimestampMaxLength = 16384
	mirrorSnapshotMaxLength  = 2000000
	mirrorTargetsMaxLength   = 5000000
	// mirrorMaxRootRotations bounds the walk of the root chain.
	mirrorMaxRootRotations = 256
	// mirrorMaxDelegations bounds the roles visited for one target, as
	// go-tuf's updater does.
	mirrorMaxDelegations = 32
)

// MirrorOptions configures Mirror.
type MirrorOptions struct {
	// Root is the trust anchor: root metadata the operator obtained out
	// of band (release binaries embed it). The source's root chain is
	// verified from it.
	Root []byte
	// HTTPClient reads http(s) sources; nil means a client with a
	// 60 second timeout.
	HTTPClient *http.Client
	// Now is the reference time for expiry; nil means time.Now.
	Now func() time.Time
	// SpoolDir holds verified target files between the check of the
	// whole source and the first write; "" means the system's temporary
	// directory.
	SpoolDir string
}

// MirrorResult says what a mirror verified and copied.
type MirrorResult struct {
	// TimestampVersion and SnapshotVersion are those of the mirrored
	// state.
	TimestampVersion int64 `json:"timestampVersion"`
	SnapshotVersion  int64 `json:"snapshotVersion"`
	// Roles counts the targets-type metadata files verified: targets,
	// the delegated roles and every hash bin.
	Roles int `json:"roles"`
	// Targets counts the target files a client can reach.
	Targets int `json:"targets"`
	// MetadataCopied and TargetsCopied count the files written to the
	// destination; Present counts those it already held.
	MetadataCopied int   `json:"metadataCopied"`
	TargetsCopied  int   `json:"targetsCopied"`
	Present        int   `json:"present"`
	BytesCopied    int64 `json:"bytesCopied"`
}

// Mirror copies the repository at from (an http(s):// URL, a file:// URL
// or directory, or s3://BUCKET/PREFIX) to the storage to, for an
// air-gapped site or a CDN origin. It verifies the source as a client
// would, from the trust anchor opts.Root: the root chain, timestamp,
// snapshot, targets, every delegated role and every hash bin, and every
// target file a client can reach against its signed length and hashes.
// Only when all of it verifies does it write, and only what the
// destination lacks: target files first, then metadata from the bins up,
// and timestamp.json last, so that clients of the destination see its
// old state or the new one, never a mix. Files the destination already
// holds must be exactly the source's, and a destination newer than the
// source is refused rather than rolled back.
func Mirror(ctx context.Context, from string, to Storage, opts MirrorOptions) (*MirrorResult, error) {
	src, err := openMirrorSource(ctx, from, opts.HTTPClient)
	if err != nil {
		return nil, err
	}
	if l, ok := to.(Locker); ok {
		lctx, cancel := context.WithTimeout(ctx, lockTimeout)
		unlock, err := l.Lock(lctx)
		cancel()
		if err != nil {
			return nil, err
		}
		defer unlock()
	}
	spool, err := os.MkdirTemp(opts.SpoolDir, "mtuf-mirror-")
	if err != nil {
		return nil, fmt.Errorf("mirror spool: %w", err)
	}
	defer os.RemoveAll(spool)

	m := &mirror{src: src, from: from, dst: to, spool: spool, res: &MirrorResult{}}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	if err := m.verify(ctx, opts.Root, now().UTC()); err != nil {
		return nil, err
	}
	if err := m.plan(ctx); err != nil {
		return nil, err
	}
	if err := m.write(ctx); err != nil {
		return nil, err
	}
	return m.res, nil
}

// mirrorFile is a verified file of the source.
type mirrorFile struct {
	name string
	data []byte // metadata: the bytes; targets: nil, see spooled
	// spooled is the verified copy of a target file, once downloaded.
	spooled string
	target  *tuf.TargetFiles
	missing bool // the destination lacks it
}

type mirror struct {
	src   mirrorSource
	from  string
	dst   Storage
	spool string
	res   *MirrorResult

	roots     []*mirrorFile // every root version, ascending
	roles     []*mirrorFile // targets-type metadata, parents before children
	targets   []*mirrorFile // reachable target files
	snapshot  *mirrorFile
	timestamp *mirrorFile
	// dstTimestampETag is the destination's timestamp.json version tag
	// on conditional storage.
	dstTimestampETag string
	// log is the source's transparency log, when its root declares one.
	log *mirrorLog
}

// untrusted reports a check of name that failed.
func (m *mirror) untrusted(name string, err error) error {
	return fmt.Errorf("%w: %s of %s: %w", ErrUntrustedSource, name, m.from, err)
}

// fetch reads a file the source must have.
func (m *mirror) fetch(ctx context.Context, name string, maxLength int64) ([]byte, error) {
	data, err := m.src.get(ctx, name, maxLength)
	if errors.Is(err, errSourceMissing) {
		return nil, fmt.Errorf("the source %s lacks %s, which clients need: %w", m.from, name, err)
	}
	return data, err
}

// verify runs the TUF client workflow over the source from the trust
// anchor, and loads every role and bin.
func (m *mirror) verify(ctx context.Context, anchor []byte, now time.Time) error {
	if len(anchor) == 0 {
		return errors.New("no trusted root: the mirror needs the root metadata clients start from (--root FILE)")
	}
	trusted, err := trustedmetadata.New(anchor)
	if err != nil {
		return fmt.Errorf("the trusted root is not root metadata signed by its own keys: %w", err)
	}
	trusted.RefTime = now
	if err := m.olderRoots(ctx, anchor, trusted.Root.Signed.Version); err != nil {
		return err
	}
	m.roots = append(m.roots, &mirrorFile{name: rootName(trusted.Root.Signed.Version), data: anchor})
	if err := m.newerRoots(ctx, trusted); err != nil {
		return err
	}
	if err := m.verifyTimestamp(ctx, trusted); err != nil {
		return err
	}
	if err := m.verifySnapshot(ctx, trusted); err != nil {
		return err
	}
	if err := m.verifyLog(ctx, trusted); err != nil {
		return err
	}
	if err := m.verifyTargets(ctx, trusted); err != nil {
		return err
	}
	m.reachableTargets(trusted)
	return nil
}

// newerRoots fetches and verifies the roots after the trusted one, as
// far as the source has them.
func (m *mirror) newerRoots(ctx context.Context, trusted *trustedmetadata.TrustedMetadata) error {
	for v := trusted.Root.Signed.Version + 1; v <= trusted.Root.Signed.Version+mirrorMaxRootRotations; v++ {
		name := rootName(v)
		data, err := m.src.get(ctx, name, mirrorRootMaxLength)
		if errors.Is(err, errSourceMissing) {
			break
		}
		if err != nil {
			return err
		}
		if _, err := trusted.UpdateRoot(data); err != nil {
			return m.untrusted(name, err)
		}
		m.roots = append(m.roots, &mirrorFile{name: name, data: data})
	}
	return nil
}

// verifyTimestamp fetches and verifies timestamp.json.
func (m *mirror) verifyTimestamp(ctx context.Context, trusted *trustedmetadata.TrustedMetadata) error {
	data, err := m.fetch(ctx, timestampName, mirrorTimestampMaxLength)
	if err != nil {
		return err
	}
	if _, err := trusted.UpdateTimestamp(data); err != nil {
		return m.untrusted(timestampName, err)
	}
	m.timestamp = &mirrorFile{name: timestampName, data: data}
	m.res.TimestampVersion = trusted.Timestamp.Signed.Version
	return nil
}

// verifySnapshot fetches and verifies the snapshot the timestamp names.
func (m *mirror) verifySnapshot(ctx context.Context, trusted *trustedmetadata.TrustedMetadata) error {
	snapMeta := trusted.Timestamp.Signed.Meta["snapshot.json"]
	if snapMeta == nil {
		return m.untrusted(timestampName, errors.New("it names no snapshot"))
	}
	snapName := fmt.Sprintf("metadata/%d.snapshot.json", snapMeta.Version)
	data, err := m.fetch(ctx, snapName, lengthOr(snapMeta.Length, mirrorSnapshotMaxLength))
	if err != nil {
		return err
	}
	if _, err := trusted.UpdateSnapshot(data, false); err != nil {
		return m.untrusted(snapName, err)
	}
	m.snapshot = &mirrorFile{name: snapName, data: data}
	m.res.SnapshotVersion = trusted.Snapshot.Signed.Version
	return nil
}

// verifyTargets fetches and verifies every role the top-level targets
// delegates to, and theirs, breadth first: a bin is only loaded once the
// role that delegates to it is. A role delegated by several roles is
// loaded once and verified against each of them (TUF 5.6.7): a client's
// lookup checks it against the delegator on its own path, and would
// refuse a role another delegator's keys signed.
func (m *mirror) verifyTargets(ctx context.Context, trusted *trustedmetadata.TrustedMetadata) error {
	snapName := m.snapshot.name
	type pending struct{ role, parent string }
	queue := []pending{{tuf.TARGETS, tuf.ROOT}}
	seen := map[string]bool{tuf.TARGETS: true}
	var again []pending
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		meta := trusted.Snapshot.Signed.Meta[p.role+".json"]
		if meta == nil {
			return m.untrusted(snapName, fmt.Errorf("it lists no metadata for role %s, which %s delegates to", p.role, p.parent))
		}
		name := fmt.Sprintf("metadata/%d.%s.json", meta.Version, p.role)
		data, err := m.fetch(ctx, name, lengthOr(meta.Length, mirrorTargetsMaxLength))
		if err != nil {
			return err
		}
		md, err := trusted.UpdateDelegatedTargets(data, p.role, p.parent)
		if err != nil {
			return m.untrusted(name, err)
		}
		m.roles = append(m.roles, &mirrorFile{name: name, data: data})
		if d := md.Signed.Delegations; d != nil {
			var children []string
			for _, r := range d.Roles {
				children = append(children, r.Name)
			}
			if d.SuccinctRoles != nil {
				children = append(children, d.SuccinctRoles.GetRoles()...)
			}
			for _, c := range children {
				if !seen[c] {
					seen[c] = true
					queue = append(queue, pending{c, p.role})
				} else {
					again = append(again, pending{c, p.role})
				}
			}
		}
	}
	for _, p := range again {
		if err := trusted.Targets[p.parent].VerifyDelegate(p.role, trusted.Targets[p.role]); err != nil {
			meta := trusted.Snapshot.Signed.Meta[p.role+".json"]
			return m.untrusted(fmt.Sprintf("metadata/%d.%s.json", meta.Version, p.role), fmt.Errorf("role %s as delegated by %s: %w", p.role, p.parent, err))
		}
	}
	m.res.Roles = len(m.roles)
	return nil
}

// reachableTargets lists the target files a client can reach: those the
// delegation walk for their path ends on. An entry in a role that the
// walk never reaches for that path is not something any client would
// download.
func (m *mirror) reachableTargets(trusted *trustedmetadata.TrustedMetadata) {
	files := map[string]*mirrorFile{}
	for _, md := range trusted.Targets {
		for p, tf := range md.Signed.Targets {
			if resolveTarget(trusted, p) != tf {
				continue
			}
			for _, name := range targetFileNames(tf) {
				if _, dup := files[name]; !dup {
					files[name] = &mirrorFile{name: name, target: tf}
				}
			}
		}
	}
	for _, f := range files {
		m.targets = append(m.targets, f)
	}
	sort.Slice(m.targets, func(i, j int) bool { return m.targets[i].name < m.targets[j].name })
	m.res.Targets = len(m.targets)
}

// olderRoots fetches the roots before the anchor, which clients that
// start from an older embedded root walk through, and checks that they
// chain to the anchor: each signed by its predecessor's keys and its own.
func (m *mirror) olderRoots(ctx context.Context, anchor []byte, anchorVersion int64) error {
	if anchorVersion <= 1 {
		return nil
	}
	var chain *trustedmetadata.TrustedMetadata
	for v := int64(1); v < anchorVersion; v++ {
		name := rootName(v)
		data, err := m.fetch(ctx, name, mirrorRootMaxLength)
		if err != nil {
			return err
		}
		if chain == nil {
			chain, err = trustedmetadata.New(data)
		} else {
			_, err = chain.UpdateRoot(data)
		}
		if err != nil {
			return m.untrusted(name, err)
		}
		m.roots = append(m.roots, &mirrorFile{name: name, data: data})
	}
	if _, err := chain.UpdateRoot(anchor); err != nil {
		return m.untrusted(rootName(anchorVersion-1), fmt.Errorf("the older roots do not lead to the trusted root: %w", err))
	}
	return nil
}

// resolveTarget is the target a client gets for path: go-tuf's pre-order
// depth-first walk of the delegations, over the roles already verified.
func resolveTarget(trusted *trustedmetadata.TrustedMetadata, p string) *tuf.TargetFiles {
	stack := []string{tuf.TARGETS}
	visited := map[string]bool{}
	for len(visited) <= mirrorMaxDelegations && len(stack) > 0 {
		role := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[role] {
			continue
		}
		md := trusted.Targets[role]
		if md == nil {
			return nil
		}
		if tf, ok := md.Signed.Targets[p]; ok {
			return tf
		}
		visited[role] = true
		if md.Signed.Delegations == nil {
			continue
		}
		var children []string
		for _, r := range md.Signed.Delegations.GetRolesForTarget(p) {
			children = append(children, r.Name)
			if r.Terminating {
				stack = stack[:0]
				break
			}
		}
		slices.Reverse(children)
		stack = append(stack, children...)
	}
	return nil
}

// targetFileNames are the names a consistent-snapshot repository stores a
// target under: one per hash it is signed with.
func targetFileNames(tf *tuf.TargetFiles) []string {
	dir, base := path.Split(tf.Path)
	var out []string
	for _, h := range tf.Hashes {
		out = append(out, "targets/"+dir+hex.EncodeToString(h)+"."+base)
	}
	sort.Strings(out)
	return out
}

// plan finds what the destination lacks, downloading and verifying the
// target files it needs, and refuses a destination that holds something
// else than the source under a write-once name.
func (m *mirror) plan(ctx context.Context) error {
	metadataFiles := append(append(append([]*mirrorFile{}, m.roots...), m.roles...), m.snapshot)
	for _, f := range metadataFiles {
		have, err := m.dst.Get(ctx, f.name)
		switch {
		case errors.Is(err, ErrNotFound):
			f.missing = true
		case err != nil:
			return err
		case string(have) != string(f.data):
			return fmt.Errorf("the destination holds a different %s than the source: it is not a mirror of this repository (or was tampered with); use an empty destination", f.name)
		default:
			m.res.Present++
		}
	}
	if err := m.planTimestamp(ctx); err != nil {
		return err
	}
	for i, f := range m.targets {
		have, err := m.dst.Get(ctx, f.name)
		if err == nil {
			if verr := f.target.VerifyLengthHashes(have); verr != nil {
				return fmt.Errorf("the destination's %s differs from the signed target %s (%v): remove it and mirror again", f.name, f.target.Path, verr)
			}
			m.res.Present++
			continue
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		f.missing = true
		data, err := m.fetch(ctx, f.name, f.target.Length)
		if err != nil {
			return err
		}
		if err := f.target.VerifyLengthHashes(data); err != nil {
			return m.untrusted(f.name, err)
		}
		f.spooled = filepath.Join(m.spool, strconv.Itoa(i))
		if err := os.WriteFile(f.spooled, data, 0o600); err != nil {
			return fmt.Errorf("mirror spool: %w", err)
		}
	}
	return nil
}

// planTimestamp compares the destination's timestamp.json with the
// source's: the same is nothing to do, an older one is replaced, a newer
// one means the source is stale and is not rolled back to.
func (m *mirror) planTimestamp(ctx context.Context) error {
	var have []byte
	var err error
	if cs, ok := m.dst.(ConditionalStorage); ok {
		have, m.dstTimestampETag, err = cs.GetWithETag(ctx, timestampName)
	} else {
		have, err = m.dst.Get(ctx, timestampName)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		m.timestamp.missing = true
		return nil
	case err != nil:
		return err
	case string(have) == string(m.timestamp.data):
		m.res.Present++
		return nil
	}
	m.timestamp.missing = true
	old, err := decodeMetadata[tuf.TimestampType](timestampName, have)
	if err != nil {
		// A damaged timestamp.json at the destination is replaced.
		return nil
	}
	if old.Signed.Version > m.res.TimestampVersion {
		return fmt.Errorf("the destination's timestamp.json is version %d, newer than the source's version %d: the source is behind; mirror from an up-to-date source", old.Signed.Version, m.res.TimestampVersion)
	}
	return nil
}

// write copies what the destination lacks, in the order a publish writes.
func (m *mirror) write(ctx context.Context) error {
	for _, f := range m.targets {
		if !f.missing {
			continue
		}
		data, err := os.ReadFile(f.spooled)
		if err != nil {
			return fmt.Errorf("mirror spool: %w", err)
		}
		if err := m.put(ctx, f.name, data); err != nil {
			return err
		}
		m.res.TargetsCopied++
	}
	// Bins before the roles that delegate to them, targets.json and the
	// snapshot after them, new roots just before the timestamp that is
	// signed by their keys.
	var meta []*mirrorFile
	for i := len(m.roles) - 1; i >= 0; i-- {
		meta = append(meta, m.roles[i])
	}
	meta = append(append(meta, m.snapshot), m.roots...)
	for _, f := range meta {
		if !f.missing {
			continue
		}
		if err := m.put(ctx, f.name, f.data); err != nil {
			return err
		}
		m.res.MetadataCopied++
	}
	if err := m.writeLog(ctx); err != nil {
		return err
	}
	if !m.timestamp.missing {
		return nil
	}
	var err error
	if cs, ok := m.dst.(ConditionalStorage); ok {
		err = cs.ReplaceIf(ctx, timestampName, m.timestamp.data, m.dstTimestampETag)
	} else {
		err = m.dst.Replace(ctx, timestampName, m.timestamp.data)
	}
	if err != nil {
		return err
	}
	m.res.MetadataCopied++
	m.res.BytesCopied += int64(len(m.timestamp.data))
	return nil
}

func (m *mirror) put(ctx context.Context, name string, data []byte) error {
	if err := m.dst.PutOnce(ctx, name, data); err != nil {
		return err
	}
	m.res.BytesCopied += int64(len(data))
	return nil
}

func rootName(v int64) string { return fmt.Sprintf("metadata/%d.root.json", v) }

func lengthOr(n, def int64) int64 {
	if n > 0 {
		return n
	}
	return def
}

// errSourceMissing is a file the source does not have.
var errSourceMissing = errors.New("not found")

// mirrorSource reads repository files from where a mirror copies them.
type mirrorSource interface {
	// get returns the file, at most maxLength bytes of it, or an error
	// wrapping errSourceMissing.
	get(ctx context.Context, name string, maxLength int64) ([]byte, error)
}

func openMirrorSource(ctx context.Context, from string, hc *http.Client) (mirrorSource, error) {
	if from == "" {
		return nil, errors.New("no source: give the repository to mirror as an http(s)://, s3:// or file:// URL or a directory")
	}
	if !strings.Contains(from, "://") || strings.HasPrefix(from, "file://") {
		dir := strings.TrimPrefix(from, "file://")
		fi, err := os.Stat(dir)
		if err != nil {
			return nil, fmt.Errorf("source %s: %w", from, err)
		}
		if !fi.IsDir() {
			return nil, fmt.Errorf("source %s is not a directory", from)
		}
		return dirSource(dir), nil
	}
	u, err := url.Parse(from)
	if err != nil {
		return nil, fmt.Errorf("source %q: %w", from, err)
	}
	switch u.Scheme {
	case "http", "https":
		if hc == nil {
			hc = &http.Client{Timeout: 60 * time.Second}
		}
		return &httpSource{base: strings.TrimSuffix(from, "/"), client: hc}, nil
	case "s3":
		st, err := NewS3Storage(ctx, u)
		if err != nil {
			return nil, err
		}
		return s3Source{st}, nil
	default:
		return nil, fmt.Errorf("source %q: unsupported scheme %q (use https://, http://, s3:// or file://)", from, u.Scheme)
	}
}

// isRootProbe tells whether name is a versioned root, N.root.json: an
// object store that does not let the reader list the bucket answers 403
// for one that does not exist, and for those only that means "missing".
func isRootProbe(name string) bool {
	v, ok := strings.CutSuffix(path.Base(name), ".root.json")
	if !ok || !strings.HasPrefix(name, "metadata/") {
		return false
	}
	_, err := strconv.ParseUint(v, 10, 63)
	return err == nil
}

type dirSource string

func (d dirSource) get(_ context.Context, name string, maxLength int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(string(d), filepath.FromSlash(name)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, errSourceMissing)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAtMost(f, maxLength, name)
}

type httpSource struct {
	base   string
	client *http.Client
}

func (h *httpSource) get(ctx context.Context, name string, maxLength int64) ([]byte, error) {
	u := h.base + "/" + name
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "mtuf")
	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", u, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound,
		resp.StatusCode == http.StatusForbidden && isRootProbe(name):
		return nil, fmt.Errorf("%s: %w", u, errSourceMissing)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("download %s: %s", u, resp.Status)
	case resp.ContentLength > maxLength:
		return nil, fmt.Errorf("%w: %s is %d bytes, more than the %d allowed", ErrUntrustedSource, u, resp.ContentLength, maxLength)
	}
	return readAtMost(resp.Body, maxLength, u)
}

type s3Source struct{ st *S3Storage }

func (s s3Source) get(ctx context.Context, name string, maxLength int64) ([]byte, error) {
	data, err := s.st.getLimited(ctx, name, maxLength)
	if errors.Is(err, ErrNotFound) || (isRootProbe(name) && isAccessDenied(err)) {
		return nil, fmt.Errorf("%s: %w", name, errSourceMissing)
	}
	return data, err
}

// readAtMost reads r whole, failing if it holds more than maxLength bytes:
// a source may not make the mirror read more than the metadata allows.
func readAtMost(r io.Reader, maxLength int64, what string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxLength+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(data)) > maxLength {
		return nil, fmt.Errorf("%w: %s is more than the %d bytes allowed", ErrUntrustedSource, what, maxLength)
	}
	return data, nil
}
