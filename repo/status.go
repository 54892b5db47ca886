package repo

import (
	"context"
	"fmt"
	"sort"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// RoleStatus describes one role as the repository holds it now. For a
// role with hash bins, Bins counts them, Targets sums their targets and
// BinsExpire is the earliest expiry among them.
type RoleStatus struct {
	Role       string     `json:"role"`
	Version    int64      `json:"version"`
	Expires    time.Time  `json:"expires"`
	Threshold  int        `json:"threshold"`
	KeyIDs     []string   `json:"keyids"`
	Signatures int        `json:"signatures"`
	Online     bool       `json:"online"`
	Bins       int        `json:"bins,omitempty"`
	BinsExpire *time.Time `json:"binsExpire,omitempty"`
	Targets    int        `json:"targets"`
}

// Status is what 'mtuf repo status' reports.
type Status struct {
	Storage string       `json:"storage"`
	Roles   []RoleStatus `json:"roles"`
	// Warnings name every role that has expired or expires within the
	// window asked for.
	Warnings []string `json:"warnings"`
}

// Status reads the repository's current state, with warnings for every
// role that expires within the window.
func (w *Workspace) Status(ctx context.Context, window time.Duration) (*Status, error) {
	s, err := loadState(ctx, w.Storage)
	if err != nil {
		return nil, err
	}
	out := &Status{Storage: w.Config.Storage, Warnings: []string{}}
	add := func(role string, version int64, expires time.Time, sigs []tuf.Signature) (*RoleStatus, error) {
		ids, threshold, err := s.keysOf(ctx, role)
		if err != nil {
			return nil, err
		}
		n := 0
		for _, sig := range sigs {
			if contains(ids, sig.KeyID) {
				n++
			}
		}
		ids = append([]string(nil), ids...)
		sort.Strings(ids)
		online := len(w.Config.Keys[signingRole(role)]) > 0
		out.Roles = append(out.Roles, RoleStatus{Role: role, Version: version, Expires: expires, Threshold: threshold, KeyIDs: ids, Signatures: n, Online: online})
		w.warnExpiry(out, role, expires, w.warnWindow(role, online, window))
		return &out.Roles[len(out.Roles)-1], nil
	}
	targets := s.roles[tuf.TARGETS]
	for _, r := range []struct {
		role    string
		version int64
		expires time.Time
		sigs    []tuf.Signature
	}{
		{tuf.ROOT, s.root.Signed.Version, s.root.Signed.Expires, s.root.Signatures},
		{tuf.TARGETS, targets.Signed.Version, targets.Signed.Expires, targets.Signatures},
		{tuf.SNAPSHOT, s.snapshot.Signed.Version, s.snapshot.Signed.Expires, s.snapshot.Signatures},
		{tuf.TIMESTAMP, s.timestamp.Signed.Version, s.timestamp.Signed.Expires, s.timestamp.Signatures},
	} {
		rs, err := add(r.role, r.version, r.expires, r.sigs)
		if err != nil {
			return nil, err
		}
		if md, ok := s.roles[r.role]; ok {
			rs.Targets = len(md.Signed.Targets)
		}
	}
	for _, name := range s.delegatedRoleNames() {
		md, err := s.role(ctx, name)
		if err != nil {
			return nil, err
		}
		rs, err := add(name, md.Signed.Version, md.Signed.Expires, md.Signatures)
		if err != nil {
			return nil, err
		}
		if md.Signed.Delegations == nil || md.Signed.Delegations.SuccinctRoles == nil {
			continue
		}
		for _, bin := range md.Signed.Delegations.SuccinctRoles.GetRoles() {
			bmd, err := s.role(ctx, bin)
			if err != nil {
				return nil, err
			}
			rs.Bins++
			rs.Targets += len(bmd.Signed.Targets)
			if rs.BinsExpire == nil || bmd.Signed.Expires.Before(*rs.BinsExpire) {
				e := bmd.Signed.Expires
				rs.BinsExpire = &e
			}
		}
		if rs.BinsExpire != nil {
			w.warnExpiry(out, name+" bins", *rs.BinsExpire, w.warnWindow(name, rs.Online, window))
		}
	}
	return out, nil
}

// warnWindow is how early a role's expiry is worth a warning. An online
// role is re-signed by 'mtuf repo refresh' once it is due, so it warns
// only when refresh is overdue; an offline role warns within the window
// the caller asked for, to leave time for a signing ceremony.
func (w *Workspace) warnWindow(role string, online bool, window time.Duration) time.Duration {
	if online {
		return w.period(role) / 4
	}
	return window
}

func (w *Workspace) warnExpiry(st *Status, role string, expires time.Time, window time.Duration) {
	now := w.now()
	switch {
	case !expires.After(now):
		st.Warnings = append(st.Warnings, fmt.Sprintf("%s expired %s ago", role, now.Sub(expires).Round(time.Minute)))
	case window > 0 && expires.Before(now.Add(window)):
		st.Warnings = append(st.Warnings, fmt.Sprintf("%s expires in %s (%s)", role, expires.Sub(now).Round(time.Minute), expires.Format(time.RFC3339)))
	}
}

// Targets lists every target name the repository holds, from all bins.
func (w *Workspace) Targets(ctx context.Context) ([]string, error) {
	s, err := loadState(ctx, w.Storage)
	if err != nil {
		return nil, err
	}
	var out []string
	for name := range s.roles[tuf.TARGETS].Signed.Targets {
		out = append(out, name)
	}
	for _, role := range s.delegatedRoleNames() {
		md, err := s.role(ctx, role)
		if err != nil {
			return nil, err
		}
		if md.Signed.Delegations == nil || md.Signed.Delegations.SuccinctRoles == nil {
			continue
		}
		for _, bin := range md.Signed.Delegations.SuccinctRoles.GetRoles() {
			bmd, err := s.role(ctx, bin)
			if err != nil {
				return nil, err
			}
			for name := range bmd.Signed.Targets {
				out = append(out, name)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}
