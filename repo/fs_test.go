package repo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestFileStorage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := NewFileStorage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "metadata/1.root.json"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing file: %v", err)
	}
	if err := st.PutOnce(ctx, "metadata/1.root.json", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := st.PutOnce(ctx, "metadata/1.root.json", []byte("a")); err != nil {
		t.Errorf("same bytes again: %v", err)
	}
	if err := st.PutOnce(ctx, "metadata/1.root.json", []byte("b")); !errors.Is(err, ErrExists) {
		t.Errorf("different bytes: %v, want ErrExists", err)
	}
	if got, _ := st.Get(ctx, "metadata/1.root.json"); string(got) != "a" {
		t.Errorf("write-once file changed to %q", got)
	}
	if err := st.Replace(ctx, "metadata/timestamp.json", []byte("1")); err != nil {
		t.Fatal(err)
	}
	if err := st.Replace(ctx, "metadata/timestamp.json", []byte("2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(ctx, "metadata/timestamp.json"); string(got) != "2" {
		t.Errorf("replaced file = %q", got)
	}
	for _, bad := range []string{"../x", "/etc/passwd", "a/../../b", "", "a//b"} {
		if err := st.PutOnce(ctx, bad, []byte("x")); err == nil {
			t.Errorf("PutOnce(%q) accepted", bad)
		}
	}
	// No temporary files are left behind.
	entries, _ := os.ReadDir(filepath.Join(st.Dir(), "metadata"))
	if len(entries) != 2 {
		t.Errorf("metadata dir holds %d entries, want 2", len(entries))
	}
}

// Two writers creating one write-once name: exactly one wins.
func TestFileStoragePutOnceRace(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := NewFileStorage(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = st.PutOnce(ctx, "metadata/2.targets.json", []byte{byte('a' + i)})
		}()
	}
	wg.Wait()
	wins := 0
	for _, err := range errs {
		if err == nil {
			wins++
		} else if !errors.Is(err, ErrExists) {
			t.Errorf("unexpected error %v", err)
		}
	}
	if wins != 1 {
		t.Errorf("%d writers succeeded, want 1", wins)
	}
}
