package translog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Store is what appending needs of a repository's storage.
type Store interface {
	// Read returns a file of the log (a name under Dir), or an error
	// wrapping fs.ErrNotExist.
	Read(ctx context.Context, name string) ([]byte, error)
	// ReadCheckpoint returns the signed checkpoint and a version tag for
	// WriteCheckpoint; nil data and no error when the log is empty.
	ReadCheckpoint(ctx context.Context) (data []byte, tag string, err error)
	// WriteTile writes a tile or entry bundle past the committed size. A
	// committed one is never rewritten with other bytes. Append calls it
	// for several tiles at once. A store that serializes appenders may
	// overwrite what a dead one left past the checkpoint; one that does
	// not fails with an error wrapping fs.ErrExist instead (see Claims).
	WriteTile(ctx context.Context, name string, data []byte) error
	// WriteCheckpoint replaces the checkpoint only if its version tag is
	// still tag ("" meaning that there is none yet). It is the commit
	// point of an append.
	WriteCheckpoint(ctx context.Context, data []byte, tag string) error
}

// Claims is a Store shared by appenders that nothing serializes, such as
// a bucket: the first to write the entry bundle that ends at index n owns
// index n, since its tiles are then a function of entries that no one can
// change any more. Another appender that finds that bundle taken appends
// after the entry it holds, whether its writer is still running or died
// (it cannot tell): both then compute the same tiles, and whichever
// writes the checkpoint first, the tiles in storage are its tiles.
type Claims interface {
	Store
	// CheckClaimed accepts an entry that another appender claimed, before
	// Append signs a checkpoint that covers it: the log key must not sign
	// whatever someone with write access to storage put there. Its
	// refusals wrap ErrForeignEntry.
	CheckClaimed(ctx context.Context, entry []byte) error
}

// maxClaimed bounds how many entries past the checkpoint an append takes
// over from appenders that did not finish.
const maxClaimed = 64

// Cosigner gathers witness cosignatures on a signed checkpoint of size
// size. proof returns the consistency proof from an older size a witness
// holds. It returns the signed checkpoint with the cosignatures added, or
// an error when fewer than the quorum cosigned.
type Cosigner func(ctx context.Context, signed []byte, size int64, proof func(old int64) (tlog.TreeProof, error)) ([]byte, error)

// Appended says where an entry went.
type Appended struct {
	Index      int64
	Checkpoint Checkpoint
	Signed     []byte
}

// Append adds one entry to the log in st: it reads the checkpoint, checks
// the tiles it extends against it, computes the new tiles, signs the new
// checkpoint with logKey, has it cosigned (cosign may be nil when the root
// names no witnesses), then writes the tiles and entry bundle in parallel,
// and the checkpoint last with a conditional write. On a Claims store the
// entry bundle is written first, on its own, since it decides the entry's
// index. Until the checkpoint is written the log is as it was; a lost race
// returns the store's conflict error.
func Append(ctx context.Context, st Store, origin string, logKey note.Signer, cosign Cosigner, entry []byte) (*Appended, error) {
	if len(entry) > maxEntrySize {
		return nil, fmt.Errorf("log entry of %d bytes is larger than %d", len(entry), maxEntrySize)
	}
	oldSigned, tag, err := st.ReadCheckpoint(ctx)
	if err != nil {
		return nil, fmt.Errorf("transparency log checkpoint: %w", err)
	}
	old := Checkpoint{Origin: origin}
	if oldSigned != nil {
		// The publisher's own storage: the signature is not what makes it
		// trustworthy (the log key may have been rotated since), the
		// tiles are checked against its hash below, and witnesses check
		// that the new checkpoint extends it.
		if old, err = parseSigned(oldSigned); err != nil {
			return nil, fmt.Errorf("transparency log %s: %w", CheckpointPath, err)
		}
		if old.Origin != origin {
			return nil, fmt.Errorf("transparency log %s is for origin %q, the root declares %q", CheckpointPath, old.Origin, origin)
		}
	}
	n := old.Size
	tr := &tileReader{ctx: ctx, read: st.Read}
	hr0 := nonEmpty(tlog.TileHashReader(tlog.Tree{N: n, Hash: old.Hash}, tr))
	prev, err := previousBundle(ctx, st, hr0, n)
	if err != nil {
		return nil, err
	}
	// A store that serializes appenders takes the bundle with the tiles;
	// on one that does not, the bundle decides the entry's index first.
	records := [][]byte{entry}
	writes := map[string][]byte{}
	if cs, ok := st.(Claims); ok {
		if records, err = claim(ctx, cs, n, prev, entry); err != nil {
			return nil, err
		}
	} else {
		// Clipped, as in claim.
		writes[Path(bundleTile(n, n+1))] = appendBundle(slices.Clip(prev), entry)
	}
	size := n + int64(len(records))
	base := tlog.StoredHashCount(n)
	var added []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		var need []int64
		for _, i := range idx {
			if i < base {
				need = append(need, i)
			}
		}
		got, err := hr0.ReadHashes(need)
		if err != nil {
			return nil, err
		}
		for k, i := range idx {
			if i < base {
				out[k], got = got[0], got[1:]
			} else if i-base < int64(len(added)) {
				out[k] = added[i-base]
			} else {
				return nil, fmt.Errorf("hash %d is past the log", i)
			}
		}
		return out, nil
	})
	for i, rec := range records {
		h, err := tlog.StoredHashes(n+int64(i), rec, hr)
		if err != nil {
			return nil, fmt.Errorf("transparency log at size %d: %w", n+int64(i), tamperedOr(err))
		}
		added = append(added, h...)
	}
	root, err := tlog.TreeHash(size, hr)
	if err != nil {
		return nil, fmt.Errorf("transparency log: %w", tamperedOr(err))
	}
	cp := Checkpoint{Origin: origin, Size: size, Hash: root}
	signed, err := Sign(cp, logKey)
	if err != nil {
		return nil, err
	}
	if cosign != nil {
		proof := func(m int64) (tlog.TreeProof, error) {
			if m > size || m < 0 {
				return nil, fmt.Errorf("a witness holds size %d, past this log's %d: the log it saw is not this one", m, size)
			}
			if m == 0 || m == size {
				return nil, nil
			}
			return tlog.ProveTree(size, m, hr)
		}
		if signed, err = cosign(ctx, signed, size, proof); err != nil {
			return nil, err
		}
	}
	for _, t := range tlog.NewTiles(tileHeight, n, size) {
		data, err := tlog.ReadTileData(t, hr)
		if err != nil {
			return nil, fmt.Errorf("transparency log tile %s: %w", Path(t), err)
		}
		writes[Path(t)] = data
	}
	if err := writeTiles(ctx, st, writes); err != nil {
		return nil, err
	}
	if err := st.WriteCheckpoint(ctx, signed, tag); err != nil {
		return nil, err
	}
	return &Appended{Index: size - 1, Checkpoint: cp, Signed: signed}, nil
}

// claim writes the entry bundle that puts entry at index n, after prev,
// the bundle ending at n-1 (nil when n starts a bundle). When another
// appender took that bundle first, it takes the entry there, once st
// accepts it, and claims the next index, and so on. It returns the entries
// from index n on, entry last.
func claim(ctx context.Context, st Claims, n int64, prev, entry []byte) ([][]byte, error) {
	var records [][]byte
	for i := n; ; i++ {
		if i%(1<<tileHeight) == 0 {
			prev = nil
		}
		name := Path(bundleTile(i, i+1))
		// Clipped: prev may be a store's own buffer, which appending must
		// not write into.
		err := st.WriteTile(ctx, name, appendBundle(slices.Clip(prev), entry))
		if err == nil {
			return append(records, entry), nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return nil, err
		}
		if len(records) == maxClaimed {
			return nil, fmt.Errorf("transparency log: %d entries past the checkpoint at size %d were claimed by appenders that did not finish, up to %s; is another tool writing to %s?", maxClaimed, n, name, Dir)
		}
		taken, err := st.Read(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("transparency log entry bundle %s: %w", name, err)
		}
		rest, ok := bytes.CutPrefix(taken, prev)
		var claimed [][]byte
		if ok {
			claimed, err = splitBundle(rest)
		}
		if !ok || err != nil || len(claimed) != 1 {
			return nil, fmt.Errorf("%w: %s past the checkpoint does not extend the log by one entry", ErrTampered, name)
		}
		if err := st.CheckClaimed(ctx, claimed[0]); err != nil {
			return nil, fmt.Errorf("transparency log entry %d, claimed in %s past the checkpoint: %w", i, name, err)
		}
		records = append(records, claimed[0])
		prev = taken
	}
}

// writeTiles writes tiles and bundles at once: each is a durable write of
// its own, and none is read before the checkpoint that follows them names
// it, so their order does not matter, only that all are done before it.
func writeTiles(ctx context.Context, st Store, writes map[string][]byte) error {
	errs := make(chan error, len(writes))
	for name, data := range writes {
		go func() { errs <- st.WriteTile(ctx, name, data) }()
	}
	var first error
	for range writes {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// previousBundle returns the partial entry bundle that entry n extends,
// checked against the log's hashes; nil when entry n starts a bundle.
func previousBundle(ctx context.Context, st Store, hr tlog.HashReader, n int64) ([]byte, error) {
	if n%(1<<tileHeight) == 0 {
		return nil, nil
	}
	t := bundleTile(n-1, n)
	data, err := st.Read(ctx, Path(t))
	if err != nil {
		return nil, fmt.Errorf("transparency log entry bundle %s: %w", Path(t), err)
	}
	entries, err := splitBundle(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrTampered, Path(t), err)
	}
	if len(entries) != t.W {
		return nil, fmt.Errorf("%w: %s holds %d entries, not %d", ErrTampered, Path(t), len(entries), t.W)
	}
	first := t.N << tileHeight
	if err := checkEntries(hr, first, entries); err != nil {
		return nil, fmt.Errorf("%s: %w", Path(t), err)
	}
	return data, nil
}

// checkEntries checks entries first, first+1, ... against the log's leaf
// hashes.
func checkEntries(hr tlog.HashReader, first int64, entries [][]byte) error {
	idx := make([]int64, len(entries))
	for i := range entries {
		idx[i] = tlog.StoredHashIndex(0, first+int64(i))
	}
	want, err := hr.ReadHashes(idx)
	if err != nil {
		return tamperedOr(err)
	}
	for i, e := range entries {
		if tlog.RecordHash(e) != want[i] {
			return fmt.Errorf("%w: entry %d does not hash to the log's leaf", ErrTampered, first+int64(i))
		}
	}
	return nil
}

// parseSigned reads a signed checkpoint's text without checking its
// signatures.
func parseSigned(signed []byte) (Checkpoint, error) {
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return Checkpoint{}, errors.New("checkpoint is not a signed note")
	}
	return parseText(string(signed[:i+1]))
}

// tileReader reads tiles through a read function; tlog's TileHashReader
// checks them against the tree.
type tileReader struct {
	ctx  context.Context
	read func(ctx context.Context, name string) ([]byte, error)
	// fetched counts tiles read, for benchmarks and request budgets.
	// Witnesses ask for proofs in parallel, so it is atomic.
	fetched atomic.Int64
}

func (r *tileReader) Height() int { return tileHeight }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := r.read(r.ctx, Path(t))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("%w: %s is missing", ErrTampered, Path(t))
			}
			return nil, fmt.Errorf("transparency log tile %s: %w", Path(t), err)
		}
		r.fetched.Add(1)
		if len(data) != t.W*tlog.HashSize {
			return nil, fmt.Errorf("%w: %s is %d bytes, not %d", ErrTampered, Path(t), len(data), t.W*tlog.HashSize)
		}
		out[i] = data
	}
	return out, nil
}

func (r *tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

// tamperedOr marks tlog's verification failures as ErrTampered; errors
// that already carry a meaning pass through.
func tamperedOr(err error) error {
	if errors.Is(err, ErrTampered) || !isTlogMismatch(err) {
		return err
	}
	return fmt.Errorf("%w: %v", ErrTampered, err)
}

// isTlogMismatch tells whether err is tlog's report of downloaded tiles
// that do not hash to the tree; it has no error type for that.
func isTlogMismatch(err error) bool {
	s := err.Error()
	return strings.Contains(s, "inconsistent tile") || strings.Contains(s, "invalid transparency proof") || strings.Contains(s, "too short for tile")
}

// nonEmpty guards a tile hash reader against empty reads, which tlog's
// does not expect (an empty log has no tiles to read).
func nonEmpty(hr tlog.HashReader) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		if len(idx) == 0 {
			return nil, nil
		}
		return hr.ReadHashes(idx)
	})
}
