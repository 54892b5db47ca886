// Package repo builds and maintains an mtuf TUF repository: the top-level
// roles, publishing measurements as targets, and the storage the repository
// lives on.
//
// A repository on storage is a tree of static files (see DESIGN.md):
//
//	metadata/N.root.json       every root version, forever
//	metadata/N.snapshot.json   consistent snapshots: write-once
//	metadata/N.targets.json    write-once
//	metadata/timestamp.json    the only file that is ever replaced
//	targets/<dir>/<sha256>.<name>  hash-prefixed target files, write-once
//
// Publishing writes targets first and timestamp.json last, so a reader that
// starts from timestamp.json sees either the whole old state or the whole
// new one, whatever point a publish stopped at.
package repo

import (
	"context"
	"errors"
)

// ErrNotFound is returned by Storage.Get for a name that does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned by Storage.PutOnce when a different file already
// has the name: write-once files are never replaced.
var ErrExists = errors.New("already exists with different content")

// Storage is where a repository lives. Names are slash-separated paths
// relative to the repository root, such as "metadata/1.root.json".
type Storage interface {
	// Get returns the content of name, or an error wrapping ErrNotFound.
	Get(ctx context.Context, name string) ([]byte, error)
	// PutOnce creates name with data. Writing the same bytes again is not
	// an error (a retried publish); different bytes fail with ErrExists.
	PutOnce(ctx context.Context, name string, data []byte) error
	// Replace atomically replaces name with data: readers see either the
	// old or the new content, never a mix. Only timestamp.json uses it.
	Replace(ctx context.Context, name string, data []byte) error
}
