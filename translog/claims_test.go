package translog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"testing"
)

// claimStore is a memStore shared by appenders without a lock, as a
// bucket is: a tile or bundle is written once, and a checkpoint write can
// be made to fail, as a crash before it would.
type claimStore struct {
	*memStore
	failCheckpoint bool
	check          func(entry []byte) error
	checked        [][]byte
}

func (c *claimStore) WriteTile(ctx context.Context, name string, data []byte) error {
	c.mu.Lock()
	old, ok := c.files[name]
	c.mu.Unlock()
	if ok && !bytes.Equal(old, data) {
		return fmt.Errorf("%s: %w", name, fs.ErrExist)
	}
	return c.memStore.WriteTile(ctx, name, data)
}

func (c *claimStore) WriteCheckpoint(ctx context.Context, data []byte, tag string) error {
	if c.failCheckpoint {
		return errors.New("crashed before the checkpoint")
	}
	return c.memStore.WriteCheckpoint(ctx, data, tag)
}

func (c *claimStore) CheckClaimed(_ context.Context, entry []byte) error {
	c.checked = append(c.checked, entry)
	return c.check(entry)
}

// An entry claimed past the checkpoint by an appender that did not finish
// is taken over by the next one, across a bundle boundary too; a claim
// that does not extend the log, or one the store does not accept, stops
// the append with the checkpoint unchanged.
func TestAppendTakesOverClaims(t *testing.T) {
	l := newTestLog(t, nil, 0)
	ctx := context.Background()
	st := &claimStore{memStore: newMemStore(), check: func([]byte) error { return nil }}
	for v := int64(1); v <= 255; v++ {
		l.append(t, st, nil, v)
	}
	// Entry 255 ends the first bundle; its appender dies before the
	// checkpoint.
	st.failCheckpoint = true
	if _, err := Append(ctx, st, l.cfg.Origin, l.signer, nil, entry(1000)); err == nil {
		t.Fatal("the checkpoint write did not fail")
	}
	st.failCheckpoint = false
	a := l.append(t, st, nil, 256)
	if a.Index != 256 || a.Checkpoint.Size != 257 {
		t.Fatalf("appended at %d, size %d; want the claimed entry at 255 and this one at 256", a.Index, a.Checkpoint.Size)
	}
	if len(st.checked) != 1 || !bytes.Equal(st.checked[0], entry(1000)) {
		t.Fatalf("the store checked %d claimed entries", len(st.checked))
	}
	cp, err := l.cfg.Verify(st.files[CheckpointPath])
	if err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	if err := (&Reader{Fetch: st.Read}).Entries(ctx, cp, 0, func(_ int64, e []byte) error {
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 257 || !bytes.Equal(got[255], entry(1000)) || !bytes.Equal(got[256], entry(256)) {
		t.Fatalf("log of %d entries after taking over a claim", len(got))
	}

	next := Path(bundleTile(257, 258))
	prev := st.files[Path(bundleTile(256, 257))]
	for _, tc := range []struct {
		name  string
		claim []byte
		check func([]byte) error
		want  error
	}{
		{"a claim that does not extend the bundle", appendBundle(nil, entry(2000)), nil, ErrTampered},
		{"a claim of two entries", appendBundle(appendBundle(prev, entry(2000)), entry(2001)), nil, ErrTampered},
		{"a claim the store refuses", appendBundle(prev, entry(2000)), func([]byte) error { return fs.ErrPermission }, fs.ErrPermission},
	} {
		st.files[next] = tc.claim
		st.check = tc.check
		gen := st.gen
		_, err := Append(ctx, st, l.cfg.Origin, l.signer, nil, entry(257))
		if !errors.Is(err, tc.want) || !bytes.Contains([]byte(err.Error()), []byte(next)) {
			t.Errorf("%s: %v, want %v naming %s", tc.name, err, tc.want, next)
		}
		if st.gen != gen {
			t.Errorf("%s: the checkpoint was written", tc.name)
		}
	}
}
