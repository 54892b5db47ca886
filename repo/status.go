package repo

import (
	"context"
	"sort"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// RoleStatus describes one role as the repository holds it now.
type RoleStatus struct {
	Role      string    `json:"role"`
	Version   int64     `json:"version"`
	Expires   time.Time `json:"expires"`
	Threshold int       `json:"threshold"`
	KeyIDs    []string  `json:"keyids"`
	// Signatures counts the signatures by keys of the role.
	Signatures int `json:"signatures"`
}

// Status is what 'mtuf repo status' reports.
type Status struct {
	Storage string       `json:"storage"`
	Roles   []RoleStatus `json:"roles"`
	Targets []string     `json:"targets"`
}

// Status reads the repository's current state.
func (w *Workspace) Status(ctx context.Context) (*Status, error) {
	s, err := loadState(ctx, w.Storage)
	if err != nil {
		return nil, err
	}
	out := &Status{Storage: w.Config.Storage}
	type roleMeta struct {
		name    string
		version int64
		expires time.Time
		sigs    []tuf.Signature
	}
	for _, r := range []roleMeta{
		{tuf.ROOT, s.root.Signed.Version, s.root.Signed.Expires, s.root.Signatures},
		{tuf.TARGETS, s.targets.Signed.Version, s.targets.Signed.Expires, s.targets.Signatures},
		{tuf.SNAPSHOT, s.snapshot.Signed.Version, s.snapshot.Signed.Expires, s.snapshot.Signatures},
		{tuf.TIMESTAMP, s.timestamp.Signed.Version, s.timestamp.Signed.Expires, s.timestamp.Signatures},
	} {
		role := s.root.Signed.Roles[r.name]
		n := 0
		for _, sig := range r.sigs {
			if contains(role.KeyIDs, sig.KeyID) {
				n++
			}
		}
		ids := append([]string(nil), role.KeyIDs...)
		sort.Strings(ids)
		out.Roles = append(out.Roles, RoleStatus{Role: r.name, Version: r.version, Expires: r.expires, Threshold: role.Threshold, KeyIDs: ids, Signatures: n})
	}
	for name := range s.targets.Signed.Targets {
		out.Targets = append(out.Targets, name)
	}
	sort.Strings(out.Targets)
	return out, nil
}
