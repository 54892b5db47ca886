package repo

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"path"
	"reflect"
	"slices"
	"strings"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/metadata"
)

// Target is one file to publish under a target name.
type Target struct {
	Name   string
	Data   []byte
	Custom any
	// measurements are what Data holds when it is a measurements
	// document: a target that holds the same measurements in other bytes
	// is the same content.
	measurements *metadata.Measurements
}

// Release is a CLI binary for one platform.
type Release struct {
	Binary            []byte
	Version, OS, Arch string
}

// PublishRequest is one publish: the measurements of an image version on
// a platform, a CLI release, or both, made visible to clients at once.
type PublishRequest struct {
	Measurements *metadata.Measurements
	// Document is the measurements file as its author wrote it, if there
	// is one. It is published byte for byte when it is the JSON of
	// Measurements up to whitespace and the order of fields, so that its
	// sha256sum is the target's hash; otherwise Measurements are published
	// in canonical form.
	Document []byte
	Release  *Release
	// Targets are further files (in-toto links, for instance).
	Targets []Target
	// Replace allows new content for a target that is already published.
	// Without it such a publish is refused: the measurements of a
	// released image do not change silently.
	Replace bool
	// AllowUnprofiledPlatform publishes measurements for a platform that
	// has no PCR profile (metadata.Platforms). Without it such a publish
	// is refused: nothing then says which PCRs the image determines.
	AllowUnprofiledPlatform bool
}

// PublishedTarget says what happened to one target.
type PublishedTarget struct {
	Name       string `json:"name"`
	SHA256     string `json:"sha256"`
	Length     int64  `json:"length"`
	Bin        string `json:"bin"`
	BinVersion int64  `json:"binVersion"`
	Unchanged  bool   `json:"unchanged"`
}

// PublishResult says what a publish wrote.
type PublishResult struct {
	Targets          []PublishedTarget `json:"targets"`
	SnapshotVersion  int64             `json:"snapshotVersion"`
	TimestampVersion int64             `json:"timestampVersion"`
	// Unchanged is set when every target was already published as it is.
	Unchanged bool `json:"unchanged"`
}

// maxPublishAttempts bounds the retries of a publish that lost a race
// against another publisher on storage without locks.
const maxPublishAttempts = 8

// lockTimeout bounds the wait for another publisher's lock.
const lockTimeout = 2 * time.Minute

// Publish adds the request's targets, re-signing only the bins that hold
// them, then snapshot and timestamp.
func (w *Workspace) Publish(ctx context.Context, req PublishRequest) (*PublishResult, error) {
	targets := append([]Target(nil), req.Targets...)
	if m := req.Measurements; m != nil {
		if err := m.Validate(); err != nil {
			return nil, fmt.Errorf("measurements: %w", err)
		}
		if err := CheckMeasurements(m, req.AllowUnprofiledPlatform); err != nil {
			return nil, fmt.Errorf("measurements of %s on %s: %w", m.Image, m.Platform, err)
		}
		name, err := metadata.MeasurementsTarget(m.Image, m.Platform)
		if err != nil {
			return nil, err
		}
		data, err := m.Marshal()
		if err != nil {
			return nil, err
		}
		if sameJSON(req.Document, data) {
			data = req.Document
		}
		targets = append(targets, Target{Name: name, Data: data, Custom: metadata.TargetCustom{Image: m.Image, Platform: m.Platform}, measurements: m})
	}
	if req.Release != nil {
		if _, err := metadata.CLITarget(req.Release.Version, req.Release.OS, req.Release.Arch); err != nil {
			return nil, err
		}
	}
	if len(targets) == 0 && req.Release == nil {
		return nil, errors.New("nothing to publish: give measurements, a CLI release, or both")
	}
	var res *PublishResult
	err := w.update(ctx, func() error {
		// Checked under the publish lock, on the state this publish
		// builds on: a layout published meanwhile still counts.
		if req.Measurements != nil {
			if err := w.refuseWithoutLinks(ctx); err != nil {
				return err
			}
		}
		var err error
		res, err = w.tryPublish(ctx, targets, req.Release, req.Replace)
		return err
	})
	return res, err
}

// ErrUnprofiledPlatform reports measurements for a platform without a PCR
// profile, published without PublishRequest.AllowUnprofiledPlatform.
var ErrUnprofiledPlatform = errors.New("no PCR profile")

// CheckMeasurements refuses measurements that would make clients trust a
// node they should not: measurements for a platform without a PCR profile
// unless allowUnprofiled, and enforced PCRs in their reset state (see
// metadata.Measurements.CheckNotReset), which a TPM that measured nothing
// holds. Publish and PublishWithLinks run it on every document.
func CheckMeasurements(m *metadata.Measurements, allowUnprofiled bool) error {
	var profile *metadata.Profile
	if slices.Contains(metadata.Platforms(), m.Platform) {
		p, err := metadata.ProfileFor(m.Platform)
		if err != nil {
			return err
		}
		profile = p
	} else if !allowUnprofiled {
		return fmt.Errorf("platform %q has %w (profiles exist for %s): nothing says which of its PCRs the image determines; publish for one of those platforms, or allow an unprofiled platform explicitly",
			m.Platform, ErrUnprofiledPlatform, strings.Join(metadata.Platforms(), ", "))
	}
	return m.CheckNotReset(profile)
}

// publishedAs returns the bytes of the published target t.Name when they
// hold the same measurements as t in other bytes (the canonical form of a
// file published as written, or the other way round): publishing them
// again changes nothing.
func (w *Workspace) publishedAs(ctx context.Context, s *state, t Target) ([]byte, bool) {
	bin, _, err := s.binFor(ctx, t.Name)
	if err != nil {
		return nil, false
	}
	md, err := s.role(ctx, bin)
	if err != nil {
		return nil, false
	}
	old, ok := md.Signed.Targets[t.Name]
	if !ok {
		return nil, false
	}
	dir, base := path.Split(t.Name)
	data, err := w.Storage.Get(ctx, "targets/"+dir+hex.EncodeToString(old.Hashes["sha256"])+"."+base)
	if err != nil || old.VerifyLengthHashes(data) != nil {
		return nil, false
	}
	m, err := metadata.Parse(data)
	if err != nil {
		return nil, false
	}
	a, errA := m.Marshal()
	b, errB := t.measurements.Marshal()
	return data, errA == nil && errB == nil && bytes.Equal(a, b)
}

// sameJSON tells whether a and b are one JSON value: the same fields and
// values, whatever the whitespace and the order of fields.
func sameJSON(a, b []byte) bool {
	if len(a) == 0 {
		return false
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// ErrLinksRequired reports measurements published without their in-toto
// links to a repository with a layout, whose clients would refuse them.
var ErrLinksRequired = errors.New("measurements need their in-toto links")

// refuseWithoutLinks refuses measurements without links once the
// repository has an in-toto layout: clients then require the links, so the
// measurements would be published only to be refused.
func (w *Workspace) refuseWithoutLinks(ctx context.Context) error {
	s, err := loadState(ctx, w.Storage)
	if err != nil {
		return err
	}
	layout, err := s.layout(ctx)
	if err != nil {
		return err
	}
	if layout != nil {
		return fmt.Errorf("%w: the repository has an in-toto layout (%s), so clients refuse measurements without their links; publish them with PublishWithLinks",
			ErrLinksRequired, metadata.LayoutTarget)
	}
	return nil
}

// PublishTargets publishes many targets in one step: one bin write per
// bin touched, one snapshot, one timestamp.
func (w *Workspace) PublishTargets(ctx context.Context, targets []Target, replace bool) (*PublishResult, error) {
	return w.publish(ctx, targets, nil, replace)
}

func (w *Workspace) publish(ctx context.Context, targets []Target, rel *Release, replace bool) (*PublishResult, error) {
	var res *PublishResult
	err := w.update(ctx, func() (err error) {
		res, err = w.tryPublish(ctx, targets, rel, replace)
		return err
	})
	return res, err
}

// update runs one change of the repository under the storage's lock, or,
// on storage without one, again on top of the new state whenever another
// publisher replaced timestamp.json first.
func (w *Workspace) update(ctx context.Context, try func() error) error {
	if l, ok := w.Storage.(Locker); ok {
		lctx, cancel := context.WithTimeout(ctx, lockTimeout)
		unlock, err := l.Lock(lctx)
		cancel()
		if err != nil {
			return err
		}
		defer unlock()
	}
	for attempt := 1; ; attempt++ {
		err := try()
		if !errors.Is(err, ErrConflict) {
			return err
		}
		if attempt == maxPublishAttempts {
			return fmt.Errorf("another publisher changed the repository %d times while this one ran; run it again: %w", attempt, err)
		}
		// Back off with jitter so that racing publishers spread out.
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt*attempt)*10*time.Millisecond + rand.N(20*time.Millisecond)):
		}
	}
}

func (w *Workspace) tryPublish(ctx context.Context, targets []Target, rel *Release, replace bool) (*PublishResult, error) {
	s, err := loadState(ctx, w.Storage)
	if err != nil {
		return nil, err
	}
	if rel != nil {
		rt, err := w.releaseTargets(ctx, s, rel)
		if err != nil {
			return nil, err
		}
		targets = append(append([]Target(nil), targets...), rt...)
	}
	res := &PublishResult{Unchanged: true}
	files := map[string][]byte{}
	for _, t := range targets {
		if t.measurements != nil {
			if data, ok := w.publishedAs(ctx, s, t); ok {
				t.Data = data
			}
		}
		pt, err := s.addTarget(ctx, t, replace)
		if err != nil {
			return nil, err
		}
		if !pt.Unchanged {
			res.Unchanged = false
			files[targetFileName(t.Name, t.Data)] = t.Data
		}
		res.Targets = append(res.Targets, *pt)
	}
	if err := w.commitPublish(ctx, s, files, res); err != nil {
		return nil, err
	}
	return res, nil
}

// commitPublish writes a publish's changes, unless nothing changed, and
// records the versions written in res. Every key is unlocked before the
// first write, so that a wrong password or a wrong key leaves the
// repository untouched.
func (w *Workspace) commitPublish(ctx context.Context, s *state, files map[string][]byte, res *PublishResult) error {
	if !res.Unchanged {
		for _, role := range append(slices.Sorted(maps.Keys(s.dirty)), tuf.SNAPSHOT, tuf.TIMESTAMP) {
			if _, err := w.signers(ctx, s, role); err != nil {
				return err
			}
		}
		if err := s.commit(ctx, files, w.signers, w.expiry); err != nil {
			return err
		}
		for i := range res.Targets {
			res.Targets[i].BinVersion = s.snapshot.Signed.Meta[res.Targets[i].Bin+".json"].Version
		}
	}
	res.SnapshotVersion, res.TimestampVersion = s.snapshot.Signed.Version, s.timestamp.Signed.Version
	return nil
}

// addTarget puts a target into its bin, marking the bin changed unless it
// already holds exactly these bytes.
func (s *state) addTarget(ctx context.Context, t Target, replace bool) (*PublishedTarget, error) {
	bin, _, err := s.binFor(ctx, t.Name)
	if err != nil {
		return nil, err
	}
	md, err := s.role(ctx, bin)
	if err != nil {
		return nil, err
	}
	tf, err := tuf.TargetFile().FromBytes(t.Name, t.Data, "sha256")
	if err != nil {
		return nil, err
	}
	if t.Custom != nil {
		b, err := json.Marshal(t.Custom)
		if err != nil {
			return nil, err
		}
		raw := json.RawMessage(b)
		tf.Custom = &raw
	}
	pt := &PublishedTarget{Name: t.Name, SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Length: tf.Length, Bin: bin}
	if old, ok := md.Signed.Targets[t.Name]; ok {
		if old.Length == tf.Length && bytes.Equal(old.Hashes["sha256"], tf.Hashes["sha256"]) {
			pt.Unchanged = true
			pt.BinVersion = md.Signed.Version
			return pt, nil
		}
		if !replace {
			return nil, fmt.Errorf("%s is already published with different content (sha256 %s); give --replace to publish the new one", t.Name, hex.EncodeToString(old.Hashes["sha256"]))
		}
	}
	md.Signed.Targets[t.Name] = tf
	s.dirty[bin] = true
	return pt, nil
}

// releaseTargets makes the targets of a CLI release: the binary, and,
// when a releases key is ECDSA P-256, a signature that stock cosign
// verifies (base64 of an ASN.1 ECDSA signature over the file's SHA-256),
// so that a user can check a first download before mtuf is there to do it.
func (w *Workspace) releaseTargets(ctx context.Context, s *state, rel *Release) ([]Target, error) {
	name, err := metadata.CLITarget(rel.Version, rel.OS, rel.Arch)
	if err != nil {
		return nil, err
	}
	if len(rel.Binary) == 0 {
		return nil, fmt.Errorf("release %s: the binary is empty", name)
	}
	custom := metadata.TargetCustom{Version: rel.Version, OS: rel.OS, Arch: rel.Arch}
	out := []Target{{Name: name, Data: rel.Binary, Custom: custom}}
	if _, err := s.delegatedRole(name); err != nil {
		return nil, fmt.Errorf("this repository has no releases role, so it cannot publish %s: %w", name, err)
	}
	sigName, _ := metadata.CLISigTarget(rel.Version, rel.OS, rel.Arch)
	if same, err := s.holds(ctx, name, rel.Binary); err != nil {
		return nil, err
	} else if same {
		// ECDSA signatures differ on every run: the release as published
		// keeps the signature it has.
		return out, nil
	}
	signers, err := w.signers(ctx, s, RoleReleases)
	if err != nil {
		return nil, err
	}
	for _, sg := range signers {
		pub, err := sg.PublicKey()
		if err != nil {
			return nil, err
		}
		if ec, ok := pub.(*ecdsa.PublicKey); !ok || ec.Curve != elliptic.P256() {
			continue
		}
		sig, err := sg.SignMessage(bytes.NewReader(rel.Binary))
		if err != nil {
			return nil, fmt.Errorf("sign %s: %w", name, err)
		}
		out = append(out, Target{Name: sigName, Data: []byte(base64.StdEncoding.EncodeToString(sig))})
		break
	}
	return out, nil
}

// holds tells whether the repository already publishes exactly data as
// the target name.
func (s *state) holds(ctx context.Context, name string, data []byte) (bool, error) {
	bin, _, err := s.binFor(ctx, name)
	if err != nil {
		return false, err
	}
	md, err := s.role(ctx, bin)
	if err != nil {
		return false, err
	}
	old, ok := md.Signed.Targets[name]
	if !ok {
		return false, nil
	}
	sum := sha256.Sum256(data)
	return old.Length == int64(len(data)) && bytes.Equal(old.Hashes["sha256"], sum[:]), nil
}

// targetFileName is where a target's bytes are stored: hash-prefixed, as
// consistent snapshots require, so a target file is never overwritten.
func targetFileName(name string, data []byte) string {
	sum := sha256.Sum256(data)
	dir, base := path.Split(name)
	return "targets/" + dir + hex.EncodeToString(sum[:]) + "." + base
}
