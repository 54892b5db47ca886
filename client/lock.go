package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// lockTimeout bounds how long a client run waits for another one on the
// same state directory.
const lockTimeout = 2 * time.Minute

// lock keeps two client runs on one state directory from interleaving
// their writes. It is an flock(2) on a file in the directory, released by
// the kernel when a process dies, so a killed run never blocks the next.
func (c *Client) lock(ctx context.Context) (func(), error) {
	f, err := os.OpenFile(filepath.Join(c.dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state %s: %w", c.dir, err)
	}
	deadline := time.Now().Add(lockTimeout)
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// Under the lock, what a killed run left half-written is
			// nobody's: clear it.
			for _, pat := range []string{filepath.Join(c.dir, ".tmp-*"), filepath.Join(c.dir, tufDir, "tuf_tmp*")} {
				if left, _ := filepath.Glob(pat); left != nil {
					for _, p := range left {
						os.Remove(p)
					}
				}
			}
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock state %s: %w", c.dir, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("another mtuf client run holds state %s; try again when it has finished", c.dir)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
