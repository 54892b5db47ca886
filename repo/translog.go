package repo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/sigstore/sigstore/pkg/signature"
	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"golang.org/x/mod/sumdb/note"

	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/translog"
)

// RoleLog names the log key among the workspace's keys: the online key
// that signs the transparency log's checkpoints.
const RoleLog = "log"

// LogSettings declares a transparency log in a new or staged root.
type LogSettings struct {
	// Origin names the log (the first line of its checkpoints).
	Origin string
	// Key is the log key: an Ed25519 key file (or reference) whose public
	// half the root declares; the workspace signs checkpoints with it.
	Key string
	// Witnesses cosign checkpoints; Quorum of them must.
	Witnesses []translog.Witness
	Quorum    int
}

// check checks what can be checked before the log key is loaded.
func (ls *LogSettings) check() error {
	if ls.Origin == "" {
		return errors.New("a transparency log needs an origin, its name in checkpoints")
	}
	if ls.Key == "" {
		return fmt.Errorf("transparency log %s: no log key", ls.Origin)
	}
	return translog.CheckWitnesses(ls.Origin, ls.Witnesses, ls.Quorum)
}

// ParseWitness reads a witness as given on a command line: its note
// verifier key, "@", and the base URL of its tlog-witness endpoint.
func ParseWitness(s string) (translog.Witness, error) {
	vkey, u, ok := strings.Cut(s, "@")
	if !ok || u == "" {
		return translog.Witness{}, fmt.Errorf("witness %q: give NAME+HASH+KEY@URL (the witness's verifier key, @, its URL)", s)
	}
	name, _, _ := strings.Cut(vkey, "+")
	return translog.Witness{Name: name, Key: vkey, URL: u}, nil
}

// logConfig returns the log a root declares, or nil.
func logConfig(root *tuf.Metadata[tuf.RootType]) (*translog.Config, error) {
	raw, ok := root.Signed.UnrecognizedFields[translog.RootField]
	if !ok {
		return nil, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var c translog.Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("root v%d: %s: %w", root.Signed.Version, translog.RootField, err)
	}
	if err := c.Check(); err != nil {
		return nil, fmt.Errorf("root v%d: %w", root.Signed.Version, err)
	}
	return &c, nil
}

// declareLog sets the log of a root being made, from the public half of
// the log key, and returns the key's reference as the workspace records
// it.
func (w *Workspace) declareLog(ctx context.Context, root *tuf.Metadata[tuf.RootType], ls *LogSettings) (string, error) {
	pub, err := publicKey(ctx, ls.Key, w.resolver())
	if err != nil {
		return "", fmt.Errorf("log key %s: %w", ls.Key, err)
	}
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok {
		return "", fmt.Errorf("log key %s is a %T; checkpoints are signed notes, which need an ed25519 key ('mtuf keys generate --type ed25519')", ls.Key, pub)
	}
	vkey, err := note.NewEd25519VerifierKey(ls.Origin, edPub)
	if err != nil {
		return "", fmt.Errorf("log origin %q: %w", ls.Origin, err)
	}
	c := translog.Config{Origin: ls.Origin, Key: vkey, Witnesses: ls.Witnesses, Quorum: ls.Quorum}
	if err := c.Check(); err != nil {
		return "", err
	}
	var asMap map[string]any
	b, _ := json.Marshal(c)
	if err := json.Unmarshal(b, &asMap); err != nil {
		return "", err
	}
	if root.Signed.UnrecognizedFields == nil {
		root.Signed.UnrecognizedFields = map[string]any{}
	}
	root.Signed.UnrecognizedFields[translog.RootField] = asMap
	return recordRef(w.resolver(), ls.Key), nil
}

// logKeyID is the TUF key id of the log key a root declares, under which
// the workspace's signer check finds it.
func logKeyID(c *translog.Config) (string, error) {
	v, err := note.NewVerifier(c.Key)
	if err != nil {
		return "", err
	}
	_, rest, _ := strings.Cut(c.Key, "+")
	_, b64, _ := strings.Cut(rest, "+")
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 1+ed25519.PublicKeySize {
		return "", fmt.Errorf("log key of %s is not an ed25519 key", v.Name())
	}
	k, err := keys.TUFKey(ed25519.PublicKey(raw[1:]))
	if err != nil {
		return "", err
	}
	return k.ID()
}

// noteSigner signs checkpoints with a workspace key: a note signer of the
// log's origin over an Ed25519 signer.
type noteSigner struct {
	name string
	hash uint32
	s    signature.Signer
}

func newNoteSigner(origin string, s signature.Signer) (*noteSigner, error) {
	pub, err := s.PublicKey()
	if err != nil {
		return nil, err
	}
	edPub, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the log key is a %T, not ed25519", pub)
	}
	// The key hash of a note key: the first four bytes of
	// SHA-256(name, newline, algorithm 1, public key).
	h := sha256.New()
	h.Write([]byte(origin + "\n"))
	h.Write([]byte{1})
	h.Write(edPub)
	return &noteSigner{name: origin, hash: binary.BigEndian.Uint32(h.Sum(nil)), s: s}, nil
}

func (n *noteSigner) Name() string    { return n.name }
func (n *noteSigner) KeyHash() uint32 { return n.hash }
func (n *noteSigner) Sign(msg []byte) ([]byte, error) {
	return n.s.SignMessage(strings.NewReader(string(msg)))
}

// logStore is the log's view of repository storage. Hash tiles past the
// checkpoint are a function of the entries before them; under the
// storage's publish lock they are overwritten, elsewhere written once,
// the same bytes being as good as written. Entry bundles are never
// overwritten: the first publisher to write the bundle that ends at an
// index owns that index (see claimingLogStore).
type logStore struct {
	st Storage
}

// claimingLogStore takes over the entries that other publishers claimed
// past the checkpoint (translog.Claims), once their snapshots are found
// in storage, signed by the snapshot keys of root. On a bucket that
// other publisher may be racing this one; under a directory's lock it
// died, perhaps after witnesses cosigned a checkpoint with its entry, and
// logging that entry again keeps those witnesses' view a prefix of the
// log instead of a fork.
type claimingLogStore struct {
	logStore
	root *tuf.Metadata[tuf.RootType]
}

var _ translog.Claims = claimingLogStore{}

// CheckClaimed accepts an entry only for a snapshot that a publisher with
// the snapshot key wrote: a publisher writes its snapshot before it claims
// an entry for it, so one that died or lost a race leaves both.
func (l claimingLogStore) CheckClaimed(ctx context.Context, data []byte) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s; delete that entry bundle from storage and publish again", translog.ErrForeignEntry, fmt.Sprintf(format, args...))
	}
	e, err := translog.ParseEntry(data)
	if err != nil {
		return refuse("%v", err)
	}
	name := fmt.Sprintf("metadata/%d.snapshot.json", e.SnapshotVersion)
	snap, err := l.st.Get(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return refuse("it names %s, which storage does not hold", name)
	}
	if err != nil {
		return err
	}
	if sum := sha256.Sum256(snap); !bytes.Equal(sum[:], e.SnapshotSHA256) {
		return refuse("it names %s with SHA-256 %x, storage holds one with %x", name, e.SnapshotSHA256, sum)
	}
	md, err := decodeMetadata[tuf.SnapshotType](name, snap)
	if err != nil {
		return refuse("%v", err)
	}
	// The snapshot keys are those of the root the entry names: its
	// publisher may have died just before a rotation that replaced them.
	root := l.root
	for _, f := range e.Files {
		if f.Role != tuf.ROOT || f.Version == root.Signed.Version {
			continue
		}
		if root, err = l.olderRoot(ctx, f.Version, f.SHA256); err != nil {
			return refuse("%v", err)
		}
	}
	if err := root.VerifyDelegate(tuf.SNAPSHOT, md); err != nil {
		return refuse("%s is not signed by the snapshot keys of root v%d (%v)", name, root.Signed.Version, err)
	}
	return nil
}

// olderRoot returns root version v from storage, with SHA-256 sum,
// authenticated from the root in force back: each root signed by its own
// root keys and by those of the root before it.
func (l claimingLogStore) olderRoot(ctx context.Context, v int64, sum []byte) (*tuf.Metadata[tuf.RootType], error) {
	if v < 1 || v > l.root.Signed.Version {
		return nil, fmt.Errorf("it names root v%d, and the root in force is v%d", v, l.root.Signed.Version)
	}
	next := l.root
	for k := l.root.Signed.Version - 1; k >= v; k-- {
		name := fmt.Sprintf("metadata/%d.root.json", k)
		data, err := l.st.Get(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		prev, err := decodeMetadata[tuf.RootType](name, data)
		if err != nil {
			return nil, err
		}
		if err := prev.VerifyDelegate(tuf.ROOT, prev); err != nil {
			return nil, fmt.Errorf("%s is not signed by its own root keys: %w", name, err)
		}
		if err := prev.VerifyDelegate(tuf.ROOT, next); err != nil {
			return nil, fmt.Errorf("root v%d is not signed by the root keys of %s: %w", next.Signed.Version, name, err)
		}
		if k == v {
			if got := sha256.Sum256(data); !bytes.Equal(got[:], sum) {
				return nil, fmt.Errorf("it names %s with SHA-256 %x, storage holds one with %x", name, sum, got)
			}
		}
		next = prev
	}
	return next, nil
}

func (l logStore) Read(ctx context.Context, name string) ([]byte, error) {
	data, err := l.st.Get(ctx, name)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
	}
	return data, err
}

func (l logStore) ReadCheckpoint(ctx context.Context) ([]byte, string, error) {
	var data []byte
	var tag string
	var err error
	if cs, ok := l.st.(ConditionalStorage); ok {
		data, tag, err = cs.GetWithETag(ctx, translog.CheckpointPath)
	} else {
		data, err = l.st.Get(ctx, translog.CheckpointPath)
	}
	if errors.Is(err, ErrNotFound) {
		return nil, "", nil
	}
	return data, tag, err
}

func (l logStore) WriteTile(ctx context.Context, name string, data []byte) error {
	if _, ok := l.st.(Locker); ok && !translog.IsEntryBundle(name) {
		return l.st.Replace(ctx, name, data)
	}
	err := l.st.PutOnce(ctx, name, data)
	if errors.Is(err, ErrExists) {
		if held, gerr := l.st.Get(ctx, name); gerr == nil && bytes.Equal(held, data) {
			return nil
		}
		return fmt.Errorf("transparency log %s was written by another publisher: %w (%w)", name, ErrConflict, fs.ErrExist)
	}
	return err
}

func (l logStore) WriteCheckpoint(ctx context.Context, data []byte, tag string) error {
	if cs, ok := l.st.(ConditionalStorage); ok {
		return cs.ReplaceIf(ctx, translog.CheckpointPath, data, tag)
	}
	return l.st.Replace(ctx, translog.CheckpointPath, data)
}

// logSnapshot appends the snapshot just written, and the metadata written
// with it, to the log the root declares, if it declares one.
func (s *state) logSnapshot(ctx context.Context, signers signerSet, snapBytes []byte) error {
	c, err := logConfig(s.root)
	if err != nil || c == nil {
		return err
	}
	ss, err := signers(ctx, s, RoleLog)
	if err != nil {
		return err
	}
	ns, err := newNoteSigner(c.Origin, ss[0])
	if err != nil {
		return err
	}
	rootName := fmt.Sprintf("metadata/%d.root.json", s.root.Signed.Version)
	rootBytes, err := s.st.Get(ctx, rootName)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(snapBytes)
	rootSum := sha256.Sum256(rootBytes)
	e := translog.Entry{SnapshotVersion: s.snapshot.Signed.Version, SnapshotSHA256: sum[:],
		Files: append(s.written, translog.File{Role: tuf.ROOT, Version: s.root.Signed.Version, SHA256: rootSum[:]})}
	data, err := e.Marshal()
	if err != nil {
		return err
	}
	var cosign translog.Cosigner
	if len(c.Witnesses) > 0 {
		cosign = translog.Cosign(c, nil)
	}
	st := claimingLogStore{logStore{s.st}, s.root}
	if _, err := translog.Append(ctx, st, c.Origin, ns, cosign, data); err != nil {
		return fmt.Errorf("transparency log %s: %w", c.Origin, err)
	}
	return nil
}

// logKeysOf returns the key id and threshold of the log key.
func (s *state) logKeysOf() ([]string, int, error) {
	c, err := logConfig(s.root)
	if err != nil {
		return nil, 0, err
	}
	if c == nil {
		return nil, 0, errors.New("the repository's root declares no transparency log")
	}
	id, err := logKeyID(c)
	if err != nil {
		return nil, 0, err
	}
	return []string{id}, 1, nil
}

// wrote records a metadata file commit wrote.
func (s *state) wrote(role string, version int64, data []byte) {
	sum := sha256.Sum256(data)
	s.written = append(s.written, translog.File{Role: role, Version: version, SHA256: sum[:]})
}

// stageLog declares the log anew in a staged root, and has the workspace
// sign checkpoints with the new log key once the root is committed.
func (w *Workspace) stageLog(ctx context.Context, s *state, next *tuf.Metadata[tuf.RootType], ls *LogSettings, st *Staged) error {
	if old, err := logConfig(s.root); err == nil && old != nil && old.Origin != ls.Origin {
		return fmt.Errorf("the log's origin is %s; a root rotation keeps it (a new origin is a new log, which clients could not check against the old one)", old.Origin)
	}
	ref, err := w.declareLog(ctx, next, ls)
	if err != nil {
		return err
	}
	if old, _ := logConfig(s.root); old != nil {
		if id, err := logKeyID(old); err == nil {
			st.RemoveWorkspaceKeys[RoleLog] = []string{id}
		}
	}
	st.AddWorkspaceKeys[RoleLog] = []string{ref}
	return nil
}
