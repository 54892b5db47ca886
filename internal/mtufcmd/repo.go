package mtufcmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/safefile"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/repo"
)

func newRepoCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "repo",
		Short: "Create, publish to, inspect and serve a TUF repository",
		Example: `  mtuf repo init --workspace ws --storage file://$PWD/repo \
      --root-key root.key --targets-key targets.key --measurements-key ci.key \
      --snapshot-key online.key --timestamp-key online.key
  mtuf repo publish --workspace ws --measurements m.json --image v1.0.0 --platform qemu-vtpm
  mtuf repo status --workspace ws
  mtuf repo serve --storage file://$PWD/repo --addr 127.0.0.1:8080`,
	}
	c.AddCommand(newRepoInitCmd(g), newRepoPublishCmd(g), newRepoRefreshCmd(g), newRepoStatusCmd(g), newRepoServeCmd(g))
	c.AddCommand(newRepoMirrorCmd(g))
	c.AddCommand(newRepoStageCmd(g), newRepoSignCmd(g), newRepoCommitCmd(g))
	c.AddCommand(newRepoLayoutCmd(g))
	return c
}

// wrapStorage, when set, wraps a workspace's storage: the tests put a
// fault-injecting storage under a real publish process to kill it between
// two writes. It is nil in the mtuf binary.
var wrapStorage func(repo.Storage) repo.Storage

func openWorkspace(g *globals, dir string) (*repo.Workspace, error) {
	if dir == "" {
		return nil, usageErr("--workspace DIR is required")
	}
	w, err := repo.OpenWorkspace(dir)
	if err != nil {
		return nil, err
	}
	if wrapStorage != nil {
		w.Storage = wrapStorage(w.Storage)
	}
	w.Keys = keys.Files{Password: g.password()}
	return w, nil
}

func newRepoInitCmd(g *globals) *cobra.Command {
	var (
		ws, storage                                    string
		cfg                                            repo.InitConfig
		lf                                             logFlags
		rootExp, targetsExp, snapshotExp, timestampExp time.Duration
		measurementsExp, releasesExp                   time.Duration
	)
	c := &cobra.Command{
		Use:   "init --workspace DIR --storage URL --root-key K ... ",
		Short: "Create a repository: root, targets, delegated roles and their hash bins",
		Long: `Create a workspace and a new repository on its storage.

Root is signed by every --root-key and targets by every --targets-key;
neither is recorded: keep them offline. Targets delegates measurements/*
to the measurements role (the CI key) and cli/* to the releases role (the
release key), each of which delegates to succinct hash bins, so a publish
re-signs one bin. The measurements, releases, snapshot and timestamp keys
are recorded in the workspace, which signs with them on publish and
refresh. --releases-key may be left out for a repository of measurements
only. Consistent snapshots are always on.`,
		Example: `  mtuf repo init --workspace ws --storage file://$PWD/repo \
      --root-key root-1.key --root-key root-2.key --root-threshold 2 \
      --targets-key targets.key --measurements-key ci.key --releases-key releases.key \
      --snapshot-key online.key --timestamp-key online.key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ws == "" {
				return usageErr("--workspace DIR is required")
			}
			if storage == "" {
				return usageErr("--storage URL is required (file://DIR)")
			}
			cfg.Storage = storage
			var err error
			if cfg.Log, err = lf.settings(cmd.Flags().Changed); err != nil {
				return err
			}
			cfg.Expiry = map[string]repo.Duration{}
			for role, d := range map[string]time.Duration{"root": rootExp, "targets": targetsExp, "snapshot": snapshotExp, "timestamp": timestampExp, "measurements": measurementsExp, "releases": releasesExp} {
				if d < 0 {
					return usageErr("--%s-expiry must be positive", role)
				}
				if d > 0 {
					cfg.Expiry[role] = repo.Duration(d)
				}
			}
			w, err := repo.Init(cmd.Context(), ws, cfg, keys.Files{Password: g.password()}, nil)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(map[string]string{"workspace": w.Dir, "storage": w.Config.Storage, "root": "metadata/1.root.json"})
			}
			fmt.Fprintf(g.stdout, "created repository at %s (workspace %s)\nclients trust it with: mtuf client init --repo URL --root %s\n",
				w.Config.Storage, w.Dir, strings.TrimPrefix(w.Config.Storage, "file://")+"/metadata/1.root.json")
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&ws, "workspace", "", "workspace `DIR` to create")
	f.StringVar(&storage, "storage", "", "where the repository lives: file://DIR or s3://BUCKET/PREFIX?endpoint=URL&region=R&path-style=true")
	for _, r := range []struct {
		name string
		rk   *repo.RoleKeys
	}{{"root", &cfg.Root}, {"targets", &cfg.Targets}, {"snapshot", &cfg.Snapshot}, {"timestamp", &cfg.Timestamp}, {"measurements", &cfg.Measurements}, {"releases", &cfg.Releases}} {
		f.StringArrayVar(&r.rk.Keys, r.name+"-key", nil, r.name+" key `FILE` (repeat for several)")
		f.IntVar(&r.rk.Threshold, r.name+"-threshold", 1, "signatures needed for "+r.name)
	}
	f.IntVar(&cfg.MeasurementsBins, "measurements-bins", 256, "hash bins for measurements (a power of two)")
	f.IntVar(&cfg.ReleasesBins, "releases-bins", 16, "hash bins for CLI releases (a power of two)")
	f.DurationVar(&rootExp, "root-expiry", 0, "root lifetime (default 8760h)")
	f.DurationVar(&targetsExp, "targets-expiry", 0, "targets lifetime (default 2160h)")
	f.DurationVar(&snapshotExp, "snapshot-expiry", 0, "snapshot lifetime (default 168h)")
	f.DurationVar(&timestampExp, "timestamp-expiry", 0, "timestamp lifetime (default 24h)")
	f.DurationVar(&measurementsExp, "measurements-expiry", 0, "lifetime of the measurements role and its bins (default 2160h)")
	f.DurationVar(&releasesExp, "releases-expiry", 0, "lifetime of the releases role and its bins (default 2160h)")
	addLogFlags(f, &lf)
	addOutputFlag(c, g)
	return c
}

type publishOptions struct {
	ws, file, image, platform   string
	binary, version, goos, arch string
	linkFiles                   []string
	linkKey                     string
	replace                     bool
}

func newRepoPublishCmd(g *globals) *cobra.Command {
	var o publishOptions
	c := &cobra.Command{
		Use:   "publish --workspace DIR [--measurements FILE --image V --platform P [--link FILE...] [--link-key K]] [--cli-binary FILE --version V --os OS --arch ARCH]",
		Short: "Publish measurements and/or a CLI release as signed targets, in one step",
		Long: `Publish the measurements of an image version on a platform as the target
measurements/<image>/<platform>/measurements.json, a CLI release as
cli/<version>/<os>-<arch>/mtuf, or both at once. Only the hash bins that
hold the new targets are re-signed, then snapshot and timestamp;
timestamp.json is written last, so clients see the old repository or the
new one, never a mix.

In-toto links: --link gives the links that attest the measurements (at
least the one of step read-measurements, written by pcr-reader --link-key or
in-toto-run), and --link-key signs the link of this publish (step publish,
with measurements.json as its material) with a functionary key. The
document is then published byte for byte, the links as targets beside it
(measurements/<image>/<platform>/<step>.<keyid>.link), listed in its custom
metadata. A publish is refused when the document is not the measurements.json
a link records, and, when the repository has an in-toto layout ('mtuf repo
layout'), when the supply chain does not verify against it: what clients
would refuse is never published. Measurements without links are refused
once the repository has a layout.

When a releases key is ECDSA P-256, the release also gets mtuf.sig, a
signature that stock cosign verifies:
  cosign verify-blob --key releases.pub --signature mtuf.sig --insecure-ignore-tlog=true mtuf`,
		Example: `  mtuf repo publish --workspace ws --measurements measurements.json \
      --image v1.0.0 --platform qemu-vtpm
  mtuf repo publish --workspace ws --measurements measurements.json --image v1.0.0 --platform qemu-vtpm \
      --link read-measurements.1a2b3c4d.link --link-key ci.key
  mtuf repo publish --workspace ws --cli-binary bin/mtuf --version v1.2.0 --os linux --arch amd64`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepoPublish(cmd.Context(), g, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.ws, "workspace", "", "workspace `DIR`")
	f.StringVar(&o.file, "measurements", "", "measurements document `FILE` (JSON or YAML)")
	f.StringVar(&o.image, "image", "", "image `VERSION`")
	f.StringVar(&o.platform, "platform", "", "attestation `PLATFORM`, e.g. qemu-vtpm")
	f.StringVar(&o.binary, "cli-binary", "", "CLI release binary `FILE`")
	f.StringVar(&o.version, "version", "", "CLI release `VERSION`, e.g. v1.2.0")
	f.StringVar(&o.goos, "os", "", "CLI release operating system, e.g. linux")
	f.StringVar(&o.arch, "arch", "", "CLI release architecture, e.g. amd64")
	f.BoolVar(&o.replace, "replace", false, "replace targets already published with different content")
	f.StringArrayVar(&o.linkFiles, "link", nil, "in-toto link `FILE` that attests the measurements (repeat for several)")
	f.StringVar(&o.linkKey, "link-key", "", "sign the in-toto link of this publish (step publish) with the functionary key `FILE`")
	addOutputFlag(c, g)
	return c
}

// withLinks says whether the publish is one with in-toto links.
func (o publishOptions) withLinks() bool {
	return len(o.linkFiles) > 0 || o.linkKey != ""
}

// request checks that the flags go together and reads the files they
// name, before the workspace is opened. It returns the measurements
// document as read, which a publish with links publishes byte for byte.
// importable tells whether data, which is no measurements document, is
// one of the other layouts that 'pcr-reader import' converts.
func importable(data []byte) bool {
	_, err := metadata.ParseAll(data, "")
	return err == nil || errors.Is(err, metadata.ErrNoImageVersion)
}

func (o publishOptions) request() (repo.PublishRequest, []byte, error) {
	var req repo.PublishRequest
	req.Replace = o.replace
	var raw []byte
	if o.file != "" || o.image != "" || o.platform != "" {
		if o.file == "" || o.image == "" || o.platform == "" {
			return req, nil, usageErr("--measurements FILE, --image V and --platform P go together")
		}
		data, err := os.ReadFile(o.file)
		if err != nil {
			return req, nil, usageErr("measurements: %v", err)
		}
		m, err := metadata.Parse(data)
		if err != nil {
			if importable(data) {
				return req, nil, usageErr("measurements file %s: %v\nit is a measurements list of another layout (such as a per-cloud measurements.yaml or a release's list): convert it with 'pcr-reader import --in %s --image %s --out-dir DIR', then publish the DIR/%s/%s/measurements.json it writes", o.file, err, o.file, o.image, o.image, o.platform)
			}
			return req, nil, usageErr("measurements file %s: %v", o.file, err)
		}
		if m.Image != o.image || m.Platform != o.platform {
			return req, nil, usageErr("measurements file %s is for image %s on %s, not image %s on %s", o.file, m.Image, m.Platform, o.image, o.platform)
		}
		req.Measurements, raw = m, data
	}
	if o.withLinks() && req.Measurements == nil {
		return req, nil, usageErr("--link and --link-key go with --measurements FILE --image V --platform P")
	}
	if o.binary != "" || o.version != "" || o.goos != "" || o.arch != "" {
		if o.binary == "" || o.version == "" || o.goos == "" || o.arch == "" {
			return req, nil, usageErr("--cli-binary FILE, --version V, --os OS and --arch ARCH go together")
		}
		data, err := os.ReadFile(o.binary)
		if err != nil {
			return req, nil, usageErr("--cli-binary: %v", err)
		}
		req.Release = &repo.Release{Binary: data, Version: o.version, OS: o.goos, Arch: o.arch}
	}
	if req.Measurements == nil && req.Release == nil {
		return req, nil, usageErr("nothing to publish: give --measurements FILE --image V --platform P, or --cli-binary FILE --version V --os OS --arch ARCH")
	}
	return req, raw, nil
}

func runRepoPublish(ctx context.Context, g *globals, o publishOptions) error {
	req, raw, err := o.request()
	if err != nil {
		return err
	}
	w, err := openWorkspace(g, o.ws)
	if err != nil {
		return err
	}
	var res *repo.PublishResult
	var linked *repo.LinkedPublishResult
	if o.withLinks() {
		links, err := readLinks(o.linkFiles)
		if err != nil {
			return err
		}
		signer, err := loadLinkKey(ctx, g, o.linkKey)
		if err != nil {
			return err
		}
		linked, err = w.PublishWithLinks(ctx, repo.LinkedPublishRequest{
			Document: raw, Source: o.file, Image: o.image, Platform: o.platform,
			Links: links, PublishSigner: signer, Release: req.Release, Replace: o.replace,
		})
		if err != nil {
			return err
		}
		res = &linked.PublishResult
	} else {
		if res, err = w.Publish(ctx, req); err != nil {
			if errors.Is(err, repo.ErrLinksRequired) {
				if uerr := refuseWithoutLinks(ctx, w); uerr != nil {
					return uerr
				}
			}
			return err
		}
	}
	if g.json() {
		if linked != nil {
			return g.printJSON(linked)
		}
		return g.printJSON(res)
	}
	printPublished(g, res, linked)
	return nil
}

// printPublished prints what a publish did; linked is nil for a publish
// without links.
func printPublished(g *globals, res *repo.PublishResult, linked *repo.LinkedPublishResult) {
	for _, t := range res.Targets {
		if t.Unchanged {
			fmt.Fprintf(g.stdout, "%s is already published with this content\n", t.Name)
			continue
		}
		fmt.Fprintf(g.stdout, "published %s (sha256 %s, %d bytes) in %s v%d\n", t.Name, t.SHA256, t.Length, t.Bin, t.BinVersion)
	}
	if linked != nil {
		printLinked(g, linked)
	}
	if res.Unchanged {
		fmt.Fprintln(g.stdout, "nothing to do")
		return
	}
	fmt.Fprintf(g.stdout, "snapshot v%d, timestamp v%d\n", res.SnapshotVersion, res.TimestampVersion)
}

func newRepoStatusCmd(g *globals) *cobra.Command {
	var (
		ws     string
		within time.Duration
		check  bool
		list   bool
	)
	c := &cobra.Command{
		Use:   "status --workspace DIR",
		Short: "Show roles, keys, thresholds, versions and expiry; warn about what expires",
		Long: `Show every role: version, expiry, signatures over threshold, keys, and for
the delegated roles their hash bins and targets. Warnings name what has
expired, what an online role should have re-signed by now (run
'mtuf repo refresh'), and offline roles that expire within --within.

With --check the exit status is 1 when there is any warning, for a
monitoring job.`,
		Example: `  mtuf repo status --workspace ws
  mtuf repo status --workspace ws --check --within 720h   # monitoring
  mtuf repo status --workspace ws --output json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := openWorkspace(g, ws)
			if err != nil {
				return err
			}
			st, err := w.Status(cmd.Context(), within)
			if err != nil {
				return err
			}
			var names []string
			if list {
				if names, err = w.Targets(cmd.Context()); err != nil {
					return err
				}
			}
			if g.json() {
				out := struct {
					*repo.Status
					TargetNames []string `json:"targetNames,omitempty"`
				}{st, names}
				if err := g.printJSON(out); err != nil {
					return err
				}
			} else if err := printStatus(g, w, st, names); err != nil {
				return err
			}
			if check && len(st.Warnings) > 0 {
				return cli.Silent(cli.ExitFailed)
			}
			return nil
		},
	}
	c.Flags().StringVar(&ws, "workspace", "", "workspace `DIR`")
	c.Flags().DurationVar(&within, "within", 30*24*time.Hour, "warn about offline roles that expire within this `DURATION`")
	c.Flags().BoolVar(&check, "check", false, "exit 1 when there is any warning")
	c.Flags().BoolVar(&list, "targets", false, "list every target name")
	addOutputFlag(c, g)
	return c
}

// printStatus prints the status of the repository as a table of roles,
// then the target names (when listed), what is staged and the warnings.
func printStatus(g *globals, w *repo.Workspace, st *repo.Status, names []string) error {
	fmt.Fprintf(g.stdout, "repository %s\n\n", st.Storage)
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tVERSION\tEXPIRES\tSIGNED\tKEYS\tBINS\tTARGETS")
	for _, r := range st.Roles {
		short := make([]string, len(r.KeyIDs))
		for i, id := range r.KeyIDs {
			short[i] = id[:min(8, len(id))]
		}
		bins := "-"
		if r.Bins > 0 {
			bins = fmt.Sprintf("%d (expire %s)", r.Bins, r.BinsExpire.Format(time.RFC3339))
		}
		kind := "offline"
		if r.Online {
			kind = "online"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d/%d\t%s %s\t%s\t%d\n", r.Role, r.Version, r.Expires.Format(time.RFC3339), r.Signatures, r.Threshold, strings.Join(short, ","), kind, bins, r.Targets)
	}
	tw.Flush()
	for _, n := range names {
		fmt.Fprintf(g.stdout, "  %s\n", n)
	}
	if err := printStaged(g, w); err != nil {
		return err
	}
	for _, wmsg := range st.Warnings {
		fmt.Fprintf(g.stdout, "warning: %s\n", wmsg)
	}
	return nil
}

// exitNothingDue is refresh's exit status when nothing needed signing.
const exitNothingDue = 3

func newRepoRefreshCmd(g *globals) *cobra.Command {
	var (
		ws     string
		window time.Duration
	)
	c := &cobra.Command{
		Use:   "refresh --workspace DIR",
		Short: "Re-sign the online roles that expire soon (run it from cron)",
		Long: `Re-sign what the online keys sign and what expires within the refresh
window: the timestamp, the snapshot, and the delegated roles and their hash
bins. The default window of each role is a quarter of its validity period
(6h for a 1-day timestamp). Running it again signs nothing new.

Exit status: 0 when it re-signed something, 3 when nothing was due, 1 on
an error. Offline roles (root, targets) that expire soon are reported on
standard error: they need a signing ceremony.`,
		Example: `  # crontab: every hour
  0 * * * *  mtuf repo refresh --workspace /srv/mtuf/ws --password-file /srv/mtuf/pw; [ $? -ne 1 ]`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := openWorkspace(g, ws)
			if err != nil {
				return err
			}
			res, err := w.Refresh(cmd.Context(), window)
			if err != nil {
				return err
			}
			for _, wmsg := range res.Warnings {
				fmt.Fprintf(g.stderr, "mtuf: warning: %s\n", wmsg)
			}
			if g.json() {
				if res.Signed == nil {
					res.Signed = []string{}
				}
				if err := g.printJSON(res); err != nil {
					return err
				}
			} else if len(res.Signed) == 0 {
				fmt.Fprintln(g.stdout, "nothing is due for re-signing")
			} else {
				fmt.Fprintf(g.stdout, "re-signed %s\n", summarizeRoles(res.Signed))
			}
			if len(res.Signed) == 0 {
				return cli.Silent(exitNothingDue)
			}
			return nil
		},
	}
	c.Flags().StringVar(&ws, "workspace", "", "workspace `DIR`")
	c.Flags().DurationVar(&window, "window", 0, "re-sign what expires within this `DURATION` (default: a quarter of each role's period)")
	addOutputFlag(c, g)
	return c
}

// summarizeRoles shortens a list with many bins: "measurements-bin-* (256)".
func summarizeRoles(roles []string) string {
	bins := map[string]int{}
	var out []string
	for _, r := range roles {
		if i := strings.Index(r, "-bin-"); i > 0 {
			if bins[r[:i]] == 0 {
				out = append(out, r[:i]+"-bin-*")
			}
			bins[r[:i]]++
			continue
		}
		out = append(out, r)
	}
	for i, r := range out {
		if p, ok := strings.CutSuffix(r, "-bin-*"); ok {
			out[i] = fmt.Sprintf("%s (%d bins)", r, bins[p])
		}
	}
	return strings.Join(out, ", ")
}

func newRepoServeCmd(g *globals) *cobra.Command {
	var storage, addr, readyFile string
	c := &cobra.Command{
		Use:   "serve --storage file://DIR --addr HOST:PORT",
		Short: "Serve a repository over HTTP (development, mirrors)",
		Long: `Serve a repository over HTTP with the cache headers a CDN needs: write-once
files are immutable, timestamp.json is short-lived. Stops on SIGINT or
SIGTERM.`,
		Example: `  mtuf repo serve --storage file://$PWD/repo --addr 127.0.0.1:8080`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if storage == "" {
				return usageErr("--storage file://DIR is required")
			}
			st, err := repo.OpenStorage(cmd.Context(), storage)
			if err != nil {
				return usageErr("%v", err)
			}
			if _, err := st.Get(cmd.Context(), "metadata/1.root.json"); err != nil {
				return fmt.Errorf("%s holds no repository (%v): run 'mtuf repo init' first", storage, err)
			}
			handler := repo.StorageHandler(st)
			if fs, ok := st.(*repo.FileStorage); ok {
				handler = repo.Handler(fs.Dir())
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", addr, err)
			}
			srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
			if readyFile != "" {
				if err := safefile.WriteFile(readyFile, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
					ln.Close()
					return err
				}
			}
			fmt.Fprintf(g.stdout, "serving %s on http://%s\n", storage, ln.Addr())
			errc := make(chan error, 1)
			go func() { errc <- srv.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-cmd.Context().Done():
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
					return err
				}
				return nil
			}
		},
	}
	c.Flags().StringVar(&storage, "storage", "", "repository storage: file://DIR")
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen `ADDRESS`")
	c.Flags().StringVar(&readyFile, "ready-file", "", "write the bound address to `FILE` once listening")
	return c
}
