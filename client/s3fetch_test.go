package client_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/internal/s3test"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/repo"
)

// bucketRepo is a repository published into a versitygw bucket.
type bucketRepo struct {
	srv    *s3test.Server
	prefix string
	ws     *repo.Workspace
	root   []byte
}

func newBucketRepo(t *testing.T, prefix string) *bucketRepo {
	t.Helper()
	ctx := context.Background()
	srv := s3test.Start(t)
	srv.Setenv(t)
	dir := t.TempDir()
	m := keys.Memory{}
	key := func(name string) repo.RoleKeys {
		return repo.RoleKeys{Keys: []string{newTestKey(t, m, name)}, Threshold: 1}
	}
	online := key("online-test")
	ws, err := repo.Init(ctx, filepath.Join(dir, "ws"), repo.InitConfig{
		Storage: srv.URL(prefix),
		Root:    key("root-test"), Targets: key("targets-test"),
		Snapshot: online, Timestamp: online,
		Measurements: key("measurements-test"), MeasurementsBins: 4,
	}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := ws.Storage.Get(ctx, "metadata/1.root.json")
	if err != nil {
		t.Fatal(err)
	}
	b := &bucketRepo{srv: srv, prefix: prefix, ws: ws, root: root}
	b.publish(t, "v1.0.0", 0x40)
	return b
}

func (b *bucketRepo) publish(t *testing.T, image string, fill byte) {
	t.Helper()
	m := &metadata.Measurements{Image: image, Platform: "qemu-vtpm", Hash: "sha256", PCRs: map[uint32]metadata.PCR{
		4: {Expected: bytes.Repeat([]byte{fill}, 32)},
	}}
	if _, err := b.ws.Publish(context.Background(), repo.PublishRequest{Measurements: m, Replace: true}); err != nil {
		t.Fatal(err)
	}
}

// reader gives the process the credentials of a user who may only read
// the repository, except the keys in deny, which it is refused (403).
func (b *bucketRepo) reader(t *testing.T, deny ...string) {
	t.Helper()
	access, secret, err := b.srv.CreateUser(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.SetReadPolicy(context.Background(), b.prefix, []string{access}, deny...); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", access)
	t.Setenv("AWS_SECRET_ACCESS_KEY", secret)
}

func (b *bucketRepo) client(t *testing.T, url string) *client.Client {
	t.Helper()
	c, err := client.Init(filepath.Join(t.TempDir(), "state"), url, b.root)
	if err != nil {
		t.Fatalf("client init --repo %s: %v", url, err)
	}
	return c
}

// A client reads a repository straight from its bucket with the S3 API and
// the credentials of the AWS chain, and follows new publishes.
func TestUpdateFromBucket(t *testing.T) {
	ctx := context.Background()
	b := newBucketRepo(t, "repos/prod")
	b.reader(t)
	c := b.client(t, b.srv.URL("repos/prod"))
	if got := c.Config().Repository; got != b.srv.URL("repos/prod") {
		t.Errorf("recorded repository %q, want %q", got, b.srv.URL("repos/prod"))
	}
	m, err := c.Update(ctx, "v1.0.0", "qemu-vtpm")
	if err != nil {
		t.Fatal(err)
	}
	if m.PCRs[4].Expected[0] != 0x40 {
		t.Errorf("PCR 4 = %x", m.PCRs[4].Expected)
	}
	b.publish(t, "v1.0.0", 0x50)
	b.publish(t, "v2.0.0", 0x60)
	if m, err = c.Update(ctx, "v1.0.0", "qemu-vtpm"); err != nil || m.PCRs[4].Expected[0] != 0x50 {
		t.Fatalf("after a new publish: %+v, %v", m, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list) != 2 {
		t.Errorf("List = %+v, %v", list, err)
	}
	if _, err := c.Update(ctx, "v9.0.0", "qemu-vtpm"); err == nil || !strings.Contains(err.Error(), "no measurements for image v9.0.0") {
		t.Errorf("missing image: %v", err)
	}
}

// A store that does not let the reader list the bucket answers 403 for a
// missing key: on the probe for the next root that means "no newer root",
// but a 403 on timestamp.json fails the update.
func TestUpdateFromBucketForbidden(t *testing.T) {
	ctx := context.Background()
	b := newBucketRepo(t, "r")
	b.reader(t, "metadata/2.root.json")
	c := b.client(t, b.srv.URL("r"))
	if _, err := c.Update(ctx, "v1.0.0", "qemu-vtpm"); err != nil {
		t.Fatalf("403 on the root probe: %v", err)
	}

	b.reader(t, "metadata/2.root.json", "metadata/timestamp.json")
	_, err := c.Update(ctx, "v1.0.0", "qemu-vtpm")
	if err == nil {
		t.Fatal("403 on timestamp.json: the update succeeded")
	}
	for _, want := range []string{"access denied to s3://mtuf-test/r/metadata/timestamp.json", "AWS_ACCESS_KEY_ID"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("403 on timestamp.json: %v, want it to say %q", err, want)
		}
	}
	if errors.Is(err, client.ErrUntrusted) {
		t.Errorf("403 on timestamp.json reads as an attack: %v", err)
	}

	// Wrong credentials fail the update, whatever the root probe says.
	t.Setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
	if _, err := c.Update(ctx, "v1.0.0", "qemu-vtpm"); err == nil || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("wrong secret: %v", err)
	}
}

// A client reads the bucket over plain HTTP, as from a website endpoint or
// a CDN in front of it, with the same rule for a 403 on the root probe.
func TestUpdateFromBucketOverHTTP(t *testing.T) {
	ctx := context.Background()
	b := newBucketRepo(t, "web")
	if err := b.srv.SetReadPolicy(ctx, "web", []string{s3test.Anyone}, "metadata/2.root.json"); err != nil {
		t.Fatal(err)
	}
	c := b.client(t, b.srv.HTTPURL("web"))
	m, err := c.Update(ctx, "v1.0.0", "qemu-vtpm")
	if err != nil {
		t.Fatalf("update over HTTP with a 403 on the root probe: %v", err)
	}
	if m.PCRs[4].Expected[0] != 0x40 {
		t.Errorf("PCR 4 = %x", m.PCRs[4].Expected)
	}
	if err := b.srv.SetReadPolicy(ctx, "web", []string{s3test.Anyone}, "metadata/timestamp.json"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Update(ctx, "v1.0.0", "qemu-vtpm"); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("403 on timestamp.json over HTTP: %v", err)
	}
}

// A CLI release streams from the bucket with the S3 API like every other
// repository file: the binary is replaced by the signed release.
func TestSelfUpdateFromBucket(t *testing.T) {
	ctx := context.Background()
	srv := s3test.Start(t)
	srv.Setenv(t)
	m := keys.Memory{}
	one := func(name string) repo.RoleKeys {
		return repo.RoleKeys{Keys: []string{newTestKey(t, m, name)}, Threshold: 1}
	}
	online := one("online-test")
	ws, err := repo.Init(ctx, filepath.Join(t.TempDir(), "ws"), repo.InitConfig{
		Storage: srv.URL("rel"), Root: one("root-test"), Targets: one("targets-test"),
		Snapshot: online, Timestamp: online, Measurements: one("measurements-test"),
		Releases: one("releases-test"), MeasurementsBins: 2, ReleasesBins: 2,
	}, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	publishRelease(t, ws, "v1.1.0", []byte("release 1.1.0"))
	root, err := ws.Storage.Get(ctx, "metadata/1.root.json")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Init(filepath.Join(t.TempDir(), "state"), srv.URL("rel"), root)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "mtuf")
	os.WriteFile(bin, []byte("running 1.0.0"), 0o755)
	rel, err := c.SelfUpdate(ctx, client.SelfUpdateOptions{Running: "v1.0.0", Binary: bin})
	if err != nil {
		t.Fatalf("self-update from %s: %v", srv.URL("rel"), err)
	}
	if got, _ := os.ReadFile(bin); rel.Version != "v1.1.0" || string(got) != "release 1.1.0" {
		t.Errorf("release %+v, binary %q", rel, got)
	}
}
