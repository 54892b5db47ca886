package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/trustedmetadata"

	"github.com/mtuf/mtuf/metadata"
)

// ErrStale marks trusted measurements that may no longer be current: the
// TUF metadata they were verified under has expired, or no longer lists
// them. An attacker who keeps a client from updating can hold it on old,
// possibly revoked, measurements only until that metadata expires.
var ErrStale = errors.New("trusted measurements are not current")

// ErrNoMeasurements is returned when no update has recorded measurements.
var ErrNoMeasurements = errors.New("no trusted measurements yet")

// maxDelegations bounds the delegation walk, as go-tuf's updater does
// (config.UpdaterConfig.MaxDelegations): the walks must agree.
const maxDelegations = 32

// Current returns the trusted measurements of the last updated image
// after checking, from the local trusted metadata and without network,
// that the metadata every trusted image was verified under (timestamp,
// snapshot, targets, and every delegated role on the way to their target)
// is unexpired at the client's reference time, and that it still lists
// them with the hashes of the measurements held. When it does not, the
// error wraps ErrStale, and go-tuf's typed error when there is one
// (ErrExpiredMetadata for an expired role).
func (c *Client) Current(ctx context.Context) (*metadata.Measurements, error) {
	images, err := c.CurrentImages(ctx)
	if err != nil {
		return nil, err
	}
	return images[len(images)-1].Measurements, nil
}

// CurrentImages returns every trusted image, checked as Current checks
// them, in the order of the update that trusted them.
func (c *Client) CurrentImages(ctx context.Context) ([]TrustedImage, error) {
	unlock, err := c.lockCurrent(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return c.current()
}

// UpdateCurrent updates the measurements of the images and platform of
// the last update, then checks them as Current does, under one hold of the
// state lock.
func (c *Client) UpdateCurrent(ctx context.Context) (*metadata.Measurements, error) {
	images, err := c.UpdateCurrentImages(ctx)
	if err != nil {
		return nil, err
	}
	return images[len(images)-1].Measurements, nil
}

// UpdateCurrentImages is UpdateCurrent returning every trusted image.
func (c *Client) UpdateCurrentImages(ctx context.Context) ([]TrustedImage, error) {
	unlock, err := c.lockCurrent(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if len(c.config.Images) == 0 {
		return nil, c.noMeasurements()
	}
	var names []string
	for _, ti := range c.config.Images {
		names = append(names, ti.Image)
	}
	if _, err := c.update(ctx, names, c.config.Platform); err != nil {
		return nil, err
	}
	return c.current()
}

// lockCurrent takes the state lock and reads the config again: another
// run may have updated it since Open, and what is trusted now is what
// counts.
func (c *Client) lockCurrent(ctx context.Context) (unlock func(), err error) {
	if unlock, err = c.lock(ctx); err != nil {
		return nil, err
	}
	if err := c.loadConfig(); err != nil {
		unlock()
		return nil, err
	}
	return unlock, nil
}

func (c *Client) noMeasurements() error {
	return fmt.Errorf("%w in %s: run 'mtuf client update --image V --platform P' first", ErrNoMeasurements, c.dir)
}

func (c *Client) current() ([]TrustedImage, error) {
	if len(c.config.Images) == 0 {
		return nil, c.noMeasurements()
	}
	for _, ti := range c.config.Images {
		if err := c.currentImage(ti); err != nil {
			return nil, err
		}
	}
	return c.config.Images, nil
}

func (c *Client) currentImage(trusted TrustedImage) error {
	m := trusted.Measurements
	name, err := metadata.MeasurementsTarget(trusted.Image, trusted.Platform)
	if err != nil {
		return damagedState(c.dir, configFile, err)
	}
	stale := func(err error) error {
		return fmt.Errorf("%w: image %s on %s: %w; run 'mtuf client update' to refresh them",
			ErrStale, trusted.Image, trusted.Platform, err)
	}
	_, tm, err := c.trustedRoot()
	if err != nil {
		return err
	}
	tm.RefTime = time.Now().UTC()
	if c.Now != nil {
		tm.RefTime = c.Now()
	}
	ti, err := c.findLocalTarget(tm, name)
	if err != nil {
		return stale(err)
	}
	// The cached target is the file the last download verified; the
	// trusted metadata must still name it, and it must hold what the
	// config trusts.
	data, err := os.ReadFile(filepath.Join(c.dir, targetsDir, url.PathEscape(name)))
	if err != nil {
		return stale(fmt.Errorf("target %s: %w", name, err))
	}
	if err := ti.VerifyLengthHashes(data); err != nil {
		return stale(fmt.Errorf("target %s is no longer the one the trusted metadata lists: %w", name, err))
	}
	cached, err := metadata.Parse(data)
	if err != nil {
		return stale(fmt.Errorf("target %s: %w", name, err))
	}
	a, errA := json.Marshal(cached)
	b, errB := json.Marshal(m)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		return stale(fmt.Errorf("the trusted metadata lists other measurements under %s than those trusted", name))
	}
	return nil
}

// findLocalTarget loads the cached top-level metadata into tm, then walks
// the delegations from targets to the role that lists name, loading each
// role from the cache and checking it against the role that delegates to
// it on this path.
func (c *Client) findLocalTarget(tm *trustedmetadata.TrustedMetadata, name string) (*tuf.TargetFiles, error) {
	read := func(role string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(c.dir, tufDir, url.PathEscape(role)+".json"))
		if err != nil {
			return nil, fmt.Errorf("trusted %s metadata: %w", role, err)
		}
		return data, nil
	}
	data, err := read(tuf.TIMESTAMP)
	if err != nil {
		return nil, err
	}
	if _, err := tm.UpdateTimestamp(data); err != nil {
		return nil, err
	}
	if data, err = read(tuf.SNAPSHOT); err != nil {
		return nil, err
	}
	if _, err := tm.UpdateSnapshot(data, true); err != nil {
		return nil, err
	}
	ti, err := walkDelegations(tm.Targets, name, nil, func(role, parent string) (*tuf.Metadata[tuf.TargetsType], error) {
		data, err := read(role)
		if err != nil {
			return nil, err
		}
		md, err := tm.UpdateDelegatedTargets(data, role, parent)
		if err != nil {
			return nil, fmt.Errorf("role %s: %w", role, err)
		}
		return md, nil
	})
	if err == nil {
		return ti, nil
	}
	if !errors.Is(err, errNotListed) {
		return nil, err
	}
	return nil, fmt.Errorf("the trusted metadata no longer lists target %s", name)
}
