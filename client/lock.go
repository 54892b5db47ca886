package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/mtuf/mtuf/internal/safefile"
)

// lockTimeout bounds how long a client run waits for another one on the
// same state directory.
const lockTimeout = 2 * time.Minute

// lock keeps two client runs on one state directory from interleaving
// their writes. It is a file lock in the directory, released by the kernel
// when a process dies, so a killed run never blocks the next.
func (c *Client) lock(ctx context.Context) (func(), error) {
	lctx, cancel := context.WithTimeout(ctx, lockTimeout)
	defer cancel()
	unlock, err := safefile.Lock(lctx, filepath.Join(c.dir, ".lock"), 0o600)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("another mtuf client run holds state %s; try again when it has finished", c.dir)
		}
		return nil, fmt.Errorf("lock state %s: %w", c.dir, err)
	}
	// Under the lock, what a killed run left half-written is nobody's:
	// clear it.
	for _, pat := range []string{filepath.Join(c.dir, safefile.TempPattern), filepath.Join(c.dir, tufDir, "tuf_tmp*")} {
		if left, _ := filepath.Glob(pat); left != nil {
			for _, p := range left {
				os.Remove(p)
			}
		}
	}
	return unlock, nil
}
