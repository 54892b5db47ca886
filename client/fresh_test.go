package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/client"
)

// An attacker who keeps a client from updating can hold it on its
// measurements only until the metadata they came with expires.
func TestCurrentRefusesExpiredMetadata(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "v1.0.0", 0x40)
	c, _ := f.updatedClient(t)
	m, err := c.Current(context.Background())
	if err != nil || m.PCRs[4].Expected[0] != 0x40 {
		t.Fatalf("Current right after update = %v, %v", m, err)
	}
	c.Now = func() time.Time { return time.Now().Add(48 * time.Hour) }
	_, err = c.Current(context.Background())
	if !errors.Is(err, client.ErrStale) || !errors.Is(err, &tuf.ErrExpiredMetadata{}) {
		t.Fatalf("Current after the timestamp expired: %v, want ErrStale and ErrExpiredMetadata", err)
	}
}

// The repository replaces the measurements the client trusts; the client
// is kept from updating them.
func TestCurrentRefusesRevokedMeasurements(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "v1.0.0", 0x40)
	c, _ := f.updatedClient(t)
	f.publish(t, "v1.0.0", 0x50)

	// Blocked entirely: the old metadata holds until it expires.
	later := func() time.Time { return time.Now().Add(48 * time.Hour) }
	c.Now = later
	if _, err := c.Current(context.Background()); !errors.Is(err, client.ErrStale) {
		t.Fatalf("Current once the metadata expired: %v, want ErrStale", err)
	}

	// Metadata refreshed (by a list) but the measurements kept: the
	// trusted metadata no longer lists them.
	c.Now = nil
	if _, err := c.List(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Current(context.Background()); !errors.Is(err, client.ErrStale) {
		t.Fatalf("Current with revoked measurements: %v, want ErrStale", err)
	}

	m, err := c.UpdateCurrent(context.Background())
	if err != nil || m.PCRs[4].Expected[0] != 0x50 {
		t.Fatalf("UpdateCurrent = %v, %v, want the new measurements", m, err)
	}
	if _, err := c.Current(context.Background()); err != nil {
		t.Fatalf("Current after the update: %v", err)
	}
}

func TestCurrentWithoutMeasurements(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	c, _ := f.client(t, f.repoDir)
	if _, err := c.Current(context.Background()); !errors.Is(err, client.ErrNoMeasurements) {
		t.Fatalf("Current before any update: %v, want ErrNoMeasurements", err)
	}
}
