package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// FileStorage keeps a repository in a local directory, which any web
// server can serve as it is.
type FileStorage struct {
	dir string
}

// NewFileStorage returns storage rooted at dir, creating dir if needed.
func NewFileStorage(dir string) (*FileStorage, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("repository directory %s: %w", dir, err)
	}
	return &FileStorage{dir: dir}, nil
}

// Dir is the directory the repository lives in.
func (s *FileStorage) Dir() string { return s.dir }

func (s *FileStorage) path(name string) (string, error) {
	clean := path.Clean(name)
	if name == "" || clean != name || path.IsAbs(name) || strings.HasPrefix(clean, "../") || clean == ".." {
		return "", fmt.Errorf("storage name %q is not a clean relative path", name)
	}
	return filepath.Join(s.dir, filepath.FromSlash(name)), nil
}

// Get implements Storage.
func (s *FileStorage) Get(ctx context.Context, name string) ([]byte, error) {
	p, err := s.path(name)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", p, err)
	}
	return data, nil
}

// PutOnce implements Storage. The file is written to a temporary name,
// synced, and hard-linked into place: link fails if the name exists, so two
// writers cannot both create it, and a reader never sees a partial file.
func (s *FileStorage) PutOnce(ctx context.Context, name string, data []byte) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp, err := writeTemp(filepath.Dir(p), data)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, p); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("write %s: %w", name, err)
		}
		existing, rerr := os.ReadFile(p)
		if rerr != nil {
			return fmt.Errorf("write %s: %w", name, rerr)
		}
		if !bytes.Equal(existing, data) {
			return fmt.Errorf("write %s: %w", name, ErrExists)
		}
	}
	return syncDir(filepath.Dir(p))
}

// Replace implements Storage with write-to-temp, fsync and rename.
func (s *FileStorage) Replace(ctx context.Context, name string, data []byte) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp, err := writeTemp(filepath.Dir(p), data)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return syncDir(filepath.Dir(p))
}

func writeTemp(dir string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return "", err
	}
	name := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(0o644)
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

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
