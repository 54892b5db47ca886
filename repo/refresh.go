package repo

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
)

// RefreshResult says what a refresh re-signed.
type RefreshResult struct {
	// Signed lists the roles re-signed; empty when nothing was due.
	Signed []string `json:"signed"`
	// Warnings name roles that expire soon but are signed offline.
	Warnings []string `json:"warnings,omitempty"`
}

// due tells whether a role's metadata expires within its refresh window:
// window if set, else a quarter of the role's validity period, so a
// scheduled job running several times per period always gets there first.
func (w *Workspace) due(role string, expires time.Time, window time.Duration) bool {
	if window <= 0 {
		window = w.period(role) / 4
	}
	return !expires.After(w.now().Add(window))
}

// Refresh re-signs the online roles whose metadata expires within the
// window: the delegated roles and their bins, the snapshot, and the
// timestamp. It is idempotent: run it as often as you like.
func (w *Workspace) Refresh(ctx context.Context, window time.Duration) (*RefreshResult, error) {
	var res *RefreshResult
	err := w.update(ctx, func() error {
		res = &RefreshResult{}
		s, err := loadState(ctx, w.Storage)
		if err != nil {
			return err
		}
		for _, r := range []string{tuf.ROOT, tuf.TARGETS} {
			exp := s.root.Signed.Expires
			if r == tuf.TARGETS {
				exp = s.roles[tuf.TARGETS].Signed.Expires
			}
			if w.due(r, exp, window) {
				res.Warnings = append(res.Warnings, fmt.Sprintf("%s expires %s and is signed offline: stage and sign a new version (mtuf repo stage %s)", r, exp.Format(time.RFC3339), r))
			}
		}
		for _, name := range s.delegatedRoleNames() {
			md, err := s.role(ctx, name)
			if err != nil {
				return err
			}
			if w.due(name, md.Signed.Expires, window) {
				s.dirty[name] = true
			}
			if md.Signed.Delegations == nil || md.Signed.Delegations.SuccinctRoles == nil {
				continue
			}
			for _, bin := range md.Signed.Delegations.SuccinctRoles.GetRoles() {
				bmd, err := s.role(ctx, bin)
				if err != nil {
					return err
				}
				if w.due(bin, bmd.Signed.Expires, window) {
					s.dirty[bin] = true
				}
			}
		}
		switch {
		case len(s.dirty) > 0 || w.due(tuf.SNAPSHOT, s.snapshot.Signed.Expires, window):
			for _, role := range append(slices.Sorted(maps.Keys(s.dirty)), tuf.SNAPSHOT, tuf.TIMESTAMP) {
				if _, err := w.signers(ctx, s, role); err != nil {
					return err
				}
			}
			res.Signed = append(slices.Sorted(maps.Keys(s.dirty)), tuf.SNAPSHOT, tuf.TIMESTAMP)
			return s.commit(ctx, nil, w.signers, w.expiry)
		case w.due(tuf.TIMESTAMP, s.timestamp.Signed.Expires, window):
			res.Signed = []string{tuf.TIMESTAMP}
			return s.writeTimestamp(ctx, w.signers, w.expiry)
		}
		return nil
	})
	return res, err
}

// delegatedRoleNames lists the roles the top-level targets delegates to.
func (s *state) delegatedRoleNames() []string {
	var out []string
	if d := s.roles[tuf.TARGETS].Signed.Delegations; d != nil {
		for _, r := range d.Roles {
			out = append(out, r.Name)
		}
	}
	return out
}
