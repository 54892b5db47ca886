// Package client is the mtuf updater that an integrator embeds: it keeps a
// trusted copy of an mtuf repository's TUF metadata, fetches the
// measurements of an image version through it, verifies their in-toto
// supply chain, and updates the CLI itself.
//
// State lives in one directory:
//
//	config.json   the repository URL and the verified measurements
//	tuf/          trusted TUF metadata (root.json, timestamp.json, ...)
//	targets/      verified target files
//
// Every file is replaced atomically, and a lock keeps two runs on one
// state directory apart, so an interrupted update leaves the previous
// trusted state.
//
// The measurements it trusts (CurrentImages, one image or several during
// a rolling upgrade) are what package attest verifies nodes against:
// attest.Policy{Measurements: ..., Alternatives: ...}.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/metadata"
)

// ErrNotInitialized is returned when the state directory holds no client.
var ErrNotInitialized = errors.New("client not initialized")

// ErrUntrusted marks an update refused because the repository's metadata
// or a target failed a TUF check: a bad signature, an expired role, a
// rollback, a file whose hash or length differs from the signed one. It is
// what an attack looks like, as opposed to a network fault.
var ErrUntrusted = errors.New("repository content refused")

// Config is the client's config file.
type Config struct {
	Repository string `json:"repository"`
	// Image and Platform are those of the last image of the last update.
	Image    string `json:"image,omitempty"`
	Platform string `json:"platform,omitempty"`
	// Measurements are the TUF-verified reference values for Image on
	// Platform.
	Measurements *metadata.Measurements `json:"measurements,omitempty"`
	UpdatedAt    *time.Time             `json:"updatedAt,omitempty"`
	// Images are every image the client trusts at once, as a cluster in
	// the middle of a rolling upgrade runs two versions; the last one is
	// also in the fields above, which are all a config written before
	// there could be several holds.
	Images []TrustedImage `json:"images,omitempty"`
}

// TrustedImage is the TUF-verified measurements of one image version on
// one platform.
type TrustedImage struct {
	Image        string                 `json:"image"`
	Platform     string                 `json:"platform"`
	Measurements *metadata.Measurements `json:"measurements"`
	UpdatedAt    *time.Time             `json:"updatedAt,omitempty"`
}

// Client is a TUF client for one mtuf repository.
type Client struct {
	dir    string
	config Config
	// HTTPClient is used for repository downloads; nil means a client
	// with a 60 second timeout.
	HTTPClient *http.Client
	// Now is the reference time for expiry checks; nil means time.Now.
	Now func() time.Time
}

const (
	configFile = "config.json"
	tufDir     = "tuf"
	targetsDir = "targets"
)

// DefaultStateDir is where the client keeps its state when none is given:
// $MTUF_STATE, else the user's config directory.
func DefaultStateDir() (string, error) {
	if d := os.Getenv("MTUF_STATE"); d != "" {
		return d, nil
	}
	d, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("no state directory: give --state DIR or set MTUF_STATE (%w)", err)
	}
	return filepath.Join(d, "mtuf"), nil
}

// NormalizeRepositoryURL accepts http(s)://, s3:// and file:// URLs and
// plain directory paths, which become file URLs.
func NormalizeRepositoryURL(raw string) (string, error) {
	if raw == "" {
		return "", errors.New("no repository URL: give --repo URL")
	}
	if !strings.Contains(raw, "://") {
		abs, err := filepath.Abs(raw)
		if err != nil {
			return "", err
		}
		// Escape what a URL path cannot hold as is ("%", "?", "#"), so
		// that the fetcher, which parses the URL, opens this very
		// directory.
		return (&url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}).String(), nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("repository URL %q: %w", raw, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return "", fmt.Errorf("repository URL %q has no host", raw)
		}
	case "file":
		if u.Path == "" {
			return "", fmt.Errorf("repository URL %q names no directory: use file:///abs/dir", raw)
		}
		if strings.Trim(u.Path, "/") == "" {
			// The root directory: trimming its slash would leave none.
			return (&url.URL{Scheme: "file", Host: u.Host, Path: "/"}).String(), nil
		}
	case "s3":
		if u.Host == "" {
			return "", fmt.Errorf("repository URL %q has no bucket: use s3://BUCKET/PREFIX", raw)
		}
		if err := checkS3RepositoryURL(raw); err != nil {
			return "", err
		}
	default:
		return "", fmt.Errorf("repository URL %q: unsupported scheme %q (use https://, http://, s3:// or file://)", raw, u.Scheme)
	}
	// Every trailing slash: the updater appends "/metadata/..." itself.
	return strings.TrimRight(raw, "/"), nil
}

// Init creates a client in dir for the repository at repoURL, trusting
// root, which must be a valid root metadata file signed by its own
// threshold of keys.
func Init(dir, repoURL string, root []byte) (*Client, error) {
	u, err := NormalizeRepositoryURL(repoURL)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, configFile)); err == nil {
		return nil, fmt.Errorf("%s already holds an mtuf client; remove it or choose another --state", dir)
	}
	if _, err := trustedmetadata.New(root); err != nil {
		return nil, fmt.Errorf("initial root is not valid root metadata signed by its own keys: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(dir, tufDir), 0o700); err != nil {
		return nil, fmt.Errorf("state %s: %w", dir, err)
	}
	if err := writeFileAtomic(filepath.Join(dir, tufDir, "root.json"), root, 0o644); err != nil {
		return nil, err
	}
	c := &Client{dir: dir, config: Config{Repository: u}}
	if err := c.saveConfig(); err != nil {
		return nil, err
	}
	return c, nil
}

// Open opens an initialized client in dir.
func Open(dir string) (*Client, error) {
	c := &Client{dir: dir}
	if err := c.loadConfig(); err != nil {
		return nil, err
	}
	return c, nil
}

// loadConfig reads the config file. A config that does not parse, or that
// names no repository (a file of "null" parses), is damaged state.
func (c *Client) loadConfig() error {
	data, err := os.ReadFile(filepath.Join(c.dir, configFile))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w in %s: run 'mtuf client init --repo URL --root root.json' first", ErrNotInitialized, c.dir)
	}
	if err != nil {
		return fmt.Errorf("state %s: %w", c.dir, err)
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return damagedState(c.dir, configFile, err)
	}
	if cfg.Repository == "" {
		return damagedState(c.dir, configFile, errors.New("no repository URL"))
	}
	if cfg.Measurements != nil {
		if err := cfg.Measurements.Validate(); err != nil {
			return damagedState(c.dir, configFile, fmt.Errorf("measurements: %w", err))
		}
		if len(cfg.Images) == 0 {
			// A config of one image, as every config was before a
			// client could hold several.
			cfg.Images = []TrustedImage{{Image: cfg.Image, Platform: cfg.Platform, Measurements: cfg.Measurements, UpdatedAt: cfg.UpdatedAt}}
		}
	}
	for _, ti := range cfg.Images {
		if ti.Measurements == nil {
			return damagedState(c.dir, configFile, fmt.Errorf("image %s on %s has no measurements", ti.Image, ti.Platform))
		}
		if err := ti.Measurements.Validate(); err != nil {
			return damagedState(c.dir, configFile, fmt.Errorf("measurements of image %s: %w", ti.Image, err))
		}
		if ti.Measurements.Image != ti.Image || ti.Measurements.Platform != ti.Platform {
			return damagedState(c.dir, configFile, fmt.Errorf("image %s on %s holds the measurements of image %s on %s", ti.Image, ti.Platform, ti.Measurements.Image, ti.Measurements.Platform))
		}
	}
	c.config = cfg
	return nil
}

// Config returns the client's current configuration.
func (c *Client) Config() Config { return c.config }

func (c *Client) saveConfig() error {
	data, err := json.MarshalIndent(c.config, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.dir, configFile), append(data, '\n'), 0o644)
}

// trustedRoot reads the trusted root and checks that it is still root
// metadata signed by its own keys, as every root the client stored was.
func (c *Client) trustedRoot() ([]byte, *trustedmetadata.TrustedMetadata, error) {
	name := filepath.Join(tufDir, "root.json")
	root, err := os.ReadFile(filepath.Join(c.dir, name))
	if err != nil {
		return nil, nil, damagedState(c.dir, "trusted root "+name, err)
	}
	tm, err := trustedmetadata.New(root)
	if err != nil {
		return nil, nil, damagedState(c.dir, "trusted root "+name, err)
	}
	return root, tm, nil
}

func (c *Client) updater(ctx context.Context) (*updater.Updater, error) {
	root, _, err := c.trustedRoot()
	if err != nil {
		return nil, err
	}
	cfg := UpdaterConfig{
		MetadataURL: c.config.Repository + "/metadata",
		TargetsURL:  c.config.Repository + "/targets",
		MetadataDir: filepath.Join(c.dir, tufDir),
		TargetsDir:  filepath.Join(c.dir, targetsDir),
		Root:        root,
		HTTPClient:  c.HTTPClient,
	}
	if c.Now != nil {
		cfg.Now = c.Now()
	}
	return NewUpdater(ctx, cfg)
}

// Refresh brings the trusted metadata up to date with the repository,
// following the TUF client workflow.
func (c *Client) refresh(ctx context.Context) (*updater.Updater, error) {
	up, err := c.updater(ctx)
	if err != nil {
		return nil, err
	}
	before := c.saveTUFState()
	if err := up.Refresh(); err != nil {
		return nil, fmt.Errorf("update from %s: %w", c.config.Repository, explain(err))
	}
	if err := c.checkLogged(ctx, up, before); err != nil {
		return nil, err
	}
	return up, nil
}

// Update refreshes the trusted metadata, downloads the measurements for
// image on platform, checks them against their signed hashes, verifies
// their in-toto supply chain when the repository publishes a layout, and
// records them in the config as the trusted reference values, in place of
// every image trusted before. How the supply chain was verified, or why it
// was not, is then available from SupplyChain.
func (c *Client) Update(ctx context.Context, image, platform string) (*metadata.Measurements, error) {
	ms, err := c.UpdateImages(ctx, []string{image}, platform)
	if err != nil {
		return nil, err
	}
	return ms[0], nil
}

// UpdateImages is Update for several image versions of one platform, which
// the client then trusts together, in place of every image trusted before:
// a node that matches any of them is trusted, as a cluster in the middle of
// a rolling upgrade runs two versions. Either every image is verified and
// recorded, or nothing changes. SupplyChain describes the last image.
func (c *Client) UpdateImages(ctx context.Context, images []string, platform string) ([]*metadata.Measurements, error) {
	if len(images) == 0 {
		return nil, errors.New("no image version to update: give one or more")
	}
	seen := make(map[string]bool)
	for _, im := range images {
		if seen[im] {
			return nil, fmt.Errorf("image %s is given twice", im)
		}
		seen[im] = true
	}
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return c.update(ctx, images, platform)
}

// DropImage stops trusting image, on every platform it is trusted on,
// once a rolling upgrade has replaced it. The last trusted image cannot be
// dropped: update to another first.
func (c *Client) DropImage(ctx context.Context, image string) error {
	unlock, err := c.lockCurrent(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	var keep []TrustedImage
	var trusted []string
	for _, ti := range c.config.Images {
		trusted = append(trusted, ti.Image)
		if ti.Image != image {
			keep = append(keep, ti)
		}
	}
	switch {
	case len(keep) == len(c.config.Images):
		if len(trusted) == 0 {
			return fmt.Errorf("image %s is not trusted: no image is trusted yet", image)
		}
		return fmt.Errorf("image %s is not trusted (trusted: %s)", image, strings.Join(trusted, ", "))
	case len(keep) == 0:
		return fmt.Errorf("image %s is the only trusted image: update to another ('mtuf client update --image V --platform P') instead of dropping it", image)
	}
	c.setImages(keep)
	return c.saveConfig()
}

// setImages records images as the trusted ones, the last of them also in
// the fields of a one-image config.
func (c *Client) setImages(images []TrustedImage) {
	last := images[len(images)-1]
	c.config.Images = images
	c.config.Image, c.config.Platform, c.config.Measurements, c.config.UpdatedAt = last.Image, last.Platform, last.Measurements, last.UpdatedAt
}

// update is UpdateImages under the state lock. A failure that a damaged
// file of the metadata cache may have caused is retried once without it.
func (c *Client) update(ctx context.Context, images []string, platform string) ([]*metadata.Measurements, error) {
	ms, err := c.updateOnce(ctx, images, platform)
	if err != nil && c.discardDamagedCache() {
		ms, err = c.updateOnce(ctx, images, platform)
	}
	return ms, err
}

// discardDamagedCache drops the cached metadata files that do not parse,
// telling whether there were any.
func (c *Client) discardDamagedCache() bool {
	removed, err := discardDamagedCache(filepath.Join(c.dir, tufDir))
	return removed && err == nil
}

func (c *Client) updateOnce(ctx context.Context, images []string, platform string) ([]*metadata.Measurements, error) {
	for _, image := range images {
		if _, err := metadata.MeasurementsTarget(image, platform); err != nil {
			return nil, err
		}
	}
	up, err := c.refresh(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	ref := now
	if c.Now != nil {
		ref = c.Now()
	}
	var ms []*metadata.Measurements
	var trusted []TrustedImage
	var sc *SupplyChain
	for _, image := range images {
		var m *metadata.Measurements
		if m, sc, err = c.fetchMeasurements(up, image, platform, ref); err != nil {
			return nil, err
		}
		ms = append(ms, m)
		trusted = append(trusted, TrustedImage{Image: image, Platform: platform, Measurements: m, UpdatedAt: &now})
	}
	sc.UpdatedAt = now
	if err := c.saveSupplyChain(sc); err != nil {
		return nil, err
	}
	c.setImages(trusted)
	if err := c.saveConfig(); err != nil {
		return nil, err
	}
	return ms, nil
}

// fetchMeasurements downloads and verifies the measurements of image on
// platform, and their supply chain at time ref.
func (c *Client) fetchMeasurements(up *updater.Updater, image, platform string, ref time.Time) (*metadata.Measurements, *SupplyChain, error) {
	name, err := metadata.MeasurementsTarget(image, platform)
	if err != nil {
		return nil, nil, err
	}
	data, err := c.download(up, name)
	if err != nil {
		if errors.Is(err, errTargetNotFound) {
			return nil, nil, fmt.Errorf("the repository has no measurements for image %s on platform %s; run 'mtuf client list' to see what it offers", image, platform)
		}
		return nil, nil, err
	}
	m, err := metadata.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: target %s is signed but not a valid measurements document: %v", ErrUntrusted, name, err)
	}
	if m.Image != image || m.Platform != platform {
		return nil, nil, fmt.Errorf("%w: target %s holds measurements for image %s on %s", ErrUntrusted, name, m.Image, m.Platform)
	}
	sc, err := c.verifySupplyChain(up, name, m, data, ref)
	if err != nil {
		return nil, nil, err
	}
	return m, sc, nil
}

var errTargetNotFound = errors.New("target not found")

// isNotFound tells whether go-tuf's delegation walk ended without the
// target. go-tuf reports that with an untyped error, so its text is all
// there is to go by; typed download and verification errors are not it.
func isNotFound(err error) bool {
	return strings.HasSuffix(err.Error(), " not found") && !errors.Is(err, &tuf.ErrDownloadHTTP{}) && !errors.Is(err, &tuf.ErrRepository{})
}

// download returns a verified target, from the cache when it is there.
func (c *Client) download(up *updater.Updater, name string) ([]byte, error) {
	ti, err := LookupTarget(up, name)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("%s: %w", name, errTargetNotFound)
		}
		return nil, fmt.Errorf("target %s: %w", name, explain(err))
	}
	if err := os.MkdirAll(filepath.Join(c.dir, targetsDir), 0o700); err != nil {
		return nil, err
	}
	if _, data, err := up.FindCachedTarget(ti, ""); err == nil && data != nil {
		return data, nil
	}
	_, data, err := up.DownloadTarget(ti, "", "")
	if err != nil {
		return nil, fmt.Errorf("target %s: %w", name, explain(err))
	}
	return data, nil
}

// explain turns go-tuf's errors into what they mean for the user, keeping
// ErrUntrusted on every refusal that an attacker could cause.
func explain(err error) error {
	switch {
	case errors.Is(err, &tuf.ErrExpiredMetadata{}):
		return fmt.Errorf("%w: %w; the repository has not been refreshed in time, or someone is replaying old metadata (freeze attack); nothing trusted was changed", ErrUntrusted, err)
	case errors.Is(err, &tuf.ErrBadVersionNumber{}), errors.Is(err, &tuf.ErrEqualVersionNumber{}):
		return fmt.Errorf("%w: %w; metadata older than what this client already trusts was offered (rollback attack)", ErrUntrusted, err)
	case errors.Is(err, &tuf.ErrUnsignedMetadata{}):
		return fmt.Errorf("%w: %w; the metadata is not signed by the required threshold of trusted keys", ErrUntrusted, err)
	case errors.Is(err, &tuf.ErrLengthOrHashMismatch{}), errors.Is(err, &tuf.ErrDownloadLengthMismatch{}):
		return fmt.Errorf("%w: %w; a file from the repository differs from its signed length or hash (tampered on the server or in transit)", ErrUntrusted, err)
	case errors.Is(err, &tuf.ErrRepository{}):
		return fmt.Errorf("%w: %w", ErrUntrusted, err)
	case errors.Is(err, &tuf.ErrDownloadHTTP{}):
		return fmt.Errorf("repository unreachable or incomplete: %w", err)
	}
	return err
}

// Fetch downloads the measurements of image on platform and verifies them
// as Update does (TUF, then their in-toto supply chain), without trusting
// them: to compare image versions before an upgrade.
func (c *Client) Fetch(ctx context.Context, image, platform string) (*metadata.Measurements, error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	up, err := c.refresh(ctx)
	if err != nil {
		return nil, err
	}
	ref := time.Now().UTC()
	if c.Now != nil {
		ref = c.Now()
	}
	m, _, err := c.fetchMeasurements(up, image, platform, ref)
	return m, err
}
