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

	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/repo"
)

func newRepoCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "repo",
		Short: "Create, publish to, inspect and serve a TUF repository",
		Example: `  mtuf repo init --workspace ws --storage file://$PWD/repo \
      --root-key root.key --targets-key targets.key \
      --snapshot-key online.key --timestamp-key online.key
  mtuf repo publish --workspace ws --measurements m.json --image v1.0.0 --platform qemu-vtpm
  mtuf repo status --workspace ws
  mtuf repo serve --storage file://$PWD/repo --addr 127.0.0.1:8080`,
	}
	c.AddCommand(newRepoInitCmd(g), newRepoPublishCmd(g), newRepoStatusCmd(g), newRepoServeCmd(g))
	return c
}

func openWorkspace(g *globals, dir string) (*repo.Workspace, error) {
	if dir == "" {
		return nil, usageErr("--workspace DIR is required")
	}
	w, err := repo.OpenWorkspace(dir)
	if err != nil {
		return nil, err
	}
	w.Password = g.password()
	return w, nil
}

func newRepoInitCmd(g *globals) *cobra.Command {
	var (
		ws, storage                                    string
		cfg                                            repo.InitConfig
		rootExp, targetsExp, snapshotExp, timestampExp time.Duration
	)
	c := &cobra.Command{
		Use:   "init --workspace DIR --storage URL --root-key K ... ",
		Short: "Create a repository: root, targets, snapshot and timestamp, version 1",
		Long: `Create a workspace and a new repository on its storage. Root is signed by
every --root-key given (they are not recorded: keep them offline). The
targets, snapshot and timestamp keys are recorded in the workspace, which
signs with them on publish. Consistent snapshots are always on.`,
		Example: `  mtuf repo init --workspace ws --storage file://$PWD/repo \
      --root-key root-1.key --root-key root-2.key --root-threshold 2 \
      --targets-key targets.key --snapshot-key online.key --timestamp-key online.key`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ws == "" {
				return usageErr("--workspace DIR is required")
			}
			if storage == "" {
				return usageErr("--storage URL is required (file://DIR)")
			}
			cfg.Storage = storage
			cfg.Expiry = map[string]repo.Duration{}
			for role, d := range map[string]time.Duration{"root": rootExp, "targets": targetsExp, "snapshot": snapshotExp, "timestamp": timestampExp} {
				if d < 0 {
					return usageErr("--%s-expiry must be positive", role)
				}
				if d > 0 {
					cfg.Expiry[role] = repo.Duration(d)
				}
			}
			w, err := repo.Init(cmd.Context(), ws, cfg, g.password(), nil)
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
	f.StringVar(&storage, "storage", "", "where the repository lives: file://DIR")
	for _, r := range []struct {
		name string
		rk   *repo.RoleKeys
	}{{"root", &cfg.Root}, {"targets", &cfg.Targets}, {"snapshot", &cfg.Snapshot}, {"timestamp", &cfg.Timestamp}} {
		f.StringArrayVar(&r.rk.Keys, r.name+"-key", nil, r.name+" key `FILE` (repeat for several)")
		f.IntVar(&r.rk.Threshold, r.name+"-threshold", 1, "signatures needed for "+r.name)
	}
	f.DurationVar(&rootExp, "root-expiry", 0, "root lifetime (default 8760h)")
	f.DurationVar(&targetsExp, "targets-expiry", 0, "targets lifetime (default 2160h)")
	f.DurationVar(&snapshotExp, "snapshot-expiry", 0, "snapshot lifetime (default 168h)")
	f.DurationVar(&timestampExp, "timestamp-expiry", 0, "timestamp lifetime (default 24h)")
	addOutputFlag(c, g)
	return c
}

func newRepoPublishCmd(g *globals) *cobra.Command {
	var (
		ws, file, image, platform string
		replace                   bool
	)
	c := &cobra.Command{
		Use:   "publish --workspace DIR --measurements FILE --image V --platform P",
		Short: "Publish measurements as a signed target",
		Long: `Publish the measurements of an image version on a platform as the target
measurements/<image>/<platform>/measurements.json, then re-sign targets,
snapshot and timestamp. timestamp.json is written last, so clients see the
old repository or the new one, never a mix.`,
		Example: `  mtuf repo publish --workspace ws --measurements measurements.json \
      --image v1.0.0 --platform qemu-vtpm`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" || image == "" || platform == "" {
				return usageErr("--measurements FILE, --image V and --platform P are required")
			}
			data, err := os.ReadFile(file)
			if err != nil {
				return usageErr("measurements: %v", err)
			}
			m, err := metadata.Parse(data)
			if err != nil {
				return usageErr("measurements file %s: %v", file, err)
			}
			if m.Image != image || m.Platform != platform {
				return usageErr("measurements file %s is for image %s on %s, not image %s on %s", file, m.Image, m.Platform, image, platform)
			}
			w, err := openWorkspace(g, ws)
			if err != nil {
				return err
			}
			res, err := w.Publish(cmd.Context(), repo.PublishRequest{Measurements: m, Replace: replace})
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(res)
			}
			if res.Unchanged {
				fmt.Fprintf(g.stdout, "%s is already published with these measurements; nothing to do\n", res.Target)
				return nil
			}
			fmt.Fprintf(g.stdout, "published %s (sha256 %s, %d bytes)\ntargets v%d, snapshot v%d, timestamp v%d\n",
				res.Target, res.SHA256, res.Length, res.TargetsVersion, res.SnapshotVersion, res.TimestampVersion)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&ws, "workspace", "", "workspace `DIR`")
	f.StringVar(&file, "measurements", "", "measurements document `FILE` (JSON or YAML)")
	f.StringVar(&image, "image", "", "image `VERSION`")
	f.StringVar(&platform, "platform", "", "attestation `PLATFORM`, e.g. qemu-vtpm")
	f.BoolVar(&replace, "replace", false, "replace measurements already published for this image and platform")
	addOutputFlag(c, g)
	return c
}

func newRepoStatusCmd(g *globals) *cobra.Command {
	var ws string
	c := &cobra.Command{
		Use:     "status --workspace DIR",
		Short:   "Show roles, keys, thresholds, versions, expiry and targets",
		Example: `  mtuf repo status --workspace ws --output json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := openWorkspace(g, ws)
			if err != nil {
				return err
			}
			st, err := w.Status(cmd.Context())
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(st)
			}
			fmt.Fprintf(g.stdout, "repository %s\n\n", st.Storage)
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tVERSION\tEXPIRES\tSIGNED\tKEYS")
			for _, r := range st.Roles {
				short := make([]string, len(r.KeyIDs))
				for i, id := range r.KeyIDs {
					short[i] = id[:min(8, len(id))]
				}
				fmt.Fprintf(tw, "%s\t%d\t%s\t%d/%d\t%s\n", r.Role, r.Version, r.Expires.Format(time.RFC3339), r.Signatures, r.Threshold, strings.Join(short, " "))
			}
			tw.Flush()
			fmt.Fprintf(g.stdout, "\n%d target(s)\n", len(st.Targets))
			for _, t := range st.Targets {
				fmt.Fprintf(g.stdout, "  %s\n", t)
			}
			return nil
		},
	}
	c.Flags().StringVar(&ws, "workspace", "", "workspace `DIR`")
	addOutputFlag(c, g)
	return c
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
			st, err := repo.OpenStorage(storage)
			if err != nil {
				return usageErr("%v", err)
			}
			fs, ok := st.(*repo.FileStorage)
			if !ok {
				return usageErr("repo serve serves a directory (file://DIR)")
			}
			if _, err := os.Stat(fs.Dir() + "/metadata"); err != nil {
				return fmt.Errorf("%s holds no repository (no metadata directory): run 'mtuf repo init' first", fs.Dir())
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w", addr, err)
			}
			srv := &http.Server{Handler: repo.Handler(fs.Dir()), ReadHeaderTimeout: 10 * time.Second}
			if readyFile != "" {
				if err := writeReady(readyFile, ln.Addr().String()); err != nil {
					ln.Close()
					return err
				}
			}
			fmt.Fprintf(g.stdout, "serving %s on http://%s\n", fs.Dir(), ln.Addr())
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

// writeReady writes the listening address atomically, so a script that
// waits for the file never reads half of it.
func writeReady(path, addr string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(addr+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
