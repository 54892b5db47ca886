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

	"github.com/mtuf/mtuf/internal/safefile"
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
// synced, and hard-linked into place (safefile.Create): link fails if the
// name exists, so two writers cannot both create it, and a reader never
// sees a partial file.
func (s *FileStorage) PutOnce(ctx context.Context, name string, data []byte) error {
	p, err := s.path(name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	err = safefile.Create(p, data, 0o644)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return err
	}
	existing, rerr := os.ReadFile(p)
	if rerr != nil {
		return fmt.Errorf("write %s: %w", name, rerr)
	}
	if !bytes.Equal(existing, data) {
		return fmt.Errorf("write %s: %w", name, ErrExists)
	}
	return nil
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
	return safefile.WriteFile(p, data, 0o644)
}
