package client

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/mtuf/mtuf/internal/safefile"
)

// writeFileAtomic replaces path with data so that a crash leaves the old
// file or the new one, creating the state directories it needs.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return safefile.WriteFile(path, data, mode)
}

func sortAvailable(a []Available) {
	sort.Slice(a, func(i, j int) bool {
		if a[i].Image != a[j].Image {
			return a[i].Image < a[j].Image
		}
		return a[i].Platform < a[j].Platform
	})
}
