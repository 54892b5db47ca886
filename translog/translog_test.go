package translog

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

// memStore is a Store in memory, with the conditional checkpoint write a
// repository's storage gives.
type memStore struct {
	mu    sync.Mutex
	files map[string][]byte
	gen   int
}

func newMemStore() *memStore { return &memStore{files: map[string][]byte{}} }

func (m *memStore) Read(_ context.Context, name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	d, ok := m.files[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
	}
	return d, nil
}

func (m *memStore) ReadCheckpoint(ctx context.Context) ([]byte, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.files[CheckpointPath], fmt.Sprint(m.gen), nil
}

func (m *memStore) WriteTile(_ context.Context, name string, data []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.files[name] = data
	return nil
}

var errConflict = errors.New("conflict")

func (m *memStore) WriteCheckpoint(_ context.Context, data []byte, tag string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if tag != fmt.Sprint(m.gen) {
		return errConflict
	}
	m.gen++
	m.files[CheckpointPath] = data
	return nil
}

type testLog struct {
	cfg    *Config
	signer note.Signer
}

func newTestLog(t testing.TB, witnesses []Witness, quorum int) testLog {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, "example.com/log")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{Origin: "example.com/log", Key: vkey, Witnesses: witnesses, Quorum: quorum}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	return testLog{cfg, s}
}

func entry(v int64) []byte {
	e := &Entry{SnapshotVersion: v, SnapshotSHA256: sum(fmt.Sprint("snap", v)), Files: []File{{Role: "measurements-0a", Version: v, SHA256: sum("bin")}}}
	b, err := e.Marshal()
	if err != nil {
		panic(err)
	}
	return b
}

func sum(s string) []byte {
	h := make([]byte, 32)
	copy(h, s)
	return h
}

func (l testLog) append(t testing.TB, st Store, cosign Cosigner, v int64) *Appended {
	t.Helper()
	a, err := Append(context.Background(), st, l.cfg.Origin, l.signer, cosign, entry(v))
	if err != nil {
		t.Fatalf("append snapshot v%d: %v", v, err)
	}
	return a
}

func TestAppendProveAndConsistency(t *testing.T) {
	l := newTestLog(t, nil, 0)
	st := newMemStore()
	ctx := context.Background()
	var cps []Checkpoint
	for v := int64(1); v <= 300; v++ {
		a := l.append(t, st, nil, v)
		if a.Index != v-1 {
			t.Fatalf("snapshot v%d at index %d", v, a.Index)
		}
		cps = append(cps, a.Checkpoint)
	}
	cp, err := l.cfg.Verify(st.files[CheckpointPath])
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 300 {
		t.Fatalf("size %d", cp.Size)
	}
	r := &Reader{Fetch: st.Read}
	for _, v := range []int64{300, 299} {
		idx, e, err := r.FindSnapshot(ctx, cp, v, sum(fmt.Sprint("snap", v)))
		if err != nil || idx != v-1 || e.SnapshotVersion != v {
			t.Fatalf("find v%d: %d %v", v, idx, err)
		}
	}
	// A snapshot signed but never logged: a split view.
	if _, _, err := r.FindSnapshot(ctx, cp, 301, sum("snap301")); !errors.Is(err, ErrNotLogged) {
		t.Fatalf("unlogged snapshot: %v", err)
	}
	// The same version with other bytes: a split view too.
	if _, _, err := r.FindSnapshot(ctx, cp, 300, sum("other")); !errors.Is(err, ErrNotLogged) {
		t.Fatalf("other snapshot v300: %v", err)
	}
	for _, old := range []Checkpoint{cps[0], cps[100], cps[255], cps[256], cps[298]} {
		if err := r.Consistent(ctx, old, cp); err != nil {
			t.Fatalf("consistency from %d: %v", old.Size, err)
		}
	}
	if err := r.Consistent(ctx, cp, cps[10]); !errors.Is(err, ErrShrunk) {
		t.Fatalf("shrunk: %v", err)
	}
	n := 0
	if err := r.Entries(ctx, cp, 0, func(i int64, e []byte) error {
		if string(e) != string(entry(i+1)) {
			return fmt.Errorf("entry %d differs", i)
		}
		n++
		return nil
	}); err != nil || n != 300 {
		t.Fatalf("entries: %d %v", n, err)
	}
}

func TestForkAndTamper(t *testing.T) {
	l := newTestLog(t, nil, 0)
	a, b := newMemStore(), newMemStore()
	ctx := context.Background()
	for v := int64(1); v <= 5; v++ {
		l.append(t, a, nil, v)
		l.append(t, b, nil, v)
	}
	l.append(t, a, nil, 6)
	forked, err := Append(ctx, b, l.cfg.Origin, l.signer, nil, []byte("mtuf-snapshot/v1\nsnapshot 6 "+strings.Repeat("ab", 32)+"\n"))
	if err != nil {
		t.Fatal(err)
	}
	l.append(t, a, nil, 7)
	cpA, _ := l.cfg.Verify(a.files[CheckpointPath])
	// A client that saw the fork's size 6 is shown the main log's 7.
	if err := (&Reader{Fetch: a.Read}).Consistent(ctx, forked.Checkpoint, cpA); !errors.Is(err, ErrFork) {
		t.Fatalf("fork: %v", err)
	}
	cpB, _ := l.cfg.Verify(b.files[CheckpointPath])
	cpA6 := Checkpoint{Origin: cpB.Origin, Size: 6}
	copy(cpA6.Hash[:], cpA.Hash[:])
	if err := (&Reader{Fetch: b.Read}).Consistent(ctx, cpA6, cpB); !errors.Is(err, ErrFork) {
		t.Fatalf("fork at equal size: %v", err)
	}
	// A tile rewritten: proofs built from it no longer verify.
	tile := Dir + "tile/0/000.p/7"
	good := a.files[tile]
	bad := append([]byte(nil), good...)
	bad[0] ^= 1
	a.files[tile] = bad
	if _, _, err := (&Reader{Fetch: a.Read}).FindSnapshot(ctx, cpA, 7, sum("snap7")); !errors.Is(err, ErrTampered) {
		t.Fatalf("tampered tile: %v", err)
	}
	if _, err := Append(ctx, a, l.cfg.Origin, l.signer, nil, entry(8)); !errors.Is(err, ErrTampered) {
		t.Fatalf("append over a tampered tile: %v", err)
	}
	a.files[tile] = good
	delete(a.files, Dir+"tile/entries/000.p/7")
	if _, _, err := (&Reader{Fetch: a.Read}).FindSnapshot(ctx, cpA, 7, sum("snap7")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing bundle: %v", err)
	}
}

type testWitness struct {
	Witness
	srv *httptest.Server
}

func newWitness(t testing.TB, name string, logs map[string]note.Verifier) testWitness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	ws := &WitnessServer{Signer: s, Logs: logs, Dir: t.TempDir()}
	srv := httptest.NewServer(ws)
	t.Cleanup(srv.Close)
	return testWitness{Witness{Name: name, Key: vkey, URL: srv.URL}, srv}
}

func TestWitnessQuorum(t *testing.T) {
	skey, vkey, _ := note.GenerateKey(rand.Reader, "example.com/log")
	signer, _ := note.NewSigner(skey)
	lv, _ := note.NewVerifier(vkey)
	logs := map[string]note.Verifier{"example.com/log": lv}
	w1, w2, w3 := newWitness(t, "w1", logs), newWitness(t, "w2", logs), newWitness(t, "w3", logs)
	w3.srv.Close() // one of three is down
	cfg := &Config{Origin: "example.com/log", Key: vkey, Witnesses: []Witness{w1.Witness, w2.Witness, w3.Witness}, Quorum: 2}
	if err := cfg.Check(); err != nil {
		t.Fatal(err)
	}
	st := newMemStore()
	ctx := context.Background()
	for v := int64(1); v <= 3; v++ {
		if _, err := Append(ctx, st, cfg.Origin, signer, Cosign(cfg, nil), entry(v)); err != nil {
			t.Fatalf("append v%d with 2 of 3 witnesses: %v", v, err)
		}
	}
	cp, err := cfg.Verify(st.files[CheckpointPath])
	if err != nil || cp.Size != 3 {
		t.Fatalf("verify cosigned checkpoint: %v %d", err, cp.Size)
	}
	// Without the witnesses' cosignatures the checkpoint is refused.
	bare, _ := Sign(cp, signer)
	if _, err := cfg.Verify(bare); !errors.Is(err, ErrCheckpoint) {
		t.Fatalf("uncosigned: %v", err)
	}
	// w2 refuses from now on: it is shown a fork of the log it cosigned.
	fork := newMemStore()
	for v := int64(1); v <= 3; v++ {
		if _, err := Append(ctx, fork, cfg.Origin, signer, nil, entry(v+100)); err != nil {
			t.Fatal(err)
		}
	}
	only2 := &Config{Origin: cfg.Origin, Key: vkey, Witnesses: []Witness{w2.Witness}, Quorum: 1}
	if _, err := Append(ctx, fork, cfg.Origin, signer, Cosign(only2, nil), entry(104)); !errors.Is(err, ErrNoQuorum) || !strings.Contains(err.Error(), "witness w2 refused") {
		t.Fatalf("witness shown a fork: %v", err)
	}
	if fork.gen != 3 {
		t.Fatalf("a publish without quorum wrote the checkpoint")
	}
	// Now only w1 cosigns: 1 of 2 required, nothing written.
	before := len(st.files)
	gen := st.gen
	w2.srv.Close()
	if _, err := Append(ctx, st, cfg.Origin, signer, Cosign(cfg, nil), entry(4)); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("append without quorum: %v", err)
	}
	if len(st.files) != before || st.gen != gen {
		t.Fatalf("append without quorum wrote to the log")
	}
}
