package repo

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/merkle/proof"
	"github.com/transparency-dev/merkle/rfc6962"
	"github.com/transparency-dev/tessera/client"

	"github.com/mtuf/mtuf/translog"
)

// A repository's log, as Handler serves it from directory storage, read
// by tessera's client: the checkpoint verifies with the root's log key,
// the entry bundles hold the entries we logged, and the inclusion proof of
// every entry and the consistency proof from every earlier checkpoint,
// built by tessera from the served tiles, verify against the checkpoint.
func TestLogReadByTesseraClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newLogRepo(t, nil, 0)
	var cps []translog.Checkpoint
	mark := func() {
		cp, _ := logEntries(t, r)
		cps = append(cps, cp)
	}
	mark()
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "qemu-vtpm", 1)}); err != nil {
		t.Fatal(err)
	}
	mark()
	for range 2 {
		if _, err := r.ws.Refresh(ctx, 10000*time.Hour); err != nil {
			t.Fatal(err)
		}
		mark()
	}
	cp := cps[len(cps)-1]
	if len(cps) < 3 || cps[0].Size < 1 || cp.Size >= 256 {
		t.Fatalf("checkpoints %v: want a log of under 256 entries, with entries before each operation", cps)
	}

	srv := httptest.NewServer(Handler(r.storage))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL + "/" + translog.Dir)
	if err != nil {
		t.Fatal(err)
	}
	c := rootLog(t, r)
	read := func() error {
		f, err := client.NewHTTPFetcher(u, nil)
		if err != nil {
			return err
		}
		v, err := fnote.NewVerifier(c.Key)
		if err != nil {
			return err
		}
		tcp, _, _, err := client.FetchCheckpoint(ctx, f.ReadCheckpoint, v, c.Origin)
		if err != nil {
			return err
		}
		if int64(tcp.Size) != cp.Size || !bytes.Equal(tcp.Hash, cp.Hash[:]) {
			return fmt.Errorf("tessera reads checkpoint size %d, we wrote %d", tcp.Size, cp.Size)
		}
		b, err := client.GetEntryBundle(ctx, f.ReadEntryBundle, 0, tcp.Size)
		if err != nil {
			return err
		}
		if len(b.Entries) != int(tcp.Size) {
			return fmt.Errorf("tessera reads %d entries in a log of %d", len(b.Entries), tcp.Size)
		}
		pb, err := client.NewProofBuilder(ctx, tcp.Size, f.ReadTile)
		if err != nil {
			return err
		}
		for i, e := range b.Entries {
			p, err := pb.InclusionProof(ctx, uint64(i))
			if err != nil {
				return err
			}
			if err := proof.VerifyInclusion(rfc6962.DefaultHasher, uint64(i), tcp.Size, rfc6962.DefaultHasher.HashLeaf(e), p, tcp.Hash); err != nil {
				return fmt.Errorf("inclusion of entry %d: %w", i, err)
			}
			if _, err := translog.ParseEntry(e); err != nil {
				return fmt.Errorf("entry %d as tessera reads it: %w", i, err)
			}
		}
		for _, old := range cps {
			p, err := pb.ConsistencyProof(ctx, uint64(old.Size), tcp.Size)
			if err != nil {
				return err
			}
			if err := proof.VerifyConsistency(rfc6962.DefaultHasher, uint64(old.Size), tcp.Size, p, old.Hash[:], tcp.Hash); err != nil {
				return fmt.Errorf("consistency from %d: %w", old.Size, err)
			}
		}
		return nil
	}
	if err := read(); err != nil {
		t.Fatalf("tessera's client on the served log: %v", err)
	}

	// A bit flipped in the served leaf tile or entry bundle must stop the
	// proofs verifying.
	for _, name := range []string{
		translog.Dir + "tile/0/" + partial(cp.Size),
		translog.Dir + "tile/entries/" + partial(cp.Size),
	} {
		p := filepath.Join(r.storage, filepath.FromSlash(name))
		orig, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		bad := bytes.Clone(orig)
		bad[len(bad)-1] ^= 1
		if err := os.WriteFile(p, bad, 0o644); err != nil {
			t.Fatal(err)
		}
		err = read()
		if err == nil {
			t.Errorf("with %s altered, tessera's client still verifies the log", name)
		}
		t.Logf("%s altered: %v", name, err)
		if err := os.WriteFile(p, orig, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// partial is the name of the first, partial tile of a log smaller than 256.
func partial(size int64) string {
	return "000.p/" + strconv.FormatInt(size, 10)
}
