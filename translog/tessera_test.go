package translog

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"
)

// serveLog serves a store's files over HTTP at their names, as a
// repository's server does, so a tlog-tiles client reads them by their
// C2SP paths under /log/. It returns the log's URL.
func serveLog(t *testing.T, st *memStore) *url.URL {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, err := st.Read(r.Context(), strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL + "/" + Dir)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// tesseraProofs reads the log at u with tessera's client: the
// checkpoint, the entry bundle holding idx, and the inclusion proof of
// that entry and the consistency proof from old, all built by tessera
// from our tiles, then verified by merkle/proof against the checkpoint's
// root. It returns the first error on that path.
func tesseraProofs(ctx context.Context, u *url.URL, l testLog, idx, old uint64, oldRoot []byte) error {
	f, err := client.NewHTTPFetcher(u, nil)
	if err != nil {
		return err
	}
	v, err := fnote.NewVerifier(l.cfg.Key)
	if err != nil {
		return err
	}
	cp, _, _, err := client.FetchCheckpoint(ctx, f.ReadCheckpoint, v, l.cfg.Origin)
	if err != nil {
		return err
	}
	bundle, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, idx/256, cp.Size)
	if err != nil {
		return err
	}
	if int(idx%256) >= len(bundle.Entries) {
		return fmt.Errorf("entry bundle %d holds %d entries, not entry %d", idx/256, len(bundle.Entries), idx)
	}
	pb, err := client.NewProofBuilder(ctx, cp.Size, f.ReadTile)
	if err != nil {
		return err
	}
	ip, err := pb.InclusionProof(ctx, idx)
	if err != nil {
		return err
	}
	leaf := rfc6962.DefaultHasher.HashLeaf(bundle.Entries[idx%256])
	if err := proof.VerifyInclusion(rfc6962.DefaultHasher, idx, cp.Size, leaf, ip, cp.Hash); err != nil {
		return err
	}
	cons, err := pb.ConsistencyProof(ctx, old, cp.Size)
	if err != nil {
		return err
	}
	return proof.VerifyConsistency(rfc6962.DefaultHasher, old, cp.Size, cons, oldRoot, cp.Hash)
}

// Our log read by tessera's client, the reference tlog-tiles reader:
// proofs it builds from our tiles and entry bundles verify against our
// checkpoint, and stop verifying once a tile, a bundle or the checkpoint
// is altered.
func TestInteropTesseraClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l := newTestLog(t, nil, 0)
	st := newMemStore()
	var cps []Checkpoint
	for v := int64(1); v <= 600; v++ {
		cps = append(cps, l.append(t, st, nil, v).Checkpoint)
	}
	u := serveLog(t, st)

	for _, c := range []struct{ idx, old uint64 }{
		{0, 1}, {1, 7}, {255, 256}, {256, 300}, {511, 512}, {512, 513}, {599, 599},
	} {
		if err := tesseraProofs(ctx, u, l, c.idx, c.old, cps[c.old-1].Hash[:]); err != nil {
			t.Errorf("tessera's client on our log: entry %d, consistency from %d: %v", c.idx, c.old, err)
		}
	}
	// The entries tessera's bundle reader returns are the ones appended.
	f, err := client.NewHTTPFetcher(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, 2, 600)
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Entries) != 88 || !bytes.Equal(b.Entries[0], entry(513)) || !bytes.Equal(b.Entries[87], entry(600)) {
		t.Fatalf("tessera reads entry bundle 2 as %d entries, not entries 513..600", len(b.Entries))
	}

	// Each alteration must break a proof that verifies unaltered.
	flip := func(name string, at int) {
		st.mu.Lock()
		defer st.mu.Unlock()
		d := bytes.Clone(st.files[name])
		d[at] ^= 1
		st.files[name] = d
	}
	for _, c := range []struct {
		what, name string
		at         int
		idx, old   uint64
	}{
		// Leaf 1's hash is in entry 0's inclusion proof.
		{"a leaf hash in a full level-0 tile", Dir + "tile/0/000", 32, 0, 1},
		// Leaves 512.. form the right subtree of every proof in a tree of 600.
		{"a leaf hash in a partial level-0 tile", Dir + "tile/0/002.p/88", 40 * 32, 10, 1},
		// The level-8 node over leaves 256..511 is in entry 0's proof.
		{"a node in a level-1 tile", Dir + "tile/1/000.p/2", 32 + 5, 0, 256},
		// The bundle's first entry is entry 256.
		{"an entry in a bundle", Dir + "tile/entries/001", 2 + 3, 256, 300},
		{"the checkpoint's signed body", CheckpointPath, len(l.cfg.Origin) + 2, 0, 1},
	} {
		if err := tesseraProofs(ctx, u, l, c.idx, c.old, cps[c.old-1].Hash[:]); err != nil {
			t.Fatalf("untampered: entry %d, consistency from %d: %v", c.idx, c.old, err)
		}
		flip(c.name, c.at)
		err := tesseraProofs(ctx, u, l, c.idx, c.old, cps[c.old-1].Hash[:])
		if err == nil {
			t.Errorf("with %s (%s) altered, tessera's client still verifies entry %d and consistency from %d", c.what, c.name, c.idx, c.old)
		}
		t.Logf("%s altered: %v", c.what, err)
		flip(c.name, c.at)
	}
}
