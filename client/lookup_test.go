package client_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/internal/tuftest"
	"github.com/mtuf/mtuf/metadata"
)

// sharedRoleRepo is tuftest.SharedRoleRepo holding the measurements of
// v1.0.0, reached through role a, and of v2.0.0, reached through role b.
type sharedRoleRepo struct {
	dir  string
	root []byte
}

const (
	sharedV1 = "measurements/v1.0.0/qemu-vtpm/measurements.json"
	sharedV2 = "measurements/v2.0.0/qemu-vtpm/measurements.json"
)

func newSharedRoleRepo(t testing.TB) *sharedRoleRepo {
	t.Helper()
	files := map[string][]byte{}
	for i, name := range []string{sharedV1, sharedV2} {
		img, plat, _ := metadata.ParseMeasurementsTarget(name)
		m := &metadata.Measurements{Image: img, Platform: plat, Hash: "sha256",
			PCRs: map[uint32]metadata.PCR{4: {Expected: bytes.Repeat([]byte{byte(i + 1)}, 32)}}}
		doc, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		files[name] = doc
	}
	dir := t.TempDir()
	return &sharedRoleRepo{dir: dir, root: tuftest.SharedRoleRepo(t, dir, files)}
}

// updater is a refreshed updater of the repository keeping its trusted
// metadata in state.
func (r *sharedRoleRepo) updater(t testing.TB, state string) *updater.Updater {
	t.Helper()
	up, err := client.NewUpdater(context.Background(), client.UpdaterConfig{
		MetadataURL: "file://" + filepath.Join(r.dir, "metadata"),
		TargetsURL:  "file://" + filepath.Join(r.dir, "targets"),
		MetadataDir: filepath.Join(state, "metadata"),
		TargetsDir:  filepath.Join(state, "targets"),
		Root:        r.root,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := up.Refresh(); err != nil {
		t.Fatal(err)
	}
	return up
}

// refusedThroughB checks that err refuses the shared role as delegated by
// b, for want of b's signatures.
func refusedThroughB(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		t.Fatal("the shared role was trusted through b, which did not sign it")
	}
	if !errors.Is(err, &tuf.ErrUnsignedMetadata{}) || !strings.Contains(err.Error(), "shared") {
		t.Fatalf("%v: want the shared role refused as unsigned (ErrUnsignedMetadata)", err)
	}
}

func TestLookupVerifiesEachPathsDelegator(t *testing.T) {
	t.Parallel()
	r := newSharedRoleRepo(t)

	t.Run("go-tuf alone", func(t *testing.T) {
		// The flaw guarded against: go-tuf's updater trusts the role it
		// loaded through a for the path through b.
		up := r.updater(t, t.TempDir())
		if _, err := up.GetTargetInfo(sharedV1); err != nil {
			t.Fatal(err)
		}
		if _, err := up.GetTargetInfo(sharedV2); err != nil {
			t.Fatalf("go-tuf's updater refuses the lookup through b by itself (%v): this repository no longer shows the flaw LookupTarget guards against", err)
		}
	})
	t.Run("a first", func(t *testing.T) {
		state := t.TempDir()
		up := r.updater(t, state)
		if ti, err := client.LookupTarget(up, sharedV1); err != nil || ti.Path != sharedV1 {
			t.Fatalf("lookup through a: %v, %v", ti, err)
		}
		_, err := client.LookupTarget(up, sharedV2)
		refusedThroughB(t, err)
		// A later updater finds the role in its cache, loaded through a.
		_, err = client.LookupTarget(r.updater(t, state), sharedV2)
		refusedThroughB(t, err)
	})
	t.Run("one Lookup for both", func(t *testing.T) {
		// What a Lookup remembers as verified is the delegation, not the
		// role: shared verified through a is not verified through b.
		lookup := client.NewLookup(r.updater(t, t.TempDir()))
		if _, err := lookup.Target(sharedV1); err != nil {
			t.Fatal(err)
		}
		_, err := lookup.Target(sharedV2)
		refusedThroughB(t, err)
	})
	t.Run("b first", func(t *testing.T) {
		up := r.updater(t, t.TempDir())
		_, err := client.LookupTarget(up, sharedV2)
		refusedThroughB(t, err)
		if ti, err := client.LookupTarget(up, sharedV1); err != nil || ti.Path != sharedV1 {
			t.Fatalf("lookup through a: %v, %v", ti, err)
		}
		_, err = client.LookupTarget(up, sharedV2)
		refusedThroughB(t, err)
	})
	t.Run("not listed", func(t *testing.T) {
		_, err := client.LookupTarget(r.updater(t, t.TempDir()), "measurements/v3.0.0/qemu-vtpm/measurements.json")
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("%v, want not found", err)
		}
	})
}

// TestUpdateVerifiesEachPathsDelegator updates, in either order, the
// measurements reached through a (trusted) and through b (refused).
func TestUpdateVerifiesEachPathsDelegator(t *testing.T) {
	t.Parallel()
	r := newSharedRoleRepo(t)
	for _, order := range [][]string{{"v1.0.0", "v2.0.0"}, {"v2.0.0", "v1.0.0"}} {
		t.Run(order[0]+" first", func(t *testing.T) {
			c, err := client.Init(filepath.Join(t.TempDir(), "state"), r.dir, r.root)
			if err != nil {
				t.Fatal(err)
			}
			for _, image := range order {
				_, err := c.Update(context.Background(), image, "qemu-vtpm")
				if image == "v1.0.0" {
					if err != nil {
						t.Fatalf("update %s through a: %v", image, err)
					}
					continue
				}
				refusedThroughB(t, err)
				if !errors.Is(err, client.ErrUntrusted) {
					t.Errorf("%v: want ErrUntrusted", err)
				}
			}
		})
	}
}

// BenchmarkLookup compares a lookup through two delegations with
// LookupTarget, and with a Lookup reused as a listing does, against
// go-tuf's GetTargetInfo alone, the baseline, on an updater that has every
// role on the path loaded: the cost of walking the delegations a second
// time and checking each role against its delegator.
func BenchmarkLookup(b *testing.B) {
	r := newSharedRoleRepo(b)
	up := r.updater(b, b.TempDir())
	if _, err := client.LookupTarget(up, sharedV1); err != nil {
		b.Fatal(err)
	}
	b.Run("go-tuf", func(b *testing.B) {
		for b.Loop() {
			if _, err := up.GetTargetInfo(sharedV1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("path-verified", func(b *testing.B) {
		for b.Loop() {
			if _, err := client.LookupTarget(up, sharedV1); err != nil {
				b.Fatal(err)
			}
		}
	})
	// A listing looks every target up with one Lookup.
	lookup := client.NewLookup(up)
	b.Run("path-verified-listing", func(b *testing.B) {
		for b.Loop() {
			if _, err := lookup.Target(sharedV1); err != nil {
				b.Fatal(err)
			}
		}
	})
}
