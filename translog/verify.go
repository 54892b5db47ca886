package translog

import (
	"context"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Fetch reads a file of the log (a name under Dir) from wherever the
// repository is served; a missing file is an error wrapping
// fs.ErrNotExist.
type Fetch func(ctx context.Context, name string) ([]byte, error)

// Reader reads a log's tiles and entry bundles, checking every one
// against a checkpoint.
type Reader struct {
	Fetch Fetch
	// Fetched counts the files read, tiles and bundles.
	Fetched int
}

func (r *Reader) hashReader(ctx context.Context, cp Checkpoint) (tlog.HashReader, *tileReader) {
	tr := &tileReader{ctx: ctx, read: r.Fetch}
	return nonEmpty(tlog.TileHashReader(tlog.Tree{N: cp.Size, Hash: cp.Hash}, tr)), tr
}

// Consistent checks that the log at checkpoint newer extends the log at
// checkpoint older: ErrShrunk if it is smaller, ErrFork if it holds other
// entries.
func (r *Reader) Consistent(ctx context.Context, older, newer Checkpoint) error {
	switch {
	case newer.Size < older.Size:
		return fmt.Errorf("%w: %s has %d entries, %d were seen before", ErrShrunk, newer.Origin, newer.Size, older.Size)
	case newer.Size == older.Size:
		if newer.Hash != older.Hash {
			return fmt.Errorf("%w: two checkpoints of %s at size %d with different root hashes", ErrFork, newer.Origin, newer.Size)
		}
		return nil
	case older.Size == 0:
		return nil
	}
	hr, tr := r.hashReader(ctx, newer)
	defer func() { r.Fetched += int(tr.fetched.Load()) }()
	proof, err := tlog.ProveTree(newer.Size, older.Size, hr)
	if err != nil {
		return fmt.Errorf("transparency log %s: consistency proof from %d to %d: %w", newer.Origin, older.Size, newer.Size, tamperedOr(err))
	}
	if err := tlog.CheckTree(proof, newer.Size, newer.Hash, older.Size, older.Hash); err != nil {
		return fmt.Errorf("%w: %s at size %d does not extend the checkpoint at size %d seen before: %v", ErrFork, newer.Origin, newer.Size, older.Size, err)
	}
	return nil
}

// FindSnapshot finds the entry of snapshot version v with the SHA-256 sum
// among the newest entries of the log at cp, and checks its inclusion
// proof. It returns the entry's index, or ErrNotLogged.
func (r *Reader) FindSnapshot(ctx context.Context, cp Checkpoint, version int64, sum []byte) (int64, *Entry, error) {
	if cp.Size == 0 {
		return 0, nil, fmt.Errorf("%w: snapshot v%d: the log is empty", ErrNotLogged, version)
	}
	hr, tr := r.hashReader(ctx, cp)
	defer func() { r.Fetched += int(tr.fetched.Load()) }()
	// The current snapshot is the newest entry, or close to it (an entry
	// logged by a publisher that then lost a race may follow it): look in
	// the last two bundles.
	last := (cp.Size - 1) >> tileHeight
	for b := last; b >= 0 && b >= last-1; b-- {
		first := b << tileHeight
		entries, err := r.bundle(ctx, hr, first, cp.Size)
		if err != nil {
			return 0, nil, err
		}
		for i := len(entries) - 1; i >= 0; i-- {
			e, err := ParseEntry(entries[i])
			if err != nil || e.SnapshotVersion != version {
				continue
			}
			if string(e.SnapshotSHA256) != string(sum) {
				return 0, nil, fmt.Errorf("%w: the log's entry %d for snapshot v%d has SHA-256 %x, the repository served one with %x (split view)", ErrNotLogged, first+int64(i), version, e.SnapshotSHA256, sum)
			}
			idx := first + int64(i)
			proof, err := tlog.ProveRecord(cp.Size, idx, hr)
			if err != nil {
				return 0, nil, fmt.Errorf("transparency log %s: inclusion proof of entry %d: %w", cp.Origin, idx, tamperedOr(err))
			}
			if err := tlog.CheckRecord(proof, cp.Size, cp.Hash, idx, tlog.RecordHash(entries[i])); err != nil {
				return 0, nil, fmt.Errorf("%w: entry %d: %v", ErrTampered, idx, err)
			}
			return idx, e, nil
		}
	}
	return 0, nil, fmt.Errorf("%w: snapshot v%d (SHA-256 %x) is validly signed but is not among the log's newest entries at size %d (split view)", ErrNotLogged, version, sum, cp.Size)
}

// bundle reads the entries of the bundle starting at first, in the log of
// size n, checked against the log's leaf hashes.
func (r *Reader) bundle(ctx context.Context, hr tlog.HashReader, first, n int64) ([][]byte, error) {
	t := bundleTile(first, n)
	data, err := r.Fetch(ctx, Path(t))
	if err != nil {
		return nil, fmt.Errorf("transparency log entry bundle %s: %w", Path(t), err)
	}
	r.Fetched++
	entries, err := splitBundle(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrTampered, Path(t), err)
	}
	if len(entries) < t.W {
		return nil, fmt.Errorf("%w: %s holds %d entries, not %d", ErrTampered, Path(t), len(entries), t.W)
	}
	entries = entries[:t.W]
	if err := checkEntries(hr, first, entries); err != nil {
		return nil, fmt.Errorf("%s: %w", Path(t), err)
	}
	return entries, nil
}

// Entries calls fn with every entry of the log at cp from index from on,
// in order, each checked against cp.
func (r *Reader) Entries(ctx context.Context, cp Checkpoint, from int64, fn func(index int64, entry []byte) error) error {
	hr, tr := r.hashReader(ctx, cp)
	defer func() { r.Fetched += int(tr.fetched.Load()) }()
	for first := from &^ (1<<tileHeight - 1); first < cp.Size; first += 1 << tileHeight {
		entries, err := r.bundle(ctx, hr, first, cp.Size)
		if err != nil {
			return err
		}
		for i, e := range entries {
			if idx := first + int64(i); idx >= from {
				if err := fn(idx, e); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Seen is what a reader keeps between runs: the last checkpoint it
// accepted and the snapshot it found in it.
type Seen struct {
	Origin          string `json:"origin"`
	Size            int64  `json:"size"`
	Hash            []byte `json:"hash"`
	SnapshotVersion int64  `json:"snapshotVersion"`
	SnapshotSHA256  []byte `json:"snapshotSHA256"`
	Index           int64  `json:"index"`
}

// Checkpoint returns the checkpoint seen.
func (s *Seen) Checkpoint() Checkpoint {
	cp := Checkpoint{Origin: s.Origin, Size: s.Size}
	copy(cp.Hash[:], s.Hash)
	return cp
}

// Accept checks that snapshot version v with SHA-256 sum is logged: the
// log's checkpoint (fetched from CheckpointPath) must be signed and
// cosigned as cfg requires, consistent with prev (the last one accepted,
// or nil), and hold the snapshot among its newest entries with a valid
// inclusion proof. It returns what to keep for the next run.
func (r *Reader) Accept(ctx context.Context, cfg *Config, prev *Seen, v int64, sum []byte) (*Seen, error) {
	signed, err := r.Fetch(ctx, CheckpointPath)
	if err != nil {
		return nil, fmt.Errorf("transparency log checkpoint: %w", err)
	}
	r.Fetched++
	cp, err := cfg.Verify(signed)
	if err != nil {
		return nil, err
	}
	if prev != nil && prev.Origin == cp.Origin {
		if err := r.Consistent(ctx, prev.Checkpoint(), cp); err != nil {
			return nil, err
		}
	}
	idx, _, err := r.FindSnapshot(ctx, cp, v, sum)
	if err != nil {
		return nil, err
	}
	return &Seen{Origin: cp.Origin, Size: cp.Size, Hash: cp.Hash[:], SnapshotVersion: v, SnapshotSHA256: sum, Index: idx}, nil
}

// Files returns every tile and entry bundle of the log at cp, each
// checked against it, by name: what a mirror copies so that its clients
// can check any proof against cp. Tiles are recomputed from the verified
// hashes rather than copied, so nothing unverified is returned.
func (r *Reader) Files(ctx context.Context, cp Checkpoint) (map[string][]byte, error) {
	out := map[string][]byte{}
	var bundle []byte
	err := r.Entries(ctx, cp, 0, func(i int64, e []byte) error {
		bundle = appendBundle(bundle, e)
		if (i+1)%(1<<tileHeight) == 0 || i+1 == cp.Size {
			out[Path(bundleTile(i, cp.Size))] = bundle
			bundle = nil
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	hr, tr := r.hashReader(ctx, cp)
	defer func() { r.Fetched += int(tr.fetched.Load()) }()
	for _, t := range tlog.NewTiles(tileHeight, 0, cp.Size) {
		data, err := tlog.ReadTileData(t, hr)
		if err != nil {
			return nil, fmt.Errorf("transparency log tile %s: %w", Path(t), tamperedOr(err))
		}
		out[Path(t)] = data
	}
	return out, nil
}
