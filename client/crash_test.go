package client_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/repo"
)

// A client process killed at any point of an update still holds its
// previous trusted state, and its next run succeeds. The repository is
// served slowly, so that the kills land in the middle of updates.
func TestUpdateKilledMidway(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "v1.0.0", 0x40)
	files := repo.Handler(f.repoDir)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(15 * time.Millisecond)
		files.ServeHTTP(w, r)
	}))
	defer srv.Close()
	c, state := f.client(t, srv.URL)
	if _, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm"); err != nil {
		t.Fatal(err)
	}
	fill := byte(0x40)
	for i := range 12 {
		// A new publish, so that the killed update has something to do.
		fill++
		f.publish(t, "v1.0.0", fill)
		cmd := exec.Command(os.Args[0], "-test.run=^TestUpdateChild$")
		cmd.Env = append(os.Environ(), "MTUF_UPDATE_CHILD="+state)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		var once sync.Once
		go func() { cmd.Wait(); once.Do(func() { close(done) }) }()
		select {
		case <-done:
		case <-time.After(time.Duration(rand.IntN(150)+5*i) * time.Millisecond):
			cmd.Process.Kill()
			<-done
		}
		// Whatever the kill interrupted, the state opens and holds a
		// valid set of measurements: the old or the new.
		cl, err := client.Open(state)
		if err != nil {
			t.Fatalf("kill %d: state unusable: %v", i, err)
		}
		m := cl.Config().Measurements
		if m == nil || !bytes.Equal(m.PCRs[4].Expected[:1], []byte{fill}) && !bytes.Equal(m.PCRs[4].Expected[:1], []byte{fill - 1}) {
			t.Fatalf("kill %d: measurements %+v", i, m)
		}
		// The next run succeeds and sees the newest measurements.
		got, err := cl.Update(context.Background(), "v1.0.0", "qemu-vtpm")
		if err != nil {
			t.Fatalf("update after kill %d: %v", i, err)
		}
		if got.PCRs[4].Expected[0] != fill {
			t.Fatalf("after kill %d: got %x, want %x", i, got.PCRs[4].Expected[0], fill)
		}
	}
	// The runs after the kills cleared what the killed ones left.
	if left, _ := filepath.Glob(filepath.Join(state, ".tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

// TestUpdateChild is the process TestUpdateKilledMidway kills; it does
// nothing in a normal run.
func TestUpdateChild(t *testing.T) {
	state := os.Getenv("MTUF_UPDATE_CHILD")
	if state == "" {
		return
	}
	c, err := client.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm"); err != nil {
		t.Fatal(err)
	}
}

// Two client runs on one state directory do not interleave: both succeed.
func TestConcurrentUpdates(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "v1.0.0", 0x40)
	_, state := f.client(t, f.repoDir)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.Open(state)
			if err == nil {
				_, err = c.Update(context.Background(), "v1.0.0", "qemu-vtpm")
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("run %d: %v", i, err)
		}
	}
}
