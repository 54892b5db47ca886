package client

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"

	tuf "github.com/theupdateframework/go-tuf/v2/metadata"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/translog"
)

// logFile keeps the last transparency log checkpoint the client accepted
// and the snapshot it found in it.
const logFile = "log.json"

// maxLogFile bounds a file read from the log: a full tile is 8 KiB, a
// bundle 256 entries of a few hundred bytes, a checkpoint a few lines.
const maxLogFile = 4 << 20

// ErrNotLogged marks an update refused because the transparency log the
// root declares does not vouch for the repository's snapshot: a split
// view, a forked or shrunken log, tampered tiles, or a checkpoint without
// the log's signature or its witnesses' quorum. errors.Is also matches
// translog's error for the precise cause, and ErrUntrusted.
var ErrNotLogged = errors.New("snapshot not vouched for by the transparency log")

// tufState is the trusted timestamp and snapshot as a refresh found them,
// to put back when the log refuses the new ones.
type tufState map[string][]byte

func (c *Client) saveTUFState() tufState {
	st := tufState{}
	for _, name := range []string{"timestamp.json", "snapshot.json"} {
		if data, err := os.ReadFile(filepath.Join(c.dir, tufDir, name)); err == nil {
			st[name] = data
		}
	}
	return st
}

func (c *Client) restoreTUFState(st tufState) {
	for _, name := range []string{"timestamp.json", "snapshot.json"} {
		p := filepath.Join(c.dir, tufDir, name)
		if data, ok := st[name]; ok {
			_ = writeFileAtomic(p, data, 0o644)
		} else {
			_ = os.Remove(p)
		}
	}
}

// checkLogged accepts the snapshot a refresh trusted only if the log the
// root declares holds it; a repository whose root declares no log is
// accepted as TUF accepts it. Nothing is fetched when the snapshot is the
// one accepted last, so a refresh with no news stays at two requests.
func (c *Client) checkLogged(ctx context.Context, up *updater.Updater, before tufState) error {
	tm := up.GetTrustedMetadataSet()
	cfg, err := rootLogConfig(tm.Root)
	if err != nil || cfg == nil {
		return err
	}
	snap, err := os.ReadFile(filepath.Join(c.dir, tufDir, "snapshot.json"))
	if err != nil {
		return damagedState(c.dir, "trusted snapshot", err)
	}
	sum := sha256.Sum256(snap)
	v := tm.Snapshot.Signed.Version
	prev, err := c.loadSeen()
	if err != nil {
		return err
	}
	if prev != nil && prev.Origin == cfg.Origin && prev.SnapshotVersion == v && string(prev.SnapshotSHA256) == string(sum[:]) {
		return nil
	}
	r := &translog.Reader{Fetch: c.logFetch(ctx)}
	seen, err := r.Accept(ctx, cfg, prev, v, sum[:])
	if err != nil {
		c.restoreTUFState(before)
		if isLogAttack(err) {
			return fmt.Errorf("%w: %w: %w", ErrUntrusted, ErrNotLogged, err)
		}
		return fmt.Errorf("transparency log of %s: %w", c.config.Repository, err)
	}
	return c.saveSeen(seen)
}

func isLogAttack(err error) bool {
	for _, e := range []error{translog.ErrCheckpoint, translog.ErrFork, translog.ErrShrunk, translog.ErrNotLogged, translog.ErrTampered} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// rootLogConfig returns the log a trusted root declares, or nil.
func rootLogConfig(root *tuf.Metadata[tuf.RootType]) (*translog.Config, error) {
	raw, ok := root.Signed.UnrecognizedFields[translog.RootField]
	if !ok {
		return nil, nil
	}
	b, err := json.Marshal(raw)
	if err != nil {
		return nil, err
	}
	var cfg translog.Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("%w: root v%d declares a transparency log that does not parse: %v", ErrUntrusted, root.Signed.Version, err)
	}
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("%w: root v%d: %w", ErrUntrusted, root.Signed.Version, err)
	}
	return &cfg, nil
}

// logFetch reads the log's files from the repository with the fetcher
// the updater uses.
// logTransport is the transport of log and audit fetches: the audit
// fetches with many workers at once, and keeps a connection for each,
// where the default transport keeps two and opens the others anew for
// every file. One is shared, so that its idle connections are reused
// from one call to the next.
var logTransport = sync.OnceValue(func() *http.Transport {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = auditWorkers
	return tr
})

func (c *Client) logFetch(ctx context.Context) translog.Fetch {
	hc := c.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: DefaultHTTPTimeout, Transport: logTransport()}
	}
	f := &fetcher{ctx: ctx, http: hc}
	return func(ctx context.Context, name string) ([]byte, error) {
		data, err := f.DownloadFile(c.config.Repository+"/"+name, maxLogFile, DefaultHTTPTimeout)
		var he *tuf.ErrDownloadHTTP
		if errors.As(err, &he) && he.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("%s: %w", name, fs.ErrNotExist)
		}
		return data, err
	}
}

func (c *Client) loadSeen() (*translog.Seen, error) {
	data, err := os.ReadFile(filepath.Join(c.dir, logFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("state %s: %w", c.dir, err)
	}
	var s translog.Seen
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, damagedState(c.dir, logFile, err)
	}
	return &s, nil
}

func (c *Client) saveSeen(s *translog.Seen) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(c.dir, logFile), append(data, '\n'), 0o644)
}
