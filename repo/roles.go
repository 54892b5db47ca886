package repo

import (
	"fmt"
	"math/bits"
	"strings"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/metadata"
)

// The delegated roles. The top-level targets role is signed offline and
// only delegates; each delegated role is signed by an online key (CI for
// measurements, the release pipeline for releases) and delegates in turn
// to succinct hash bins (TAP 15), so that a publish re-signs one bin and a
// client downloads one bin, never a file that grows with the whole history.
const (
	RoleMeasurements = "measurements"
	RoleReleases     = "releases"
)

// delegation describes one delegated role.
type delegation struct {
	name string
	// paths are TUF path patterns; go-tuf matches them segment by
	// segment, so each pattern has the depth of the target names.
	paths []string
	// defaultBins is the number of hash bins a new repository gets.
	defaultBins int
}

// Bin counts trade the snapshot's size (one entry per bin) against each
// bin's size (targets/bins entries). 256 measurement bins keep both near
// 25-70 KB at 100,000 targets; releases are far fewer.
var delegations = []delegation{
	{name: RoleMeasurements, paths: []string{"measurements/*/*/*"}, defaultBins: 256},
	{name: RoleReleases, paths: []string{"cli/*/*/*"}, defaultBins: 16},
}

func delegationFor(role string) (delegation, bool) {
	for _, d := range delegations {
		if d.name == role {
			return d, true
		}
	}
	return delegation{}, false
}

// binPrefix is the name prefix of a delegated role's bins.
func binPrefix(role string) string { return role + "-bin" }

// bitLength turns a bin count into TAP 15's bit_length.
func bitLength(bins int) (int, error) {
	if bins < 2 || bins > 1<<metadata.MaxBinBitLength || bins&(bins-1) != 0 {
		return 0, fmt.Errorf("bin count %d must be a power of two from 2 to %d", bins, 1<<metadata.MaxBinBitLength)
	}
	return bits.TrailingZeros(uint(bins)), nil
}

// onlineRoles are the roles whose keys a workspace records: everything a
// publish or a refresh signs. Root and top-level targets keys stay offline.
var onlineRoles = []string{RoleMeasurements, RoleReleases, tuf.SNAPSHOT, tuf.TIMESTAMP}

// signingRole is the role whose keys sign a metadata file: a bin is signed
// by the keys of the role that delegates to it.
func signingRole(role string) string {
	for _, d := range delegations {
		if role == d.name || strings.HasPrefix(role, binPrefix(d.name)+"-") {
			return d.name
		}
	}
	return role
}
