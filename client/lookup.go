package client

import (
	"errors"
	"fmt"
	"slices"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
)

// Delegated roles are verified along the path of each lookup. The TUF
// specification (5.6.7) verifies a delegated role with the keys and
// threshold of the role that delegates to it. go-tuf's updater keeps the
// roles it has loaded by name and, when a later lookup reaches a role of
// the same name through another delegator, trusts the one already loaded
// without checking it against that delegator's keys: a role signed for one
// parent would then be trusted for the paths of another. Every lookup in
// this package goes through LookupTarget, which checks each role on the
// walk against its delegator on that walk.

// errNotListed ends a delegation walk that found no role listing the
// target.
var errNotListed = errors.New("not listed")

// LookupTarget returns the signed description of target name, as the
// updater's GetTargetInfo does, after checking that every delegated role
// on the walk to it verifies with the keys and threshold of the role that
// delegates to it on this walk, whichever delegator the updater first
// loaded it through. Programs that drive go-tuf's updater themselves (the
// TUF conformance adapter is one) use it instead of GetTargetInfo. A
// target no role lists gives go-tuf's "target ... not found" error.
func LookupTarget(up *updater.Updater, name string) (*tuf.TargetFiles, error) {
	return NewLookup(up).Target(name)
}

// Lookup looks targets up as LookupTarget does, and remembers which
// delegations it has verified, so that many lookups with one updater (a
// listing of every target) check each delegation once. Like the updater,
// it is not safe for concurrent use.
type Lookup struct {
	up       *updater.Updater
	verified map[delegation]bool
}

// delegation is a role as its delegator holds it. The updater never
// replaces a role it has loaded, so a pair of the same metadata, once
// verified, stays verified; a role loaded anew is a new pair.
type delegation struct {
	parent, role *tuf.Metadata[tuf.TargetsType]
	name         string
}

// NewLookup returns a Lookup over up.
func NewLookup(up *updater.Updater) *Lookup {
	return &Lookup{up: up, verified: map[delegation]bool{}}
}

// Target returns the signed description of target name; see LookupTarget.
func (l *Lookup) Target(name string) (*tuf.TargetFiles, error) {
	ti, err := l.up.GetTargetInfo(name)
	if err != nil && !isNotFound(err) {
		return nil, err
	}
	notFound := err
	// go-tuf's walk loaded every role it visited; the same walk over
	// them, in the same order, checks each against its delegator here.
	trusted := l.up.GetTrustedMetadataSet()
	found, werr := walkDelegations(trusted.Targets, name, l.verified, func(role, parent string) (*tuf.Metadata[tuf.TargetsType], error) {
		return nil, fmt.Errorf("role %s, delegated by %s on the path of target %s, was not loaded", role, parent, name)
	})
	switch {
	case werr != nil && !errors.Is(werr, errNotListed):
		return nil, fmt.Errorf("target %s: %w", name, werr)
	case found != ti:
		return nil, fmt.Errorf("target %s: the delegation walk does not end on the role the updater found it in", name)
	case notFound != nil:
		return nil, notFound
	}
	return ti, nil
}

// walkDelegations is the pre-order depth-first walk of the delegations
// for target name that go-tuf's updater makes (TUF 5.6.7), over the
// targets-type roles in trusted: it returns the first role's entry for
// name, or errNotListed. A role not in trusted is loaded with load, which
// must verify it against parent; a role already in trusted, loaded before
// through any delegator, is verified against the one on this walk, unless
// verified records that pair as verified already (a nil verified records
// nothing).
func walkDelegations(trusted map[string]*tuf.Metadata[tuf.TargetsType], name string, verified map[delegation]bool,
	load func(role, parent string) (*tuf.Metadata[tuf.TargetsType], error)) (*tuf.TargetFiles, error) {
	type step struct{ role, parent string }
	stack := []step{{tuf.TARGETS, tuf.ROOT}}
	visited := map[string]bool{}
	for len(stack) > 0 && len(visited) <= maxDelegations {
		s := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if visited[s.role] {
			continue
		}
		md := trusted[s.role]
		if md == nil {
			var err error
			if md, err = load(s.role, s.parent); err != nil {
				return nil, err
			}
		} else if s.parent != tuf.ROOT {
			parent := trusted[s.parent]
			if parent == nil {
				return nil, fmt.Errorf("role %s: its delegator %s is not trusted", s.role, s.parent)
			}
			d := delegation{parent, md, s.role}
			if !verified[d] {
				if err := parent.VerifyDelegate(s.role, md); err != nil {
					return nil, fmt.Errorf("role %s as delegated by %s: %w", s.role, s.parent, err)
				}
				if verified != nil {
					verified[d] = true
				}
			}
		}
		if ti, ok := md.Signed.Targets[name]; ok {
			return ti, nil
		}
		visited[s.role] = true
		if md.Signed.Delegations == nil {
			continue
		}
		var children []step
		for _, r := range md.Signed.Delegations.GetRolesForTarget(name) {
			children = append(children, step{r.Name, s.role})
			if r.Terminating {
				stack = nil
				break
			}
		}
		slices.Reverse(children)
		stack = append(stack, children...)
	}
	return nil, errNotListed
}
