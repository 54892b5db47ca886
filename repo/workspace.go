package repo

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/mtuf/mtuf/keys"
)

// WorkspaceFile is the name of a workspace's configuration file.
const WorkspaceFile = "mtuf-workspace.json"

// Default expiry periods. Root is signed offline and rarely, so it lives
// a year; snapshot and timestamp are re-signed by an online key on a
// schedule, so a short life bounds how long a freeze attack can last.
// Delegated roles and their bins are signed online but rarely touched;
// 'mtuf repo refresh' re-signs them before they expire.
var DefaultExpiry = map[string]time.Duration{
	"root":           365 * 24 * time.Hour,
	"targets":        90 * 24 * time.Hour,
	"snapshot":       7 * 24 * time.Hour,
	"timestamp":      24 * time.Hour,
	RoleMeasurements: 90 * 24 * time.Hour,
	RoleReleases:     90 * 24 * time.Hour,
}

// workspaceVersion is the version of the workspace file format.
const workspaceVersion = 1

// WorkspaceConfig is what a maintainer's workspace records: where the
// repository lives and which keys sign the roles that are signed online.
// Root keys are never recorded: they are offline.
type WorkspaceConfig struct {
	Version int                 `json:"version"`
	Storage string              `json:"storage"`
	Keys    map[string][]string `json:"keys"`
	Expiry  map[string]Duration `json:"expiry"`
}

// Duration is a time.Duration that reads and writes as "720h0m0s".
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Workspace is a maintainer's working directory for one repository.
type Workspace struct {
	Dir     string
	Config  WorkspaceConfig
	Storage Storage
	// Keys resolves the key references of the workspace and of the
	// changes staged in it; nil means keys.Files{}, which reads key files
	// with passwords from the environment or the terminal.
	Keys keys.Resolver
	// Now is the clock used for expiry; nil means time.Now.
	Now func() time.Time

	// signerCache holds the keys unlocked so far, by signing role: a
	// key file is decrypted once per workspace, not once per signature.
	signerCache map[string][]signature.Signer
	// keyCache holds the online keys unlocked so far, by reference.
	keyCache map[string]unlockedKey
}

// OpenWorkspace reads the workspace in dir and opens its storage.
func OpenWorkspace(dir string) (*Workspace, error) {
	data, err := os.ReadFile(filepath.Join(dir, WorkspaceFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s is not an mtuf workspace (no %s): create one with 'mtuf repo init --workspace %s'", dir, WorkspaceFile, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("workspace %s: %w", dir, err)
	}
	var cfg WorkspaceConfig
	if err := json.Unmarshal(data, &cfg); err != nil {
		return nil, fmt.Errorf("workspace %s: corrupt %s: %w", dir, WorkspaceFile, err)
	}
	if cfg.Version != workspaceVersion {
		return nil, fmt.Errorf("workspace %s has format version %d; this mtuf reads version %d", dir, cfg.Version, workspaceVersion)
	}
	st, err := OpenStorage(context.Background(), cfg.Storage)
	if err != nil {
		return nil, fmt.Errorf("workspace %s: %w", dir, err)
	}
	return &Workspace{Dir: dir, Config: cfg, Storage: st, signerCache: map[string][]signature.Signer{}}, nil
}

func (w *Workspace) resolver() keys.Resolver {
	if w.Keys == nil {
		return keys.Files{}
	}
	return w.Keys
}

func (w *Workspace) now() time.Time {
	if w.Now != nil {
		return w.Now().UTC()
	}
	return time.Now().UTC()
}

// period is how long a role's metadata is valid once signed. Bins live
// as long as the role that delegates to them.
func (w *Workspace) period(role string) time.Duration {
	role = signingRole(role)
	d := DefaultExpiry[role]
	if v, ok := w.Config.Expiry[role]; ok && v > 0 {
		d = time.Duration(v)
	}
	return d
}

func (w *Workspace) expiry(role string) time.Time {
	return w.now().Add(w.period(role)).Truncate(time.Second)
}

func (w *Workspace) save() error {
	data, err := json.MarshalIndent(w.Config, "", "  ")
	if err != nil {
		return err
	}
	st, err := NewFileStorage(w.Dir)
	if err != nil {
		return err
	}
	return st.Replace(context.Background(), WorkspaceFile, append(data, '\n'))
}

// OpenStorage opens the storage named by a URL: file:///abs/dir, a plain
// directory path, or s3://BUCKET/PREFIX (see NewS3Storage).
func OpenStorage(ctx context.Context, raw string) (Storage, error) {
	if raw == "" {
		return nil, errors.New("no storage configured: give --storage file://DIR")
	}
	if !strings.Contains(raw, "://") {
		return NewFileStorage(raw)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("storage %q: %w", raw, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return nil, fmt.Errorf("storage %q: a file URL names a local directory, as file:///abs/dir", raw)
		}
		return NewFileStorage(u.Path)
	case "s3":
		return NewS3Storage(ctx, u)
	default:
		return nil, fmt.Errorf("storage %q: unsupported scheme %q (use file://DIR or s3://BUCKET/PREFIX)", raw, u.Scheme)
	}
}

// normalizeStorage turns a relative directory into an absolute file URL,
// so that a workspace keeps working from any current directory.
func normalizeStorage(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("no storage given: use --storage file://DIR")
	}
	p := raw
	if rest, ok := strings.CutPrefix(raw, "file://"); ok {
		// The path of a file URL is escaped, as OpenStorage reads it.
		var err error
		if p, err = url.PathUnescape(rest); err != nil {
			return "", fmt.Errorf("storage %q: %w", raw, err)
		}
	} else if strings.Contains(raw, "://") {
		return raw, nil
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	// Escape what a URL path cannot hold as is ("%", "?", "#"), so that
	// OpenStorage opens this very directory.
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String(), nil
}

// publicKey finds the public half of a key reference without a password
// where it can: NAME.pub beside NAME.key, or a public key file itself.
func publicKey(ctx context.Context, ref string, r keys.Resolver) (crypto.PublicKey, error) {
	if pub, err := r.Public(ctx, ref); err == nil {
		return pub, nil
	}
	if strings.HasSuffix(ref, ".key") {
		if pub, err := r.Public(ctx, strings.TrimSuffix(ref, ".key")+".pub"); err == nil {
			return pub, nil
		}
	}
	priv, err := r.Private(ctx, ref)
	if err != nil {
		return nil, err
	}
	return priv.Public(), nil
}
