package client

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
)

// writeFileAtomic writes data to a temporary file beside path, syncs it and
// renames it into place, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Chmod(mode)
	}
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}

func sortAvailable(a []Available) {
	sort.Slice(a, func(i, j int) bool {
		if a[i].Image != a[j].Image {
			return a[i].Image < a[j].Image
		}
		return a[i].Platform < a[j].Platform
	})
}
