package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"

	"github.com/mtuf/mtuf/client"
)

// Metadata from the repository that does not parse is refused as
// repository content, naming the role and the file.
func TestUpdateNamesMalformedMetadata(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, glob, role string }{
		{"timestamp", "timestamp.json", "timestamp"},
		{"snapshot", "[0-9]*.snapshot.json", "snapshot"},
		{"bin", "[0-9]*.measurements-bin-*.json", "measurements-bin-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t)
			f.publish(t, "v1.0.0", 0x40)
			matches, _ := filepath.Glob(filepath.Join(f.repoDir, "metadata", tc.glob))
			if len(matches) == 0 {
				t.Fatalf("no %s in the repository", tc.glob)
			}
			for _, m := range matches {
				if err := os.WriteFile(m, []byte("£"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, _ := f.client(t, f.repoDir)
			_, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm")
			if !errors.Is(err, client.ErrUntrusted) || !errors.Is(err, &tuf.ErrRepository{}) {
				t.Fatalf("err = %v, want ErrUntrusted and ErrRepository", err)
			}
			var me *client.MalformedMetadataError
			if !errors.As(err, &me) || !strings.HasPrefix(me.Role, tc.role) || !strings.HasSuffix(me.File, me.Role+".json") {
				t.Fatalf("err = %v, want a MalformedMetadataError for role %s", err, tc.role)
			}
			var se *json.SyntaxError
			if !errors.As(err, &se) {
				t.Errorf("err = %v: the JSON error is not reachable", err)
			}
		})
	}
}

// A damaged file of the client's metadata cache is fetched again.
func TestUpdateDiscardsDamagedCache(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, glob string }{
		{"timestamp", "timestamp.json"},
		{"snapshot", "snapshot.json"},
		{"targets", "targets.json"},
		{"measurements role", "measurements.json"},
		{"bin", "measurements-bin-*.json"},
	} {
		for _, content := range []string{"£", "null", "", `{"signed":{"_type":"root"}}`} {
			t.Run(tc.name+"/"+content, func(t *testing.T) {
				t.Parallel()
				f := newFixture(t)
				f.publish(t, "v1.0.0", 0x40)
				c, state := f.updatedClient(t)
				matches, _ := filepath.Glob(filepath.Join(state, "tuf", tc.glob))
				if len(matches) == 0 {
					t.Fatalf("no %s in the cache", tc.glob)
				}
				for _, m := range matches {
					if err := os.WriteFile(m, []byte(content), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				for i := range 2 {
					if _, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm"); err != nil {
						t.Fatalf("update %d after damage: %v", i, err)
					}
				}
				if _, err := c.List(context.Background()); err != nil {
					t.Fatalf("list: %v", err)
				}
				if _, err := c.Current(context.Background()); err != nil {
					t.Fatalf("current: %v", err)
				}
			})
		}
	}
}

// A damaged trusted root or config cannot be repaired from the repository:
// the client says how to start again.
func TestDamagedRootOrConfig(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "v1.0.0", 0x40)
	for _, content := range []string{"£", "null", "", "{}"} {
		t.Run("config/"+content, func(t *testing.T) {
			_, state := f.client(t, f.repoDir)
			if err := os.WriteFile(filepath.Join(state, "config.json"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := client.Open(state)
			if !errors.Is(err, client.ErrDamagedState) || !strings.Contains(err.Error(), "mtuf client init --repo URL --root FILE") {
				t.Fatalf("err = %v, want ErrDamagedState saying how to initialise again", err)
			}
		})
		t.Run("root/"+content, func(t *testing.T) {
			c, state := f.updatedClient(t)
			if err := os.WriteFile(filepath.Join(state, "tuf", "root.json"), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm")
			if !errors.Is(err, client.ErrDamagedState) || !strings.Contains(err.Error(), "mtuf client init --repo URL --root FILE") {
				t.Fatalf("update: err = %v, want ErrDamagedState saying how to initialise again", err)
			}
			if _, err := c.Current(context.Background()); !errors.Is(err, client.ErrDamagedState) {
				t.Fatalf("current: err = %v, want ErrDamagedState", err)
			}
		})
	}
}

// go-tuf's typed errors stay reachable through the client's explanations.
func TestUpdateKeepsTypedErrors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	f.publish(t, "v1.0.0", 0x40)
	c, _ := f.client(t, f.repoDir)
	c.Now = func() time.Time { return time.Now().Add(48 * time.Hour) }
	_, err := c.Update(context.Background(), "v1.0.0", "qemu-vtpm")
	var exp *tuf.ErrExpiredMetadata
	if !errors.Is(err, client.ErrUntrusted) || !errors.As(err, &exp) {
		t.Fatalf("err = %v, want ErrUntrusted and an ErrExpiredMetadata", err)
	}
	p := filepath.Join(f.repoDir, "metadata", "timestamp.json")
	data := mustRead(t, p)
	os.WriteFile(p, []byte(strings.Replace(string(data), `"expires":"20`, `"expires":"21`, 1)), 0o644)
	c.Now = nil
	_, err = c.Update(context.Background(), "v1.0.0", "qemu-vtpm")
	var uns *tuf.ErrUnsignedMetadata
	if !errors.As(err, &uns) {
		t.Fatalf("err = %v, want an ErrUnsignedMetadata", err)
	}
}
