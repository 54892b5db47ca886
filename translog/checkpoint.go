package translog

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Typed errors, so that a caller can tell an attack from a fault.
var (
	// ErrCheckpoint marks a checkpoint without the log's signature or
	// without a quorum of witness cosignatures.
	ErrCheckpoint = errors.New("checkpoint refused")
	// ErrFork marks two checkpoints of one log that are not consistent:
	// the log showed different histories to different readers.
	ErrFork = errors.New("the transparency log forked")
	// ErrShrunk marks a checkpoint smaller than one seen before.
	ErrShrunk = errors.New("the transparency log shrank")
	// ErrNotLogged marks a snapshot that is not the entry the log holds
	// where it should be: a split view.
	ErrNotLogged = errors.New("snapshot not in the transparency log")
	// ErrTampered marks tiles or entry bundles that do not hash to the
	// checkpoint.
	ErrTampered = errors.New("transparency log tiles do not match the checkpoint")
	// ErrForeignEntry marks an entry claimed past the checkpoint that no
	// appender of the log wrote (see Claims).
	ErrForeignEntry = errors.New("not written by a publisher of this repository")
)

// Checkpoint is a log's signed size and root hash.
type Checkpoint struct {
	Origin string
	Size   int64
	Hash   tlog.Hash
}

// Text returns the checkpoint's note text (C2SP tlog-checkpoint).
func (c Checkpoint) Text() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Hash[:]))
}

// parseText reads a checkpoint's note text; extension lines are ignored.
func parseText(text string) (Checkpoint, error) {
	lines := strings.SplitN(text, "\n", 4)
	if len(lines) < 4 {
		return Checkpoint{}, errors.New("checkpoint: fewer than three lines")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("checkpoint: bad size %q", lines[1])
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("checkpoint: bad root hash %q", lines[2])
	}
	c := Checkpoint{Origin: lines[0], Size: size}
	copy(c.Hash[:], h)
	return c, nil
}

// Verify checks a signed checkpoint against the log a root declares: the
// log key's signature and cosignatures from at least Quorum distinct
// witnesses. Signatures from other keys are ignored.
func (c *Config) Verify(signed []byte) (Checkpoint, error) {
	logV, err := note.NewVerifier(c.Key)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("transparency log %s: key: %w", c.Origin, err)
	}
	vs := []note.Verifier{logV}
	for _, w := range c.Witnesses {
		wv, err := witnessVerifier(w)
		if err != nil {
			return Checkpoint{}, fmt.Errorf("transparency log %s: %w", c.Origin, err)
		}
		vs = append(vs, wv)
	}
	n, err := note.Open(signed, note.VerifierList(vs...))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %s: %v", ErrCheckpoint, c.Origin, err)
	}
	logSigned := false
	cosigned := map[string]bool{}
	for _, s := range n.Sigs {
		if s.Name == logV.Name() && s.Hash == logV.KeyHash() {
			logSigned = true
			continue
		}
		cosigned[s.Name] = true
	}
	if !logSigned {
		return Checkpoint{}, fmt.Errorf("%w: %s: not signed by the log key the root declares", ErrCheckpoint, c.Origin)
	}
	if len(cosigned) < c.Quorum {
		return Checkpoint{}, fmt.Errorf("%w: %s: cosigned by %d witness(es), the root requires %d", ErrCheckpoint, c.Origin, len(cosigned), c.Quorum)
	}
	cp, err := parseText(n.Text)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	if cp.Origin != c.Origin {
		return Checkpoint{}, fmt.Errorf("%w: origin %q, the root declares %q", ErrCheckpoint, cp.Origin, c.Origin)
	}
	return cp, nil
}

// witnessVerifier returns the cosignature/v1 verifier of a witness.
func witnessVerifier(w Witness) (note.Verifier, error) {
	v, err := fnote.NewVerifierForCosignatureV1(w.Key)
	if err != nil {
		return nil, fmt.Errorf("witness %s: key %q is not an Ed25519 note verifier key: %w", w.Name, w.Key, err)
	}
	if v.Name() != w.Name {
		return nil, fmt.Errorf("witness %s: its key is named %q", w.Name, v.Name())
	}
	return v, nil
}

// Sign signs a checkpoint with the log key, an Ed25519 note signer key
// (PRIVATE+KEY+ORIGIN+HASH+BASE64).
func Sign(c Checkpoint, logKey note.Signer) ([]byte, error) {
	if logKey.Name() != c.Origin {
		return nil, fmt.Errorf("log key %s cannot sign checkpoints of log %s", logKey.Name(), c.Origin)
	}
	return note.Sign(&note.Note{Text: c.Text()}, logKey)
}
