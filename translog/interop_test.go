package translog

import (
	"fmt"
	"strings"
	"testing"

	flog "github.com/transparency-dev/formats/log"
	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
)

// c2spReader reads node hashes from a log's files the way any C2SP
// tlog-tiles client does, from the spec alone: tiles of 256 hashes at
// levels 0, 8, 16, ..., named tile/L/NNN with x-prefixed path elements
// and .p/W for partial tiles, and every other node hashed from its
// children.
type c2spReader struct {
	files map[string][]byte
	size  uint64
}

func c2spTilePath(level, index, width uint64) string {
	s := fmt.Sprintf("%03d", index%1000)
	for index /= 1000; index > 0; index /= 1000 {
		s = fmt.Sprintf("x%03d/", index%1000) + s
	}
	p := fmt.Sprintf("log/tile/%d/%s", level, s)
	if width < 256 {
		p += fmt.Sprintf(".p/%d", width)
	}
	return p
}

func (r *c2spReader) node(level uint, index uint64) ([]byte, error) {
	if level%8 != 0 {
		l, err := r.node(level-1, 2*index)
		if err != nil {
			return nil, err
		}
		rt, err := r.node(level-1, 2*index+1)
		if err != nil {
			return nil, err
		}
		return rfc6962.DefaultHasher.HashChildren(l, rt), nil
	}
	tl := uint64(level / 8)
	nodesAtLevel := r.size >> level
	tile := index >> 8
	width := min(nodesAtLevel-tile<<8, 256)
	data, ok := r.files[c2spTilePath(tl, tile, width)]
	if !ok {
		return nil, fmt.Errorf("missing %s", c2spTilePath(tl, tile, width))
	}
	pos := index & 255
	return data[pos*32 : pos*32+32], nil
}

func (r *c2spReader) hashes(n proof.Nodes) ([][]byte, error) {
	var hs [][]byte
	for _, id := range n.IDs {
		h, err := r.node(id.Level, id.Index)
		if err != nil {
			return nil, err
		}
		hs = append(hs, h)
	}
	return n.Rehash(hs, rfc6962.DefaultHasher.HashChildren)
}

// Our log read by transparency-dev's own libraries: the checkpoint by
// formats/log with a formats/note verifier, proofs built from our tiles
// by merkle/proof (which tessera's client uses) and verified there.
func TestInteropTransparencyDev(t *testing.T) {
	l := newTestLog(t, nil, 0)
	st := newMemStore()
	var sizes []Checkpoint
	for v := int64(1); v <= 600; v++ {
		sizes = append(sizes, l.append(t, st, nil, v).Checkpoint)
	}
	v, err := fnote.NewVerifier(l.cfg.Key)
	if err != nil {
		t.Fatal(err)
	}
	cp, _, _, err := flog.ParseCheckpoint(st.files[CheckpointPath], l.cfg.Origin, v)
	if err != nil {
		t.Fatalf("formats/log cannot read our checkpoint: %v", err)
	}
	if cp.Size != 600 || string(cp.Hash) != string(sizes[599].Hash[:]) {
		t.Fatalf("formats/log reads size %d", cp.Size)
	}
	r := &c2spReader{files: st.files, size: cp.Size}
	for _, idx := range []uint64{0, 1, 255, 256, 511, 599} {
		nodes, err := proof.Inclusion(idx, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.hashes(nodes)
		if err != nil {
			t.Fatalf("inclusion proof of %d from our tiles: %v", idx, err)
		}
		leaf := rfc6962.DefaultHasher.HashLeaf(entry(int64(idx) + 1))
		if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, cp.Size, leaf, p, cp.Hash); err != nil {
			t.Fatalf("inclusion of %d: %v", idx, err)
		}
	}
	for _, old := range []uint64{1, 7, 256, 300, 599} {
		nodes, err := proof.Consistency(old, cp.Size)
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.hashes(nodes)
		if err != nil {
			t.Fatalf("consistency proof from %d from our tiles: %v", old, err)
		}
		if err := proof.VerifyConsistency(rfc6962.DefaultHasher, old, cp.Size, p, sizes[old-1].Hash[:], cp.Hash); err != nil {
			t.Fatalf("consistency from %d: %v", old, err)
		}
	}
	// Entry bundles as C2SP frames them: two-byte big-endian lengths.
	b := st.files["log/tile/entries/002.p/88"]
	if len(b) < 2 || int(b[0])<<8|int(b[1]) != len(entry(513)) || !strings.HasPrefix(string(b[2:]), entryHeader) {
		t.Fatal("entry bundle 002.p/88 is not framed as C2SP says")
	}
}
