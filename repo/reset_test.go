package repo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// TestPublishRefusesBlankMeasurements checks that neither kind of publish
// signs enforced PCRs in their reset state, nor a platform without a
// profile unless allowed, and that a refused publish writes nothing.
func TestPublishRefusesBlankMeasurements(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t)
	ctx := context.Background()
	ci := genKey(t, keys.ED25519)
	with := func(m *metadata.Measurements, idx uint32, v []byte, warnOnly bool) *metadata.Measurements {
		m.PCRs[idx] = metadata.PCR{Expected: v, WarnOnly: warnOnly}
		return m
	}
	zeros, ones := make([]byte, 32), bytes.Repeat([]byte{0xff}, 32)
	for _, tc := range []struct {
		name      string
		m         *metadata.Measurements
		allow     bool
		want      error
		wantInMsg string
	}{
		{"enforced zeros", with(testMeasurements("v1.0.0", "qemu-vtpm", 1), 4, zeros, false), false, metadata.ErrResetPCR, "PCR 4: "},
		{"enforced ones of a DRTM PCR", with(testMeasurements("v1.0.0", "qemu-vtpm", 1), 17, ones, false), false, metadata.ErrResetPCR, "PCR 17: "},
		{"unprofiled platform", testMeasurements("v1.0.0", "bare-metal", 1), false, ErrUnprofiledPlatform, `"bare-metal"`},
		{"unprofiled platform allowed, zeros still refused", with(testMeasurements("v1.0.0", "bare-metal", 1), 9, zeros, false), true, metadata.ErrResetPCR, "PCR 9: "},
	} {
		_, err := r.ws.Publish(ctx, PublishRequest{Measurements: tc.m, AllowUnprofiledPlatform: tc.allow})
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantInMsg) {
			t.Errorf("%s: Publish error = %v, want %v naming %s", tc.name, err, tc.want, tc.wantInMsg)
		}
		doc, err := tc.m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		_, err = r.ws.PublishWithLinks(ctx, LinkedPublishRequest{Document: doc, Links: []LinkFile{readLink(t, doc, ci)}, AllowUnprofiledPlatform: tc.allow})
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.wantInMsg) {
			t.Errorf("%s: PublishWithLinks error = %v, want %v naming %s", tc.name, err, tc.want, tc.wantInMsg)
		}
	}
	if _, err := r.ws.Storage.Get(ctx, "metadata/2.snapshot.json"); err == nil {
		t.Error("a refused publish wrote snapshot version 2")
	}

	// What the image legitimately leaves at its reset value is published:
	// a warn-only PCR, the all-zero value of a DRTM PCR (not its reset
	// value), and an unprofiled platform when allowed.
	ok := with(with(testMeasurements("v1.0.0", "qemu-vtpm", 1), 14, zeros, true), 17, zeros, false)
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: ok}); err != nil {
		t.Errorf("warn-only zeros: %v", err)
	}
	if _, err := r.ws.Publish(ctx, PublishRequest{Measurements: testMeasurements("v1.0.0", "bare-metal", 1), AllowUnprofiledPlatform: true}); err != nil {
		t.Errorf("unprofiled platform, allowed: %v", err)
	}
}

// TestCheckMeasurementsProfileAllowsReset checks that a profile's
// resetAllowed decides, and only for its own PCRs.
func TestCheckMeasurementsProfileAllowsReset(t *testing.T) {
	m := testMeasurements("v1.0.0", "azure-sev-snp", 1)
	m.PCRs[8] = metadata.PCR{Expected: make([]byte, 32)}
	if err := CheckMeasurements(m, false); err != nil {
		t.Errorf("azure-sev-snp pins PCR 8 to its reset value: %v", err)
	}
	m.Platform = "bare-metal"
	if err := CheckMeasurements(m, true); !errors.Is(err, metadata.ErrResetPCR) {
		t.Errorf("without a profile nothing allows a reset PCR: %v", err)
	}
}
