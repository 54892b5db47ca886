package mtufcmd

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/mtuf/mtuf/internal/telemetry"
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
only. Consistent snapshots are always on.

A key is a key file, a pkcs11: URI of a key in a token, or an awskms://
reference of an ECDSA P-256 key in AWS KMS (--timestamp-key
awskms:///alias/mtuf-online), which suits the online keys: the KMS signs, and the signing machine holds no
secret. The AWS SDK finds region and credentials as usual (AWS_REGION,
AWS_PROFILE, an instance role; AWS_ENDPOINT_URL_KMS for another endpoint).`,
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
	allowUnprofiled             bool
}

func newRepoPublishCmd(g *globals) *cobra.Command {
	var o publishOptions
	c := &cobra.Command{
		Use:   "publish --workspace DIR [--measurements FILE --image V --platform P [--link FILE...] [--link-key K]] [--cli-binary FILE [--version V --os OS --arch ARCH]]",
		Short: "Publish measurements and/or a CLI release as signed targets, in one step",
		Long: `Publish the measurements of an image version on a platform as the target
measurements/<image>/<platform>/measurements.json, a CLI release as
cli/<version>/<os>-<arch>/mtuf, or both at once. Only the hash bins that
hold the new targets are re-signed, then snapshot and timestamp;
timestamp.json is written last, so clients see the old repository or the
new one, never a mix.

In-toto links: --link gives the links that attest the measurements (at
least the one of step read-measurements, written by pcr-reader --link-key or
in-toto-run, and the one of step precalculate-measurements, written by
pcr-precalc --link-key, when the layout names that step), and --link-key signs the link of this publish (step publish,
with measurements.json as its material) with a functionary key. The
document is then published byte for byte, the links as targets beside it
(measurements/<image>/<platform>/<step>.<keyid>.link), listed in its custom
metadata. A publish is refused when the document is not the measurements.json
a link records, and, when the repository has an in-toto layout ('mtuf repo
layout'), when the supply chain does not verify against it: what clients
would refuse is never published. Measurements without links are refused
once the repository has a layout.

Measurements are refused when an enforced PCR holds its reset value (all
zeros; all ones for PCRs 17-22), which is what a TPM reads when nothing was
measured into it: publishing it would make a blank node trusted. A profile
may allow the reset value of a PCR the image leaves unmeasured, with its
reason. Measurements for a platform without a PCR profile are refused
unless --allow-unprofiled-platform is given.

A CLI release is published under the version, OS and architecture built
into the binary, read from its Go build information (go version -m): the
version set with -ldflags "-X github.com/mtuf/mtuf/internal/mtufcmd.Version=V",
as 'make release VERSION=V' does. --version, --os and --arch, when given,
must agree with it. A development build, with no release version, is
refused: a user updated to it could never update again.

When a releases key is ECDSA P-256, the release also gets mtuf.sig, a
signature that stock cosign verifies:
  cosign verify-blob --key releases.pub --signature mtuf.sig --insecure-ignore-tlog=true mtuf`,
		Example: `  mtuf repo publish --workspace ws --measurements measurements.json \
      --image v1.0.0 --platform qemu-vtpm
  mtuf repo publish --workspace ws --measurements measurements.json --image v1.0.0 --platform qemu-vtpm \
      --link read-measurements.1a2b3c4d.link --link-key ci.key
  mtuf repo publish --workspace ws --cli-binary bin/mtuf --version v1.2.0`,
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
	f.StringVar(&o.version, "version", "", "CLI release `VERSION`, e.g. v1.2.0; must be the one built into the binary")
	f.StringVar(&o.goos, "os", "", "CLI release operating system (default: the binary's)")
	f.StringVar(&o.arch, "arch", "", "CLI release architecture (default: the binary's)")
	f.BoolVar(&o.replace, "replace", false, "replace targets already published with different content")
	f.BoolVar(&o.allowUnprofiled, "allow-unprofiled-platform", false, "publish measurements for a platform that has no PCR profile")
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
	req.AllowUnprofiledPlatform = o.allowUnprofiled
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
		// Checked here as well as by the workspace, so that the refusal
		// names the flag and comes before any key is unlocked.
		if err := repo.CheckMeasurements(m, o.allowUnprofiled); err != nil {
			if errors.Is(err, repo.ErrUnprofiledPlatform) {
				return req, nil, usageErr("measurements file %s: %v\ngive --allow-unprofiled-platform to publish it anyway", o.file, err)
			}
			return req, nil, usageErr("measurements file %s: %v", o.file, err)
		}
		req.Measurements, req.Document, raw = m, data, data
	}
	if o.withLinks() && req.Measurements == nil {
		return req, nil, usageErr("--link and --link-key go with --measurements FILE --image V --platform P")
	}
	if o.binary != "" || o.version != "" || o.goos != "" || o.arch != "" {
		if o.binary == "" {
			return req, nil, usageErr("--version, --os and --arch describe a --cli-binary FILE: give it")
		}
		data, err := os.ReadFile(o.binary)
		if err != nil {
			return req, nil, usageErr("--cli-binary: %v", err)
		}
		b, err := checkReleaseBinary(o.binary, o.version, o.goos, o.arch)
		if err != nil {
			return req, nil, usageErr("--cli-binary: %v", err)
		}
		req.Release = &repo.Release{Binary: data, Version: b.Version, OS: b.OS, Arch: b.Arch}
	}
	if req.Measurements == nil && req.Release == nil {
		return req, nil, usageErr("nothing to publish: give --measurements FILE --image V --platform P, or --cli-binary FILE")
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
			AllowUnprofiledPlatform: o.allowUnprofiled,
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
	if linked == nil && req.Measurements != nil {
		noteCanonical(g, o.file, raw, req.Measurements, res)
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

// noteCanonical says so on standard error when the target holds the
// measurements in other bytes than the file's: the file is in another
// layout (or spells a value otherwise) and was published in canonical
// form, or the same measurements were published before as other bytes.
// Whoever compares the file's sha256sum with the target's is not misled.
func noteCanonical(g *globals, file string, raw []byte, m *metadata.Measurements, res *repo.PublishResult) {
	name, err := metadata.MeasurementsTarget(m.Image, m.Platform)
	if err != nil {
		return
	}
	sum := sha256.Sum256(raw)
	for _, t := range res.Targets {
		if t.Name != name || t.SHA256 == hex.EncodeToString(sum[:]) {
			continue
		}
		why := "it is not the JSON that mtuf writes for these measurements (another layout, or other spellings of the values), so their canonical form was published"
		if t.Unchanged {
			why = "the same measurements were published before in other bytes"
		}
		fmt.Fprintf(g.stderr, "mtuf: note: %s: %s; the target's sha256 is %s, not the file's %x\n", file, why, t.SHA256, sum)
	}
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
monitoring job. --output prometheus writes, for every role, the seconds
left until it expires, its expiry time, version, signatures and threshold
in the format of node_exporter's textfile collector, so that Prometheus
can alert before anything expires.`,
		Example: `  mtuf repo status --workspace ws
  mtuf repo status --workspace ws --check --within 720h   # monitoring
  mtuf repo status --workspace ws --output json
  # node_exporter textfile collector, written whole or not at all:
  mtuf repo status --workspace ws --output prometheus > /var/lib/node_exporter/mtuf.prom.tmp &&
    mv /var/lib/node_exporter/mtuf.prom.tmp /var/lib/node_exporter/mtuf.prom`,
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
			if g.output == outputPrometheus {
				if err := writeStatusMetrics(g.stdout, st, time.Now()); err != nil {
					return err
				}
			} else if g.json() {
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
	// Besides text and json, the metrics a monitoring job collects.
	c.Flags().StringVarP(&g.output, "output", "o", "text", "output format: text, json, or prometheus (node_exporter textfile format)")
	c.PreRunE = func(cmd *cobra.Command, args []string) error {
		switch g.output {
		case "text", "json", outputPrometheus:
			return nil
		}
		return usageErr("--output must be text, json or prometheus, not %q", g.output)
	}
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
	var storage, addr, readyFile, logFormat string
	c := &cobra.Command{
		Use:   "serve --storage file://DIR --addr HOST:PORT",
		Short: "Serve a repository over HTTP (development, mirrors)",
		Long: `Serve a repository over HTTP with the cache headers a CDN needs: write-once
files are immutable, timestamp.json is short-lived. Stops on SIGINT or
SIGTERM.

Every request is logged on standard error, one line naming it (remote
address, method, path) with its kind (root, timestamp, snapshot, targets,
delegated, target), status, size and duration; --log-format json writes one
JSON object a line. GET /metrics serves Prometheus metrics: requests by kind
and status, bytes sent and time to answer by kind.`,
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
			logger, err := telemetry.NewLogger(g.stderr, logFormat)
			if err != nil {
				return usageErr("%v", err)
			}
			handler := repo.StorageHandler(st)
			if fs, ok := st.(*repo.FileStorage); ok {
				handler = repo.Handler(fs.Dir())
			}
			handler = serveTelemetry(handler, logger)
			return serveHTTP(cmd.Context(), handler, addr, readyFile, func(bound string) {
				fmt.Fprintf(g.stdout, "serving %s on http://%s\n", storage, bound)
			})
		},
	}
	c.Flags().StringVar(&storage, "storage", "", "repository storage: file://DIR")
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen `ADDRESS`")
	c.Flags().StringVar(&readyFile, "ready-file", "", "write the bound address to `FILE` once listening")
	c.Flags().StringVar(&logFormat, "log-format", telemetry.LogText, telemetry.LogFormatUsage)
	return c
}

// serveHTTP serves handler on addr until ctx ends (the command is
// interrupted), then shuts down gracefully. Once listening, it writes the
// bound address to readyFile, when given, for scripts that started the
// server on port 0, and tells announce.
func serveHTTP(ctx context.Context, handler http.Handler, addr, readyFile string, announce func(bound string)) error {
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
	announce(ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}
