package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/theupdateframework/go-tuf/v2/metadata"
)

// testRepo is a TUF repository built with go-tuf's metadata API, with
// consistent snapshots and hash-prefixed targets, as the conformance
// suite's simulator serves it, and an HTTP server that logs requests.
type testRepo struct {
	t         *testing.T
	dir       string
	keys      map[string]ed25519.PrivateKey
	root      *metadata.Metadata[metadata.RootType]
	targets   *metadata.Metadata[metadata.TargetsType]
	snapshot  *metadata.Metadata[metadata.SnapshotType]
	timestamp *metadata.Metadata[metadata.TimestampType]
	delegated map[string]*metadata.Metadata[metadata.TargetsType]
	srv       *httptest.Server

	mu       sync.Mutex
	requests []string
}

var topRoles = []string{metadata.ROOT, metadata.TARGETS, metadata.SNAPSHOT, metadata.TIMESTAMP}

func newKey(t *testing.T) (ed25519.PrivateKey, *metadata.Key) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	k, err := metadata.KeyFromPublicKey(priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	return priv, k
}

func newTestRepo(t *testing.T, expires time.Time) *testRepo {
	t.Helper()
	r := &testRepo{
		t: t, dir: t.TempDir(), keys: map[string]ed25519.PrivateKey{},
		root: metadata.Root(expires), targets: metadata.Targets(expires),
		snapshot: metadata.Snapshot(expires), timestamp: metadata.Timestamp(expires),
		delegated: map[string]*metadata.Metadata[metadata.TargetsType]{},
	}
	r.root.Signed.ConsistentSnapshot = true
	for _, role := range topRoles {
		priv, k := newKey(t)
		r.keys[role] = priv
		if err := r.root.Signed.AddKey(k, role); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{"metadata", "targets"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.writeRoot()
	r.writeTargets(metadata.TARGETS, r.targets)
	r.writeSnapshotAndTimestamp()
	files := http.FileServer(http.Dir(r.dir))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.requests = append(r.requests, req.URL.EscapedPath())
		r.mu.Unlock()
		files.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func sign[T metadata.Roles](t *testing.T, md *metadata.Metadata[T], keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	md.ClearSignatures()
	for _, k := range keys {
		s, err := signature.LoadSigner(k, crypto.Hash(0))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := md.Sign(s); err != nil {
			t.Fatal(err)
		}
	}
	data, err := md.ToBytes(false)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func (r *testRepo) write(name string, data []byte) {
	r.t.Helper()
	p := filepath.Join(r.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *testRepo) writeRoot(extraSigners ...ed25519.PrivateKey) {
	r.t.Helper()
	data := sign(r.t, r.root, append([]ed25519.PrivateKey{r.keys[metadata.ROOT]}, extraSigners...)...)
	r.write(fmt.Sprintf("metadata/%d.root.json", r.root.Signed.Version), data)
}

func (r *testRepo) writeTargets(role string, md *metadata.Metadata[metadata.TargetsType]) {
	r.t.Helper()
	data := sign(r.t, md, r.keys[role])
	r.write(fmt.Sprintf("metadata/%d.%s.json", md.Signed.Version, url.PathEscape(role)), data)
	r.snapshot.Signed.Meta[role+".json"] = metadata.MetaFile(md.Signed.Version)
}

func (r *testRepo) writeSnapshotAndTimestamp() {
	r.t.Helper()
	r.write(fmt.Sprintf("metadata/%d.snapshot.json", r.snapshot.Signed.Version), sign(r.t, r.snapshot, r.keys[metadata.SNAPSHOT]))
	r.timestamp.Signed.Meta["snapshot.json"] = metadata.MetaFile(r.snapshot.Signed.Version)
	r.write("metadata/timestamp.json", sign(r.t, r.timestamp, r.keys[metadata.TIMESTAMP]))
}

// addTarget stores a target file under its hash-prefixed name and lists it
// in role's metadata (not yet published).
func (r *testRepo) addTarget(role, name string, data []byte) {
	r.t.Helper()
	tf, err := metadata.TargetFile().FromBytes(name, data, "sha256")
	if err != nil {
		r.t.Fatal(err)
	}
	md := r.targets
	if role != metadata.TARGETS {
		md = r.delegated[role]
	}
	md.Signed.Targets[name] = tf
	sum := sha256.Sum256(data)
	r.write("targets/"+path.Join(path.Dir(name), hex.EncodeToString(sum[:])+"."+path.Base(name)), data)
}

// replaceTargetFile swaps a target's served bytes without touching its
// metadata, as a compromised mirror would.
func (r *testRepo) replaceTargetFile(name string, data []byte) {
	r.t.Helper()
	tf := r.targets.Signed.Targets[name]
	r.write("targets/"+path.Join(path.Dir(name), hex.EncodeToString(tf.Hashes["sha256"])+"."+path.Base(name)), data)
}

// publish signs new versions of the given targets roles, then snapshot and
// timestamp.
func (r *testRepo) publish(roles ...string) {
	r.t.Helper()
	for _, role := range roles {
		md := r.targets
		if role != metadata.TARGETS {
			md = r.delegated[role]
		}
		md.Signed.Version++
		r.writeTargets(role, md)
	}
	r.snapshot.Signed.Version++
	r.timestamp.Signed.Version++
	r.writeSnapshotAndTimestamp()
}

func (r *testRepo) delegate(role string, paths ...string) {
	r.t.Helper()
	priv, k := newKey(r.t)
	r.keys[role] = priv
	if r.targets.Signed.Delegations == nil {
		r.targets.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	r.targets.Signed.Delegations.Roles = append(r.targets.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: role, Threshold: 1, Paths: paths, KeyIDs: []string{},
	})
	if err := r.targets.Signed.AddKey(k, role); err != nil {
		r.t.Fatal(err)
	}
	r.delegated[role] = metadata.Targets(r.targets.Signed.Expires)
	r.writeTargets(role, r.delegated[role])
}

func (r *testRepo) requested(p string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, q := range r.requests {
		if q == p {
			n++
		}
	}
	return n
}

func (r *testRepo) requestCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// tufClient is one conformance client under test: its metadata and target
// directories, driven through run as the suite drives the binary.
type tufClient struct {
	t           *testing.T
	repo        *testRepo
	metadataDir string
	targetDir   string
}

func newClient(t *testing.T, r *testRepo) *tufClient {
	base := t.TempDir()
	c := &tufClient{t: t, repo: r, metadataDir: filepath.Join(base, "metadata"), targetDir: filepath.Join(base, "targets")}
	for _, d := range []string{c.metadataDir, c.targetDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func (c *tufClient) run(args ...string) (int, string) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr)
	return code, stdout.String() + stderr.String()
}

func (c *tufClient) init1() {
	c.t.Helper()
	root := filepath.Join(c.t.TempDir(), "initial_root.json")
	data, err := os.ReadFile(filepath.Join(c.repo.dir, "metadata", "1.root.json"))
	if err != nil {
		c.t.Fatal(err)
	}
	if err := os.WriteFile(root, data, 0o644); err != nil {
		c.t.Fatal(err)
	}
	if code, out := c.run("--metadata-dir", c.metadataDir, "init", root); code != 0 {
		c.t.Fatalf("init: exit %d: %s", code, out)
	}
}

func (c *tufClient) refresh() (int, string) {
	return c.run("--metadata-url", c.repo.srv.URL+"/metadata", "--metadata-dir", c.metadataDir, "refresh")
}

func (c *tufClient) download(names ...string) (int, string) {
	args := []string{"--metadata-url", c.repo.srv.URL + "/metadata", "--metadata-dir", c.metadataDir}
	for _, name := range names {
		args = append(args, "--target-name", name)
	}
	args = append(args, "--target-dir", c.targetDir, "--target-base-url", c.repo.srv.URL+"/targets", "download")
	return c.run(args...)
}

func (c *tufClient) trustedVersion(role string) int64 {
	c.t.Helper()
	data, err := os.ReadFile(filepath.Join(c.metadataDir, role+".json"))
	if err != nil {
		c.t.Fatal(err)
	}
	var v struct {
		Signed struct{ Version int64 } `json:"signed"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		c.t.Fatal(err)
	}
	return v.Signed.Version
}

// downloaded returns the files in the target directory, by name.
func (c *tufClient) downloaded() map[string]string {
	c.t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(c.targetDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		out[strings.TrimPrefix(p, c.targetDir+string(filepath.Separator))] = string(data)
		return err
	})
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

func TestInitRefreshDownload(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t, time.Now().Add(7*24*time.Hour))
	r.addTarget(metadata.TARGETS, "target_file.txt", []byte("target file contents"))
	r.addTarget(metadata.TARGETS, "path/to/a/target_file.txt", []byte("nested contents"))
	r.publish(metadata.TARGETS)
	c := newClient(t, r)

	c.init1()
	if n := r.requestCount(); n != 0 {
		t.Errorf("init made %d requests to the repository, want none", n)
	}
	if code, out := c.refresh(); code != 0 {
		t.Fatalf("refresh: exit %d: %s", code, out)
	}
	entries, err := os.ReadDir(c.metadataDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"root.json", "snapshot.json", "targets.json", "timestamp.json"}; !slices.Equal(names, want) {
		t.Errorf("metadata dir holds %v, want the unversioned %v", names, want)
	}
	if v := c.trustedVersion("targets"); v != 2 {
		t.Errorf("trusted targets v%d, want v2", v)
	}
	if got := c.downloaded(); len(got) != 0 {
		t.Errorf("refresh downloaded targets: %v", got)
	}

	for _, name := range []string{"target_file.txt", "path/to/a/target_file.txt"} {
		if code, out := c.download(name); code != 0 {
			t.Fatalf("download %s: exit %d: %s", name, code, out)
		}
	}
	got := c.downloaded()
	if got["target_file.txt"] != "target file contents" || got[url.PathEscape("path/to/a/target_file.txt")] != "nested contents" || len(got) != 2 {
		t.Errorf("downloaded %v", got)
	}
	// Consistent snapshots: the target was fetched under its hash prefix.
	sum := sha256.Sum256([]byte("nested contents"))
	if r.requested("/targets/path/to/a/"+hex.EncodeToString(sum[:])+".target_file.txt") != 1 {
		t.Errorf("no hash-prefixed request for the nested target: %v", r.requests)
	}

	// A second download uses the cached, verified file.
	before := r.requestCount()
	if code, out := c.download("target_file.txt"); code != 0 {
		t.Fatalf("download again: exit %d: %s", code, out)
	}
	for _, q := range r.requests[before:] {
		if strings.HasPrefix(q, "/targets/") {
			t.Errorf("cached target downloaded again: %s", q)
		}
	}

	// A target the repository does not list fails.
	if code, out := c.download("nonexistent"); code != 1 || !strings.Contains(out, `target "nonexistent"`) {
		t.Errorf("download of a missing target: exit %d: %s", code, out)
	}
}

// A repeated --target-name downloads the targets in order with one
// updater, after one refresh, and stops with exit 1 at the first that
// fails: the targets after it are not fetched.
func TestDownloadSeveralTargets(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t, time.Now().Add(7*24*time.Hour))
	for _, name := range []string{"a.txt", "b.txt", "c.txt"} {
		r.addTarget(metadata.TARGETS, name, []byte("contents of "+name))
	}
	r.publish(metadata.TARGETS)
	c := newClient(t, r)
	c.init1()

	if code, out := c.download("a.txt", "b.txt"); code != 0 {
		t.Fatalf("download a.txt b.txt: exit %d: %s", code, out)
	}
	if got := c.downloaded(); len(got) != 2 || got["a.txt"] != "contents of a.txt" || got["b.txt"] != "contents of b.txt" {
		t.Errorf("downloaded %v, want a.txt and b.txt", got)
	}
	if n := r.requested("/metadata/timestamp.json"); n != 1 {
		t.Errorf("timestamp.json fetched %d times for one download of two targets, want 1", n)
	}

	code, out := c.download("missing.txt", "c.txt")
	if code != 1 || !strings.Contains(out, `target "missing.txt"`) {
		t.Errorf("download missing.txt c.txt: exit %d: %s", code, out)
	}
	if _, ok := c.downloaded()["c.txt"]; ok {
		t.Error("c.txt was downloaded after missing.txt failed")
	}
	for _, q := range r.requests {
		if strings.HasSuffix(q, ".c.txt") {
			t.Errorf("c.txt was requested after missing.txt failed: %s", q)
		}
	}
}

func TestRepositorySubstitutesTargets(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t, time.Now().Add(7*24*time.Hour))
	r.addTarget(metadata.TARGETS, "one.txt", []byte("legitimate one"))
	r.addTarget(metadata.TARGETS, "two.txt", []byte("legitimate two"))
	r.publish(metadata.TARGETS)
	c := newClient(t, r)
	c.init1()
	if code, out := c.download("one.txt"); code != 0 {
		t.Fatalf("download: exit %d: %s", code, out)
	}
	r.replaceTargetFile("one.txt", []byte("malicious data"))
	r.replaceTargetFile("two.txt", []byte("malicious data"))

	c.download("one.txt") // may succeed from the cache; must not store the new bytes
	if code, out := c.download("two.txt"); code != 1 || !strings.Contains(out, "two.txt") {
		t.Errorf("download of a substituted target: exit %d: %s", code, out)
	}
	if got := c.downloaded(); len(got) != 1 || got["one.txt"] != "legitimate one" {
		t.Errorf("target dir after the attack: %v", got)
	}
}

func TestMetadataAttacks(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		attack func(r *testRepo)
		want   string
	}{
		{"timestamp rollback", func(r *testRepo) {
			r.timestamp.Signed.Version = 1
			r.write("metadata/timestamp.json", sign(r.t, r.timestamp, r.keys[metadata.TIMESTAMP]))
		}, "version"},
		{"targets signed by the wrong key", func(r *testRepo) {
			r.targets.Signed.Version++
			r.write(fmt.Sprintf("metadata/%d.targets.json", r.targets.Signed.Version), sign(r.t, r.targets, r.keys[metadata.SNAPSHOT]))
			r.snapshot.Signed.Meta["targets.json"] = metadata.MetaFile(r.targets.Signed.Version)
			r.snapshot.Signed.Version++
			r.timestamp.Signed.Version++
			r.writeSnapshotAndTimestamp()
		}, "signature"},
		{"expired timestamp", func(r *testRepo) {
			r.timestamp.Signed.Expires = time.Now().Add(-time.Hour)
			r.timestamp.Signed.Version++
			r.write("metadata/timestamp.json", sign(r.t, r.timestamp, r.keys[metadata.TIMESTAMP]))
		}, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRepo(t, time.Now().Add(7*24*time.Hour))
			r.publish(metadata.TARGETS)
			c := newClient(t, r)
			c.init1()
			if code, out := c.refresh(); code != 0 {
				t.Fatalf("refresh: exit %d: %s", code, out)
			}
			trusted, _ := os.ReadFile(filepath.Join(c.metadataDir, "timestamp.json"))
			tc.attack(r)
			code, out := c.refresh()
			if code != 1 || !strings.Contains(strings.ToLower(out), tc.want) {
				t.Fatalf("refresh after the attack: exit %d: %s (want exit 1 saying %q)", code, out, tc.want)
			}
			if tc.name == "timestamp rollback" {
				now, _ := os.ReadFile(filepath.Join(c.metadataDir, "timestamp.json"))
				if !bytes.Equal(now, trusted) {
					t.Error("the rolled-back timestamp replaced the trusted one")
				}
			}
		})
	}
}

func TestRootRotation(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t, time.Now().Add(7*24*time.Hour))
	c := newClient(t, r)
	c.init1()
	// Root v2 replaces the root key: signed by the old key and the new one.
	old := r.keys[metadata.ROOT]
	oldKey, _ := metadata.KeyFromPublicKey(old.Public())
	oldID, err := oldKey.ID()
	if err != nil {
		t.Fatal(err)
	}
	priv, k := newKey(t)
	if err := r.root.Signed.RevokeKey(oldID, metadata.ROOT); err != nil {
		t.Fatal(err)
	}
	if err := r.root.Signed.AddKey(k, metadata.ROOT); err != nil {
		t.Fatal(err)
	}
	r.keys[metadata.ROOT] = priv
	r.root.Signed.Version = 2
	r.writeRoot(old)
	if code, out := c.refresh(); code != 0 {
		t.Fatalf("refresh over a root rotation: exit %d: %s", code, out)
	}
	if v := c.trustedVersion("root"); v != 2 {
		t.Errorf("trusted root v%d, want v2", v)
	}
	// Root v3 signed only by the revoked key is refused.
	r.keys[metadata.ROOT] = old
	r.root.Signed.Version = 3
	r.writeRoot()
	if code, out := c.refresh(); code != 1 {
		t.Errorf("refresh with a root signed by a revoked key: exit %d: %s", code, out)
	}
	if v := c.trustedVersion("root"); v != 2 {
		t.Errorf("trusted root v%d after the refused rotation, want v2", v)
	}
}

func TestDelegations(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t, time.Now().Add(7*24*time.Hour))
	// An unusual role name must not escape the metadata directory.
	r.delegate("../escape", "evil/*")
	r.delegate("releases", "cli/*/*")
	r.addTarget("releases", "cli/v1/mtuf", []byte("release binary"))
	r.publish(metadata.TARGETS, "releases")
	c := newClient(t, r)
	c.init1()
	if code, out := c.download("cli/v1/mtuf"); code != 0 {
		t.Fatalf("download of a delegated target: exit %d: %s", code, out)
	}
	if got := c.downloaded()[url.PathEscape("cli/v1/mtuf")]; got != "release binary" {
		t.Errorf("downloaded %q", got)
	}
	if _, err := os.Stat(filepath.Join(c.metadataDir, "releases.json")); err != nil {
		t.Errorf("delegated metadata not kept: %v", err)
	}
	if code, _ := c.download("evil/x"); code != 1 {
		t.Errorf("download of a target the repository does not have: exit %d", code)
	}
	if r.requested("/metadata/1...%2Fescape.json") != 1 {
		t.Errorf("the unusual role name was not requested escaped: %v", r.requests)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(c.metadataDir), "escape.json")); err == nil {
		t.Error("metadata written outside the metadata directory")
	}
}

// delegateFrom has the delegated role parent delegate paths to role, with
// key k (not yet published).
func (r *testRepo) delegateFrom(parent, role string, k *metadata.Key, paths ...string) {
	r.t.Helper()
	md := r.delegated[parent]
	if md.Signed.Delegations == nil {
		md.Signed.Delegations = &metadata.Delegations{Keys: map[string]*metadata.Key{}}
	}
	md.Signed.Delegations.Roles = append(md.Signed.Delegations.Roles, metadata.DelegatedRole{
		Name: role, Threshold: 1, Paths: paths, KeyIDs: []string{},
	})
	if err := md.Signed.AddKey(k, role); err != nil {
		r.t.Fatal(err)
	}
}

// TestSharedRoleNameVerifiedPerPath has roles a and b each delegate to a
// role named shared, with different keys; only a's key signed it. A
// download through b must be refused whether or not the updater already
// trusts shared through a.
func TestSharedRoleNameVerifiedPerPath(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t, time.Now().Add(7*24*time.Hour))
	r.delegate("a", "a/*")
	r.delegate("b", "b/*")
	sharedA, sharedAKey := newKey(t)
	_, sharedBKey := newKey(t)
	r.delegateFrom("a", "shared", sharedAKey, "a/*")
	r.delegateFrom("b", "shared", sharedBKey, "b/*")
	r.keys["shared"] = sharedA
	r.delegated["shared"] = metadata.Targets(r.targets.Signed.Expires)
	r.addTarget("shared", "a/x", []byte("through a"))
	r.addTarget("shared", "b/x", []byte("through b"))
	r.publish(metadata.TARGETS, "a", "b", "shared")

	refused := func(code int, out string) {
		t.Helper()
		if code != 1 || !strings.Contains(out, `target "b/x"`) || !strings.Contains(out, "shared") {
			t.Errorf("exit %d: %s; want b/x refused, naming the shared role", code, out)
		}
	}
	// One updater loads shared through a, then looks b/x up through b.
	c := newClient(t, r)
	c.init1()
	refused(c.download("a/x", "b/x"))
	if got := c.downloaded(); len(got) != 1 || got["a%2Fx"] != "through a" {
		t.Errorf("downloaded %v, want a/x only", got)
	}
	// A later run finds shared in its trusted metadata, loaded through a.
	refused(c.download("b/x"))

	c = newClient(t, r)
	c.init1()
	code, out := c.download("b/x", "a/x")
	if code != 1 || !strings.Contains(out, `target "b/x"`) {
		t.Errorf("download b/x a/x: exit %d: %s; want b/x refused", code, out)
	}
	if got := c.downloaded(); len(got) != 0 {
		t.Errorf("downloaded %v after b/x was refused", got)
	}
	if code, out := c.download("a/x"); code != 0 {
		t.Errorf("download a/x: exit %d: %s", code, out)
	}
}

// fakeDate puts a `date` that prints secs first on PATH, as libfaketime
// would make the real one do.
func fakeDate(t *testing.T, secs int64) {
	t.Helper()
	dir := t.TempDir()
	script := fmt.Sprintf("#!/bin/sh\n[ \"$1\" = +%%s ] || exit 3\necho %d\n", secs)
	if err := os.WriteFile(filepath.Join(dir, "date"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

func TestReferenceTimeFromDate(t *testing.T) {
	r := newTestRepo(t, time.Now().Add(24*time.Hour))
	c := newClient(t, r)
	c.init1()

	// Two days ahead, the metadata has expired, although Go's clock says
	// it has not: the adapter believes date.
	fakeDate(t, time.Now().Add(48*time.Hour).Unix())
	if code, out := c.refresh(); code != 1 || !strings.Contains(out, "expired") {
		t.Fatalf("refresh two days ahead: exit %d: %s", code, out)
	}
	// An hour ahead, it is still valid.
	fakeDate(t, time.Now().Add(time.Hour).Unix())
	if code, out := c.refresh(); code != 0 {
		t.Fatalf("refresh an hour ahead: exit %d: %s", code, out)
	}

	// A date that prints no number is an error, not a silent fallback.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "date"), []byte("#!/bin/sh\necho tomorrow\n"), 0o755)
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	if code, out := c.refresh(); code != 1 || !strings.Contains(out, `printed "tomorrow"`) {
		t.Errorf("refresh with a broken date: exit %d: %s", code, out)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	r := newTestRepo(t, time.Now().Add(24*time.Hour))
	c := newClient(t, r)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"refresh"}, "--metadata-dir DIR is required"},
		{[]string{"--metadata-dir", c.metadataDir, "frob"}, `unknown command "frob"`},
		{[]string{"--metadata-dir", c.metadataDir, "init"}, "init takes one argument"},
		{[]string{"--metadata-dir", c.metadataDir, "init", filepath.Join(c.metadataDir, "none.json")}, "none.json"},
		{[]string{"--metadata-dir", c.metadataDir, "refresh"}, "--metadata-url"},
		{[]string{"--metadata-dir", c.metadataDir, "--metadata-url", r.srv.URL + "/metadata", "refresh"}, "run init first"},
		{[]string{"--metadata-dir", c.metadataDir, "--metadata-url", "u", "download"}, "--target-name"},
		{[]string{"--bogus"}, "unknown flag"},
	} {
		code, out := c.run(tc.args...)
		if code != 1 || !strings.Contains(out, tc.want) {
			t.Errorf("%q: exit %d: %s (want exit 1 saying %q)", tc.args, code, out, tc.want)
		}
	}
	if code, out := c.run("--help"); code != 0 || !strings.Contains(out, "date +%s") {
		t.Errorf("--help: exit %d: %s", code, out)
	}
}
