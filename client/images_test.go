package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/client"
)

func trustedNames(images []client.TrustedImage) string {
	var names []string
	for _, ti := range images {
		names = append(names, ti.Image)
	}
	return strings.Join(names, ",")
}

// A cluster in the middle of a rolling upgrade: the client trusts both
// images, each checked for freshness, then drops the old one.
func TestUpdateImagesAndDrop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.publish(t, "v1.0.0", 0x40)
	f.publish(t, "v1.1.0", 0x50)
	c, state := f.client(t, f.repoDir)

	ms, err := c.UpdateImages(ctx, []string{"v1.0.0", "v1.1.0"}, "qemu-vtpm")
	if err != nil || len(ms) != 2 || ms[0].PCRs[4].Expected[0] != 0x40 || ms[1].PCRs[4].Expected[0] != 0x50 {
		t.Fatalf("UpdateImages = %v, %v", ms, err)
	}
	images, err := c.CurrentImages(ctx)
	if err != nil || trustedNames(images) != "v1.0.0,v1.1.0" {
		t.Fatalf("CurrentImages = %v, %v", trustedNames(images), err)
	}
	// The fields of a one-image config hold the last image, for the
	// readers of a config that predate several images.
	if cfg := c.Config(); cfg.Image != "v1.1.0" || cfg.Measurements.Image != "v1.1.0" {
		t.Errorf("config's last image %s", cfg.Image)
	}

	// One image revoked: the whole set is stale, naming it.
	f.publish(t, "v1.0.0", 0x60)
	if _, err := c.List(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CurrentImages(ctx); !errors.Is(err, client.ErrStale) || !strings.Contains(err.Error(), "image v1.0.0") {
		t.Fatalf("CurrentImages with v1.0.0 revoked: %v, want ErrStale naming v1.0.0", err)
	}
	images, err = c.UpdateCurrentImages(ctx)
	if err != nil || trustedNames(images) != "v1.0.0,v1.1.0" || images[0].Measurements.PCRs[4].Expected[0] != 0x60 {
		t.Fatalf("UpdateCurrentImages = %v, %v", images, err)
	}

	// One image of a set missing: nothing changes.
	if _, err := c.UpdateImages(ctx, []string{"v1.1.0", "v9"}, "qemu-vtpm"); err == nil || !strings.Contains(err.Error(), "image v9") {
		t.Fatalf("UpdateImages with a missing image: %v", err)
	}
	reopened, err := client.Open(state)
	if err != nil || trustedNames(reopened.Config().Images) != "v1.0.0,v1.1.0" {
		t.Fatalf("after a failed update the client trusts %v (%v)", trustedNames(reopened.Config().Images), err)
	}

	if err := c.DropImage(ctx, "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	if images, err := c.CurrentImages(ctx); err != nil || trustedNames(images) != "v1.1.0" {
		t.Fatalf("after dropping v1.0.0: %v, %v", trustedNames(images), err)
	}
	if err := c.DropImage(ctx, "v1.0.0"); err == nil || !strings.Contains(err.Error(), "not trusted (trusted: v1.1.0)") {
		t.Errorf("dropping an image not trusted: %v", err)
	}
	if err := c.DropImage(ctx, "v1.1.0"); err == nil || !strings.Contains(err.Error(), "only trusted image") {
		t.Errorf("dropping the last image: %v", err)
	}
	if _, err := c.UpdateImages(ctx, []string{"v1.1.0", "v1.1.0"}, "qemu-vtpm"); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("UpdateImages with an image twice: %v", err)
	}
}

// A config written when a client held one image (no "images") loads, and
// trusts that image.
func TestOneImageConfigLoads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	f.publish(t, "v1.0.0", 0x40)
	_, state := f.updatedClient(t)
	path := filepath.Join(state, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]json.RawMessage
	if err := json.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	delete(cfg, "images")
	old, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := client.Open(state)
	if err != nil {
		t.Fatal(err)
	}
	images, err := c.CurrentImages(ctx)
	if err != nil || trustedNames(images) != "v1.0.0" || images[0].Measurements.PCRs[4].Expected[0] != 0x40 {
		t.Fatalf("CurrentImages of a one-image config = %v, %v", images, err)
	}

	// An entry whose measurements are of another image is damaged state.
	cfg["images"] = json.RawMessage(`[{"image":"v2","platform":"qemu-vtpm","measurements":` + string(cfg["measurements"]) + `}]`)
	bad, _ := json.Marshal(cfg)
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Open(state); !errors.Is(err, client.ErrDamagedState) {
		t.Errorf("Open with mislabelled measurements: %v, want ErrDamagedState", err)
	}
}
