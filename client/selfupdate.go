package client

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"
	"golang.org/x/mod/semver"
)

// ErrNotNewer is returned when the repository offers no release newer
// than the running one.
var ErrNotNewer = errors.New("no newer release")

// Release is a CLI release the repository offers.
type Release struct {
	Version string `json:"version"`
	OS      string `json:"os"`
	Arch    string `json:"arch"`
	Target  string `json:"target"`
	Length  int64  `json:"length"`
}

// Releases lists the CLI releases on offer for an OS and architecture,
// newest first.
func (c *Client) Releases(ctx context.Context, goos, goarch string) ([]Release, error) {
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rels, _, err := c.releases(ctx, goos, goarch)
	return rels, err
}

// releases refreshes the metadata and lists the releases on offer; it
// returns the refreshed updater, which knows their target info.
func (c *Client) releases(ctx context.Context, goos, goarch string) ([]Release, *updater.Updater, error) {
	up, err := c.refresh(ctx)
	if err != nil {
		return nil, nil, err
	}
	targets, err := loadAllBins(up, "cli/x/x/mtuf")
	if err != nil {
		return nil, nil, err
	}
	var out []Release
	for name, tf := range targets {
		parts := strings.Split(name, "/")
		if len(parts) != 4 || parts[0] != "cli" || parts[3] != "mtuf" || parts[2] != goos+"-"+goarch || !semver.IsValid(parts[1]) {
			continue
		}
		out = append(out, Release{Version: parts[1], OS: goos, Arch: goarch, Target: name, Length: tf.Length})
	}
	sort.Slice(out, func(i, j int) bool { return semver.Compare(out[i].Version, out[j].Version) > 0 })
	return out, up, nil
}

// SelfUpdateOptions says what binary to replace and how to report.
type SelfUpdateOptions struct {
	// Running is the running binary's version; a release must be newer.
	Running string
	// Binary is the file to replace; "" means the running executable.
	Binary string
	// Progress, if set, is called as bytes arrive.
	Progress func(done, total int64)
}

// SelfUpdate replaces the binary with the newest release for this OS and
// architecture. The download streams to a temporary file beside the
// binary while it is hashed, so memory stays constant whatever the size;
// the length and SHA-256 signed in the repository are checked before an
// atomic rename over the binary, and the previous binary is kept as
// BINARY.old. A release that is not newer than the running one is
// refused: ErrNotNewer.
func (c *Client) SelfUpdate(ctx context.Context, opts SelfUpdateOptions) (*Release, error) {
	if !semver.IsValid(opts.Running) {
		return nil, fmt.Errorf("the running version %q is not a release version (vMAJOR.MINOR.PATCH); a development build does not update itself", opts.Running)
	}
	bin := opts.Binary
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		if bin, err = filepath.EvalSymlinks(exe); err != nil {
			return nil, err
		}
	}
	unlock, err := c.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	rels, up, err := c.releases(ctx, runtime.GOOS, runtime.GOARCH)
	if err != nil {
		return nil, err
	}
	if len(rels) == 0 {
		return nil, fmt.Errorf("%w: the repository offers no release for %s-%s", ErrNotNewer, runtime.GOOS, runtime.GOARCH)
	}
	rel := rels[0]
	if semver.Compare(rel.Version, opts.Running) <= 0 {
		return nil, fmt.Errorf("%w: the newest release for %s-%s is %s and this is %s", ErrNotNewer, runtime.GOOS, runtime.GOARCH, rel.Version, opts.Running)
	}
	ti, err := LookupTarget(up, rel.Target)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", rel.Target, explain(err))
	}
	if err := c.streamTarget(ctx, ti, bin, opts.Progress); err != nil {
		return nil, err
	}
	return &rel, nil
}

// streamTarget downloads a target to dst through a temporary file,
// hashing as it writes, and renames it into place only once the length
// and hash match the signed ones.
func (c *Client) streamTarget(ctx context.Context, ti *tuf.TargetFiles, dst string, progress func(done, total int64)) error {
	want, ok := ti.Hashes["sha256"]
	if !ok {
		return fmt.Errorf("%w: target %s has no sha256 hash", ErrUntrusted, ti.Path)
	}
	dir, base := path.Split(ti.Path)
	// Joined as the updater joins the URLs of metadata and targets: the
	// path of an s3:// file comes after the URL's options.
	u := c.config.Repository + "/targets/" + dir + fmt.Sprintf("%x.%s", []byte(want), base)
	body, err := c.open(ctx, u)
	if err != nil {
		return err
	}
	defer body.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".new-*")
	if err != nil {
		return fmt.Errorf("cannot write beside %s: %w", dst, err)
	}
	defer os.Remove(tmp.Name())
	if err := copySigned(tmp, body, u, ti, want, progress); err != nil {
		tmp.Close()
		return err
	}
	return replaceBinary(tmp, dst)
}

// copySigned copies the target ti from body, downloaded from u, to tmp,
// and checks that it has the length and SHA-256 (want) the repository
// signed.
func copySigned(tmp *os.File, body io.Reader, u string, ti *tuf.TargetFiles, want []byte, progress func(done, total int64)) error {
	h := sha256.New()
	var done int64
	buf := make([]byte, 256<<10)
	// One byte more than signed tells an oversized file apart.
	r := io.LimitReader(body, ti.Length+1)
	for {
		n, rerr := r.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			if _, err := tmp.Write(buf[:n]); err != nil {
				return fmt.Errorf("write %s: %w", tmp.Name(), err)
			}
			done += int64(n)
			if progress != nil {
				progress(done, ti.Length)
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("download %s: %w", u, rerr)
		}
	}
	if done != ti.Length {
		return fmt.Errorf("%w: %s is %d bytes, the repository signed %d", ErrUntrusted, ti.Path, done, ti.Length)
	}
	if subtle.ConstantTimeCompare(h.Sum(nil), want) != 1 {
		return fmt.Errorf("%w: %s does not have the SHA-256 the repository signed", ErrUntrusted, ti.Path)
	}
	return nil
}

// replaceBinary makes the verified tmp the binary dst, with dst's
// permissions (0755 for a new one), keeping the previous binary as
// dst.old. It closes tmp.
func replaceBinary(tmp *os.File, dst string) error {
	mode := os.FileMode(0o755)
	if fi, err := os.Stat(dst); err == nil {
		mode = fi.Mode().Perm()
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if _, err := os.Stat(dst); err == nil {
		old := dst + ".old"
		os.Remove(old)
		if err := os.Link(dst, old); err != nil {
			return fmt.Errorf("keep the previous binary as %s: %w", old, err)
		}
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("replace %s: %w", dst, err)
	}
	return nil
}

// open streams a repository file over http(s), s3 or file.
func (c *Client) open(ctx context.Context, rawURL string) (io.ReadCloser, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "s3":
		body, _, _, err := s3Open(ctx, &s3Clients{}, rawURL)
		return body, err
	case "file":
		f, err := os.Open(u.Path)
		if err != nil {
			return nil, fmt.Errorf("download %s: %w", rawURL, err)
		}
		return f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, err
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", rawURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: %s", rawURL, resp.Status)
	}
	return resp.Body, nil
}
