package client

import (
	"context"
	"fmt"
	"path"
	"strconv"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/metadata"
)

// Available is one image version and platform the repository offers.
type Available struct {
	Image    string `json:"image"`
	Platform string `json:"platform"`
	Target   string `json:"target"`
}

// List refreshes the metadata and returns the measurements on offer. It
// loads every hash bin of the roles that hold measurements, so it costs
// one download per bin the first time and nothing once they are cached.
func (c *Client) List(ctx context.Context) ([]Available, error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	targets, err := c.loadAllMeasurementsBins(ctx)
	if err != nil && c.discardDamagedCache() {
		targets, err = c.loadAllMeasurementsBins(ctx)
	}
	if err != nil {
		return nil, err
	}
	var out []Available
	for name := range targets {
		if img, plat, ok := metadata.ParseMeasurementsTarget(name); ok {
			out = append(out, Available{Image: img, Platform: plat, Target: name})
		}
	}
	sortAvailable(out)
	return out, nil
}

func (c *Client) loadAllMeasurementsBins(ctx context.Context) (map[string]*tuf.TargetFiles, error) {
	up, err := c.refresh(ctx)
	if err != nil {
		return nil, err
	}
	return loadAllBins(up, "measurements/x/x/measurements.json")
}

// loadAllBins makes go-tuf load and verify the role that would hold
// sample and every hash bin it delegates to, and returns every target a
// lookup reaches in the roles then trusted, by name. go-tuf loads a bin
// only when asked for a target in it, so for each bin a target path that
// hashes into it is looked up; the lookup itself finds nothing. Each name
// is then looked up as a download would, along its own delegation path:
// an entry that a lookup would not end on, or would refuse, is not on
// offer.
func loadAllBins(up *updater.Updater, sample string) (map[string]*tuf.TargetFiles, error) {
	lookup := NewLookup(up)
	if _, err := lookup.Target(sample); err != nil && !isNotFound(err) {
		return nil, explain(err)
	}
	trusted := up.GetTrustedMetadataSet()
	var bins *tuf.SuccinctRoles
	if d := trusted.Targets[tuf.TARGETS].Signed.Delegations; d != nil {
		if roles := d.GetRolesForTarget(sample); len(roles) > 0 {
			if md := trusted.Targets[roles[0].Name]; md != nil && md.Signed.Delegations != nil {
				bins = md.Signed.Delegations.SuccinctRoles
			}
		}
	}
	if bins != nil {
		if err := checkBins(bins); err != nil {
			return nil, err
		}
		_, count := bins.GetSuffixLen()
		seen := map[string]bool{}
		dir := path.Dir(sample)
		// A bin is a hash prefix of the path, so about count*ln(count)
		// probes cover every bin; the bound stops a malicious bit length.
		for i := 0; len(seen) < count && i < 64*count; i++ {
			probe := dir + "/probe-" + strconv.Itoa(i)
			bin := bins.GetRolesForTarget(probe)[0].Name
			if seen[bin] {
				continue
			}
			seen[bin] = true
			if _, ok := trusted.Targets[bin]; ok {
				continue
			}
			if _, err := lookup.Target(probe); err != nil && !isNotFound(err) {
				return nil, explain(err)
			}
		}
		if len(seen) < count {
			return nil, fmt.Errorf("could not reach all %d hash bins", count)
		}
	}
	names := map[string]bool{}
	for _, md := range up.GetTrustedMetadataSet().Targets {
		for name := range md.Signed.Targets {
			names[name] = true
		}
	}
	out := map[string]*tuf.TargetFiles{}
	for name := range names {
		ti, err := lookup.Target(name)
		if err != nil && !isNotFound(err) {
			return nil, explain(err)
		}
		if ti != nil {
			out[name] = ti
		}
	}
	return out, nil
}

// checkBins refuses a hash-bin delegation of more bins than a repository
// makes, before anything is allocated per bin: a bit_length of 32 would
// have the listing probe 2^32 bins.
func checkBins(bins *tuf.SuccinctRoles) error {
	if bins.BitLength < 1 || bins.BitLength > metadata.MaxBinBitLength {
		return fmt.Errorf("repository content refused: the delegation to the %s-* hash bins has bit_length %d, outside 1 to %d (at most %d bins): the repository's metadata is damaged or forged",
			bins.NamePrefix, bins.BitLength, metadata.MaxBinBitLength, 1<<metadata.MaxBinBitLength)
	}
	return nil
}
