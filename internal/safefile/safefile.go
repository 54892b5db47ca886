// Package safefile writes files so that a crash leaves either the old
// content or the new one, never a part of it, and locks a directory
// against another process.
//
// Every writer of mtuf state, keys and repository files goes through here.
// Temporary files are named ".tmp-*" beside their target: dot files are
// never served by the repository's HTTP handler nor listed as metadata, and
// the client clears what a killed run left under that name.
//
// The writes are our own rather than a renameio package: go-internal's
// renameio is deprecated, creates every file 0600 and names its temporary
// files NAME*.tmp, which a web server serving the repository would hand
// out half-written; github.com/google/renameio/v2 does not build on Windows,
// where the mtuf client runs. Locks are go-internal's lockedfile, which is
// portable (flock, fcntl or LockFileEx) and released by the kernel when a
// process dies.
package safefile

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/rogpeppe/go-internal/lockedfile"
)

// TempPattern is the os.CreateTemp pattern of the temporary files written
// beside a target; filepath.Join(dir, TempPattern) globs the leftovers.
const TempPattern = ".tmp-*"

// WriteFile replaces path with data: the data goes to a temporary file in
// the same directory, is synced, gets mode perm exactly (no umask), and is
// renamed over path, after which the directory is synced too.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(filepath.Dir(path))
}

// Create writes data to path only if path does not exist yet, and reports
// an error matching fs.ErrExist otherwise. A rename would replace what is
// there, so the final step is a hard link, which the filesystem refuses
// atomically when the name is taken: of two writers racing, one wins.
func Create(path string, data []byte, perm fs.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s: %w", path, fs.ErrExist)
		}
		// A filesystem without hard links (FAT, some network mounts):
		// check again that nothing is in the way and rename. Only there can
		// two racing writers both succeed, the last one winning.
		if _, statErr := os.Lstat(path); statErr == nil {
			return fmt.Errorf("write %s: %w", path, fs.ErrExist)
		}
		if err := os.Rename(tmp, path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
	}
	return syncDir(filepath.Dir(path))
}

// writeTemp writes data, synced and with mode perm, to a new temporary file
// beside path and returns its name.
func writeTemp(path string, data []byte, perm fs.FileMode) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), TempPattern)
	if err != nil {
		return "", err
	}
	name := f.Name()
	// Chmod before writing, so that key material is never readable by
	// others even for a moment; CreateTemp made the file 0600.
	werr := f.Chmod(perm)
	if werr == nil {
		_, werr = f.Write(data)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(name)
		return "", werr
	}
	return name, nil
}

// syncDir makes a new directory entry durable, so that a file reported
// written survives a power loss. Windows has no such call for directories:
// NTFS journals the rename itself.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// Lock takes an exclusive lock on the file path, creating it with mode perm
// if needed, and waits until it is free or ctx is done; then it returns
// ctx's error. The lock is released by unlock, or by the kernel when the
// process dies, so a killed holder never blocks the next one.
//
// lockedfile can only wait, not try: when ctx ends first, a goroutine goes
// on waiting and releases the lock as soon as it gets it.
func Lock(ctx context.Context, path string, perm fs.FileMode) (unlock func(), err error) {
	type result struct {
		f   *lockedfile.File
		err error
	}
	got := make(chan result, 1)
	go func() {
		f, err := lockedfile.OpenFile(path, os.O_RDWR|os.O_CREATE, perm)
		got <- result{f, err}
	}()
	select {
	case r := <-got:
		if r.err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, r.err)
		}
		return func() { r.f.Close() }, nil
	case <-ctx.Done():
		go func() {
			if r := <-got; r.err == nil {
				r.f.Close()
			}
		}()
		return nil, ctx.Err()
	}
}
