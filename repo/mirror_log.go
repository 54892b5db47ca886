package repo

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"

	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/mtuf/mtuf/translog"
)

// maxLogFile bounds a file of the source's transparency log.
const maxLogFile = 4 << 20

// mirrorLog is the source's transparency log, verified.
type mirrorLog struct {
	checkpoint []byte
	files      map[string][]byte
}

// verifyLog checks, when the root declares a transparency log, that the
// source's log holds the snapshot being mirrored and extends the log the
// destination already has, and gathers its tiles and bundles, checked
// against the checkpoint. A mirror copies a repository only as its
// clients would accept it.
func (m *mirror) verifyLog(ctx context.Context, trusted *trustedmetadata.TrustedMetadata) error {
	cfg, err := logConfig(trusted.Root)
	if err != nil {
		return m.untrusted(rootName(trusted.Root.Signed.Version), err)
	}
	if cfg == nil {
		return nil
	}
	fetch := func(ctx context.Context, name string) ([]byte, error) {
		data, err := m.src.get(ctx, name, maxLogFile)
		if errors.Is(err, errSourceMissing) {
			return nil, fmt.Errorf("%w (%w)", err, fs.ErrNotExist)
		}
		return data, err
	}
	var prev *translog.Seen
	if old, err := m.dst.Get(ctx, translog.CheckpointPath); err == nil {
		// The destination's own checkpoint, checked when it was mirrored:
		// the source must extend it.
		if cp, err := cfg.Verify(old); err == nil {
			prev = &translog.Seen{Origin: cp.Origin, Size: cp.Size, Hash: cp.Hash[:]}
		}
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	r := &translog.Reader{Fetch: fetch}
	sum := sha256.Sum256(m.snapshot.data)
	if _, err := r.Accept(ctx, cfg, prev, m.res.SnapshotVersion, sum[:]); err != nil {
		return m.untrusted(translog.CheckpointPath, err)
	}
	signed, err := fetch(ctx, translog.CheckpointPath)
	if err != nil {
		return err
	}
	cp, err := cfg.Verify(signed)
	if err != nil {
		return m.untrusted(translog.CheckpointPath, err)
	}
	files, err := r.Files(ctx, cp)
	if err != nil {
		return m.untrusted(translog.CheckpointPath, err)
	}
	m.log = &mirrorLog{checkpoint: signed, files: files}
	return nil
}

// writeLog writes the log's tiles and bundles, then its checkpoint,
// before the timestamp that makes the mirrored snapshot current.
func (m *mirror) writeLog(ctx context.Context) error {
	if m.log == nil {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(m.log.files)) {
		data := m.log.files[name]
		if old, err := m.dst.Get(ctx, name); err == nil && string(old) == string(data) {
			continue
		}
		if err := m.dst.Replace(ctx, name, data); err != nil {
			return err
		}
		m.res.BytesCopied += int64(len(data))
	}
	if old, err := m.dst.Get(ctx, translog.CheckpointPath); err == nil && string(old) == string(m.log.checkpoint) {
		return nil
	}
	if err := m.dst.Replace(ctx, translog.CheckpointPath, m.log.checkpoint); err != nil {
		return err
	}
	m.res.BytesCopied += int64(len(m.log.checkpoint))
	return nil
}
