// Package translog is the transparency log of an mtuf repository: a
// C2SP tlog-tiles log (https://c2sp.org/tlog-tiles) kept under log/ in the
// repository's own storage, with one entry for every snapshot the
// repository ever published, a checkpoint signed by the log key
// (https://c2sp.org/tlog-checkpoint, a signed note), and cosignatures from
// witnesses (https://c2sp.org/tlog-cosignature, gathered with the
// https://c2sp.org/tlog-witness protocol).
//
// The repository's root declares the log (Config): its origin, its public
// key, the witnesses' keys and how many of them must cosign. A client
// accepts a snapshot only when it is an entry of a checkpoint so signed
// and cosigned, and consistent with every checkpoint it saw before: a
// repository that shows one client a version it hides from everyone else
// (a split view) is caught, because every version a client accepts is in
// the one public log that witnesses keep append-only.
//
// Tiles and entry bundles are computed with golang.org/x/mod/sumdb/tlog,
// whose tiles are those of C2SP (RFC 6962 hashing, height 8); only the
// paths differ, and Path names them the C2SP way.
package translog

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Dir is the log's folder in repository storage.
const Dir = "log/"

// CheckpointPath is the name of the checkpoint in repository storage.
const CheckpointPath = Dir + "checkpoint"

// tileHeight is C2SP's: 256 hashes per full tile, 256 entries per bundle.
const tileHeight = 8

// RootField is the name of the custom field of root.json's signed part
// that declares the log. Being part of root, it is signed by the root
// keys and changes only through a root rotation.
const RootField = "x-mtuf-transparency-log"

// Config is what a repository's root declares about its log.
type Config struct {
	// Origin is the log's name, the first line of each checkpoint.
	Origin string `json:"origin"`
	// Key is the log's public key as a note verifier key
	// (ORIGIN+HASH+BASE64), which signs every checkpoint.
	Key string `json:"key"`
	// Witnesses cosign checkpoints; Quorum of them must cosign one for
	// clients to accept it.
	Witnesses []Witness `json:"witnesses,omitempty"`
	Quorum    int       `json:"quorum"`
}

// Witness is one witness the root names.
type Witness struct {
	// Name is the witness's key name, as its cosignatures carry it.
	Name string `json:"name"`
	// Key is the witness's Ed25519 public key as a note verifier key;
	// cosignatures are checked as cosignature/v1.
	Key string `json:"key"`
	// URL is where publishers reach it (its tlog-witness endpoint's
	// base); clients never contact witnesses.
	URL string `json:"url"`
}

// Check checks that a declared log is usable: a valid key whose name is
// the origin, valid distinct witness keys, and a quorum that they can meet.
func (c *Config) Check() error {
	if c.Origin == "" {
		return errors.New("transparency log: no origin")
	}
	v, err := note.NewVerifier(c.Key)
	if err != nil {
		return fmt.Errorf("transparency log %s: key %q is not a note verifier key: %w", c.Origin, c.Key, err)
	}
	if v.Name() != c.Origin {
		return fmt.Errorf("transparency log %s: its key is named %q; the log key's name must be the origin", c.Origin, v.Name())
	}
	return CheckWitnesses(c.Origin, c.Witnesses, c.Quorum)
}

// CheckWitnesses checks witnesses' keys and a quorum for the log origin.
func CheckWitnesses(origin string, witnesses []Witness, quorum int) error {
	c := &Config{Origin: origin, Witnesses: witnesses, Quorum: quorum}
	names := map[string]bool{}
	for _, w := range c.Witnesses {
		wv, err := witnessVerifier(w)
		if err != nil {
			return fmt.Errorf("transparency log %s: %w", c.Origin, err)
		}
		if names[wv.Name()] {
			return fmt.Errorf("transparency log %s: witness %s is named twice", c.Origin, wv.Name())
		}
		names[wv.Name()] = true
	}
	if c.Quorum < 0 || c.Quorum > len(c.Witnesses) {
		return fmt.Errorf("transparency log %s: quorum %d of %d witness(es) can never be met", c.Origin, c.Quorum, len(c.Witnesses))
	}
	return nil
}

// Entry is one log entry: a snapshot the repository published and the
// metadata files that the operation wrote with it.
//
// Its bytes, which the log hashes, are lines of text, sorted after the
// first:
//
//	mtuf-snapshot/v1
//	snapshot VERSION SHA256HEX
//	ROLE VERSION SHA256HEX
//	...
//
// ROLE is a TUF role name (root, targets, a delegated role or a hash bin);
// names never hold spaces.
type Entry struct {
	SnapshotVersion int64
	SnapshotSHA256  []byte
	Files           []File
}

// File is one metadata file an operation wrote.
type File struct {
	Role    string
	Version int64
	SHA256  []byte
}

const entryHeader = "mtuf-snapshot/v1"

// maxEntrySize bounds an entry: a bundle stores lengths in two bytes.
const maxEntrySize = 1<<16 - 1

// Marshal returns the entry's bytes.
func (e *Entry) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(entryHeader + "\n")
	fmt.Fprintf(&b, "snapshot %d %x\n", e.SnapshotVersion, e.SnapshotSHA256)
	files := slices.Clone(e.Files)
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Role, b.Role) })
	for _, f := range files {
		if f.Role == "" || strings.ContainsAny(f.Role, " \n") || f.Role == "snapshot" {
			return nil, fmt.Errorf("log entry: role name %q cannot be logged", f.Role)
		}
		fmt.Fprintf(&b, "%s %d %x\n", f.Role, f.Version, f.SHA256)
	}
	if b.Len() > maxEntrySize {
		return nil, fmt.Errorf("log entry for snapshot v%d is %d bytes, more than the %d an entry bundle holds", e.SnapshotVersion, b.Len(), maxEntrySize)
	}
	return b.Bytes(), nil
}

// ParseEntry reads an entry's bytes.
func ParseEntry(data []byte) (*Entry, error) {
	lines := strings.Split(string(data), "\n")
	if len(lines) < 3 || lines[0] != entryHeader || lines[len(lines)-1] != "" {
		return nil, errors.New("log entry: not an mtuf-snapshot/v1 entry")
	}
	e := &Entry{}
	for i, line := range lines[1 : len(lines)-1] {
		f := strings.Split(line, " ")
		if len(f) != 3 {
			return nil, fmt.Errorf("log entry: line %q is not ROLE VERSION SHA256", line)
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil || v < 1 {
			return nil, fmt.Errorf("log entry: line %q: bad version", line)
		}
		sum, err := hex.DecodeString(f[2])
		if err != nil || len(sum) != 32 {
			return nil, fmt.Errorf("log entry: line %q: bad SHA-256", line)
		}
		if i == 0 {
			if f[0] != "snapshot" {
				return nil, errors.New("log entry: the first line names no snapshot")
			}
			e.SnapshotVersion, e.SnapshotSHA256 = v, sum
			continue
		}
		e.Files = append(e.Files, File{Role: f[0], Version: v, SHA256: sum})
	}
	return e, nil
}

// Path is the name, in repository storage, of a tile or (at level -1)
// an entry bundle, as C2SP tlog-tiles names them.
func Path(t tlog.Tile) string {
	p := t.Path() // tile/8/L/NNN[.p/W], or tile/8/data/NNN[.p/W]
	p = strings.Replace(p, "tile/8/data/", "tile/entries/", 1)
	p = strings.Replace(p, "tile/8/", "tile/", 1)
	return Dir + p
}

// IsEntryBundle tells whether a name Path made is an entry bundle's.
func IsEntryBundle(name string) bool {
	return strings.HasPrefix(name, Dir+"tile/entries/")
}

// bundleTile is the entry bundle that holds entry i of a log of size n.
func bundleTile(i, n int64) tlog.Tile {
	t := tlog.Tile{H: tileHeight, L: -1, N: i >> tileHeight}
	w := n - t.N<<tileHeight
	t.W = int(min(w, 1<<tileHeight))
	return t
}

// splitBundle returns the entries of a bundle.
func splitBundle(data []byte) ([][]byte, error) {
	var out [][]byte
	for len(data) > 0 {
		if len(data) < 2 {
			return nil, errors.New("entry bundle: truncated length")
		}
		n := int(data[0])<<8 | int(data[1])
		if len(data) < 2+n {
			return nil, errors.New("entry bundle: truncated entry")
		}
		out = append(out, data[2:2+n])
		data = data[2+n:]
	}
	return out, nil
}

func appendBundle(bundle, entry []byte) []byte {
	bundle = append(bundle, byte(len(entry)>>8), byte(len(entry)))
	return append(bundle, entry...)
}
