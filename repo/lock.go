package repo

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/mtuf/mtuf/internal/safefile"
)

// Locker is a Storage that can serialize publishers. The file storage
// takes an exclusive lock on the repository directory; object storage
// does without and relies on conditional writes instead.
type Locker interface {
	Lock(ctx context.Context) (unlock func(), err error)
}

// lockFile is the lock's name in the repository directory; the HTTP
// handler never serves dot files.
const lockFile = ".mtuf-publish.lock"

// Lock implements Locker with a file lock that waits as long as ctx
// allows. The lock is released when the process dies, so a killed
// publisher never blocks the next one.
func (s *FileStorage) Lock(ctx context.Context) (func(), error) {
	unlock, err := safefile.Lock(ctx, filepath.Join(s.dir, lockFile), 0o644)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("another publisher holds the lock on %s: %w", s.dir, ctx.Err())
		}
		return nil, fmt.Errorf("lock %s: %w", s.dir, err)
	}
	return unlock, nil
}
