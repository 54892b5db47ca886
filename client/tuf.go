package client

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/theupdateframework/go-tuf/v2/metadata/config"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// DefaultHTTPTimeout bounds one repository download when no HTTP client is
// given: metadata files are small, and targets are read whole into memory
// by go-tuf, so a download that takes longer is stuck.
const DefaultHTTPTimeout = 60 * time.Second

// UpdaterConfig says where a TUF updater finds a repository and where it
// keeps what it trusts. It is the low-level half of Client, for programs
// that drive go-tuf's updater themselves (the TUF conformance adapter is
// one): they get the fetcher Client uses, which reads the URLs Client
// accepts (http(s)://, s3:// and file://), bounds every read by the length
// the metadata allows, and reads an object store's 403 for the next root
// version as "no newer root".
type UpdaterConfig struct {
	// MetadataURL is the base URL of the repository's metadata (http://,
	// https://, s3:// or file://).
	MetadataURL string
	// TargetsURL is the base URL of its target files; "" means
	// MetadataURL + "/targets", go-tuf's default.
	TargetsURL string
	// MetadataDir keeps the trusted metadata under unversioned names
	// (root.json, timestamp.json, snapshot.json, targets.json, and one file
	// per delegated role). It is created if missing.
	MetadataDir string
	// TargetsDir caches verified target files under their URL-escaped
	// target paths (go-tuf's naming). It is created if missing.
	TargetsDir string
	// Root is the trusted root metadata to start from: the newest root the
	// caller trusts, usually MetadataDir's root.json.
	Root []byte
	// HTTPClient downloads from http(s) URLs; nil means a client with a
	// DefaultHTTPTimeout timeout.
	HTTPClient *http.Client
	// Now is the reference time for expiry checks; the zero value means the
	// current time.
	Now time.Time
}

// NewUpdater returns a go-tuf updater for the repository, starting from the
// trusted root, with consistent snapshots' hash-prefixed target names. Its
// downloads are cancelled with ctx. The updater is not safe for concurrent
// use, and performs one refresh in its lifetime, as go-tuf's are.
func NewUpdater(ctx context.Context, c UpdaterConfig) (*updater.Updater, error) {
	if c.MetadataURL == "" {
		return nil, errors.New("no repository metadata URL")
	}
	if len(c.Root) == 0 {
		return nil, errors.New("no trusted root metadata")
	}
	if c.MetadataDir == "" || c.TargetsDir == "" {
		return nil, errors.New("no directory for trusted metadata or for target files")
	}
	cfg, err := config.New(c.MetadataURL, c.Root)
	if err != nil {
		return nil, err
	}
	if c.TargetsURL != "" {
		cfg.RemoteTargetsURL = c.TargetsURL
	}
	cfg.LocalMetadataDir = c.MetadataDir
	cfg.LocalTargetsDir = c.TargetsDir
	cfg.PrefixTargetsWithHash = true
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultHTTPTimeout}
	}
	cfg.Fetcher = &fetcher{ctx: ctx, http: hc, metadataURL: strings.TrimSuffix(c.MetadataURL, "/")}
	up, err := updater.New(cfg)
	if err != nil {
		return nil, explain(err)
	}
	if !c.Now.IsZero() {
		up.UnsafeSetRefTime(c.Now)
	}
	return up, nil
}
