package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
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

// Lock implements Locker with flock(2), polling so that ctx bounds the
// wait. The lock is released when the process dies, so a killed publisher
// never blocks the next one.
func (s *FileStorage) Lock(ctx context.Context) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", s.dir, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", s.dir, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("another publisher holds the lock on %s: %w", s.dir, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
