package repo

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/metadata"
)

// PublishRequest is one publish: the measurements of an image version on
// one platform.
type PublishRequest struct {
	Measurements *metadata.Measurements
	// Replace allows new measurements for an image and platform that
	// already has different ones. Without it such a publish is refused:
	// measurements of a released image do not change silently.
	Replace bool
}

// PublishResult says what a publish wrote.
type PublishResult struct {
	Target           string `json:"target"`
	SHA256           string `json:"sha256"`
	Length           int64  `json:"length"`
	TargetsVersion   int64  `json:"targetsVersion"`
	SnapshotVersion  int64  `json:"snapshotVersion"`
	TimestampVersion int64  `json:"timestampVersion"`
	Unchanged        bool   `json:"unchanged"`
}

// Publish adds the measurements as a target and re-signs targets,
// snapshot and timestamp.
func (w *Workspace) Publish(ctx context.Context, req PublishRequest) (*PublishResult, error) {
	m := req.Measurements
	if m == nil {
		return nil, fmt.Errorf("publish: no measurements given")
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("measurements: %w", err)
	}
	name, err := metadata.MeasurementsTarget(m.Image, m.Platform)
	if err != nil {
		return nil, err
	}
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	s, err := loadState(ctx, w.Storage)
	if err != nil {
		return nil, err
	}
	tf, err := tuf.TargetFile().FromBytes(name, data, "sha256")
	if err != nil {
		return nil, err
	}
	if tf.Custom, err = customJSON(metadata.TargetCustom{Image: m.Image, Platform: m.Platform}); err != nil {
		return nil, err
	}
	res := &PublishResult{Target: name, SHA256: hex.EncodeToString(tf.Hashes["sha256"]), Length: tf.Length}
	if old, ok := s.targets.Signed.Targets[name]; ok {
		if old.Length == tf.Length && bytes.Equal(old.Hashes["sha256"], tf.Hashes["sha256"]) {
			res.Unchanged = true
			res.TargetsVersion = s.targets.Signed.Version
			res.SnapshotVersion = s.snapshot.Signed.Version
			res.TimestampVersion = s.timestamp.Signed.Version
			return res, nil
		}
		if !req.Replace {
			return nil, fmt.Errorf("%s is already published with different measurements (sha256 %s); give --replace to publish new measurements for image %s on %s", name, hex.EncodeToString(old.Hashes["sha256"]), m.Image, m.Platform)
		}
	}
	signers, err := w.onlineSigners(ctx, s)
	if err != nil {
		return nil, err
	}
	s.targets.Signed.Targets[name] = tf
	s.targets.Signed.Version++
	s.snapshot.Signed.Version++
	s.timestamp.Signed.Version++
	if err := w.commit(ctx, s, signers, map[string][]byte{targetFileName(name, data): data}); err != nil {
		return nil, fmt.Errorf("publish %s: %w", name, err)
	}
	res.TargetsVersion = s.targets.Signed.Version
	res.SnapshotVersion = s.snapshot.Signed.Version
	res.TimestampVersion = s.timestamp.Signed.Version
	return res, nil
}
