package client

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// ErrDamagedState marks a state directory whose trusted root or config
// cannot be read back: nothing in it can be trusted any more, and the
// client has to be initialised again from a root the user trusts.
var ErrDamagedState = errors.New("client state damaged")

// damagedState reports a damaged file of the state directory, saying how
// to start again.
func damagedState(dir, file string, err error) error {
	return fmt.Errorf("state %s: %w: %s (%w): remove the directory and run 'mtuf client init --repo URL --root FILE' again",
		dir, ErrDamagedState, file, err)
}

// MalformedMetadataError is repository metadata that does not parse as the
// role it is served as. It is an ErrRepository for go-tuf's typed checks,
// and an ErrUntrusted refusal once through the client: a repository that
// serves it is either broken or attacked.
type MalformedMetadataError struct {
	// Role is the role the file was fetched for, File its name in the
	// repository's metadata directory.
	Role, File string
	Err        error
}

func (e *MalformedMetadataError) Error() string {
	return fmt.Sprintf("%s metadata %s does not parse: %v", e.Role, e.File, e.Err)
}

func (e *MalformedMetadataError) Unwrap() error { return e.Err }

// Is makes the error a go-tuf ErrRepository.
func (e *MalformedMetadataError) Is(target error) bool {
	_, ok := target.(*tuf.ErrRepository)
	return ok
}

// metadataRole returns the role of a metadata file name as go-tuf names
// them, remotely (N.role.json, timestamp.json) or in its cache
// (role.json), with ok false for a name that is not metadata.
func metadataRole(name string) (role string, ok bool) {
	base, ok := strings.CutSuffix(name, ".json")
	if !ok || base == "" {
		return "", false
	}
	if v, rest, found := strings.Cut(base, "."); found {
		if _, err := strconv.ParseUint(v, 10, 63); err == nil {
			base = rest
		}
	}
	role, err := url.PathUnescape(base)
	if err != nil || role == "" {
		return "", false
	}
	return role, true
}

// parseMetadata parses data as metadata of role, with go-tuf's own parser,
// so that it fails exactly where go-tuf would.
func parseMetadata(role string, data []byte) error {
	var err error
	switch role {
	case tuf.ROOT:
		_, err = tuf.Root().FromBytes(data)
	case tuf.TIMESTAMP:
		_, err = tuf.Timestamp().FromBytes(data)
	case tuf.SNAPSHOT:
		_, err = tuf.Snapshot().FromBytes(data)
	default:
		_, err = tuf.Targets().FromBytes(data)
	}
	return err
}

// discardDamagedCache removes from the metadata cache dir every file other
// than the trusted root that does not parse as its role. go-tuf reads its
// cache before downloading and gives up on a file that does not parse,
// where it would download again over one that is only invalid; without
// this, one damaged file makes every later update fail. The files are
// copies of what the repository serves, so nothing is lost. It tells
// whether it removed any.
func discardDamagedCache(dir string) (bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, fmt.Errorf("metadata cache %s: %w", dir, err)
	}
	removed := false
	for _, e := range entries {
		role, ok := metadataRole(e.Name())
		if !ok || role == tuf.ROOT || !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err == nil && parseMetadata(role, data) == nil {
			continue
		}
		if err := os.Remove(p); err != nil {
			return removed, fmt.Errorf("discard damaged %s: %w", p, err)
		}
		removed = true
	}
	return removed, nil
}
