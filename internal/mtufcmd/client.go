package mtufcmd

import (
	"bufio"
	"crypto"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/keys"
)

func newClientCmd(g *globals) *cobra.Command {
	var state string
	c := &cobra.Command{
		Use:   "client",
		Short: "Update trusted measurements through TUF and verify nodes against them",
		Example: `  mtuf client init --repo https://example.com/repo --root 1.root.json
  mtuf client update --image v1.0.0 --platform qemu-vtpm
  mtuf client verify --node 10.0.0.5:8733 --trusted-ak node1-ak.pem`,
	}
	c.PersistentFlags().StringVar(&state, "state", "", "client state `DIR` (default $MTUF_STATE or the user config dir)")
	stateDir := func() (string, error) {
		if state != "" {
			return state, nil
		}
		return client.DefaultStateDir()
	}
	c.AddCommand(newClientInitCmd(g, stateDir), newClientUpdateCmd(g, stateDir), newClientListCmd(g, stateDir), newClientVerifyCmd(g, stateDir))
	return c
}

func openClient(stateDir func() (string, error)) (*client.Client, error) {
	dir, err := stateDir()
	if err != nil {
		return nil, usageErr("%v", err)
	}
	c, err := client.Open(dir)
	if errors.Is(err, client.ErrNotInitialized) {
		return nil, usageErr("%v", err)
	}
	return c, err
}

func newClientInitCmd(g *globals, stateDir func() (string, error)) *cobra.Command {
	var repoURL, rootFile string
	c := &cobra.Command{
		Use:   "init --repo URL --root FILE",
		Short: "Trust a repository, starting from a root metadata file",
		Long: `Initialize the client for a repository. The root metadata file is the
anchor of all trust: get it from a source you trust (it is compiled into
release binaries), then every later root is verified by the one before.`,
		Example: `  mtuf client init --repo https://example.com/repo --root 1.root.json
  mtuf client init --repo file:///srv/repo --root /srv/repo/metadata/1.root.json --state ./state`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if repoURL == "" || rootFile == "" {
				return usageErr("--repo URL and --root FILE are required")
			}
			root, err := os.ReadFile(rootFile)
			if err != nil {
				return usageErr("root: %v", err)
			}
			dir, err := stateDir()
			if err != nil {
				return usageErr("%v", err)
			}
			cl, err := client.Init(dir, repoURL, root)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(map[string]string{"state": dir, "repository": cl.Config().Repository})
			}
			fmt.Fprintf(g.stdout, "client initialized in %s for %s\n", dir, cl.Config().Repository)
			return nil
		},
	}
	c.Flags().StringVar(&repoURL, "repo", "", "repository `URL` (https://, http://, file:// or a directory)")
	c.Flags().StringVar(&rootFile, "root", "", "trusted initial root metadata `FILE`")
	addOutputFlag(c, g)
	return c
}

func newClientUpdateCmd(g *globals, stateDir func() (string, error)) *cobra.Command {
	var image, platform string
	c := &cobra.Command{
		Use:   "update --image V --platform P",
		Short: "Fetch the trusted measurements of an image version through TUF",
		Long: `Refresh the TUF metadata (root, timestamp, snapshot, targets, following the
TUF client workflow), download the measurements of the image on the
platform, check them against their signed length and hashes, and record
them in the client's config as the reference for 'mtuf client verify'.
Nothing is changed when any check fails.`,
		Example: `  mtuf client update --image v1.0.0 --platform qemu-vtpm`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if image == "" || platform == "" {
				return usageErr("--image V and --platform P are required")
			}
			cl, err := openClient(stateDir)
			if err != nil {
				return err
			}
			m, err := cl.Update(cmd.Context(), image, platform)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(m)
			}
			fmt.Fprintf(g.stdout, "trusted measurements for image %s on %s: %d PCRs (%s)\n", m.Image, m.Platform, len(m.PCRs), m.Hash)
			return nil
		},
	}
	c.Flags().StringVar(&image, "image", "", "image `VERSION`")
	c.Flags().StringVar(&platform, "platform", "", "attestation `PLATFORM`")
	addOutputFlag(c, g)
	return c
}

func newClientListCmd(g *globals, stateDir func() (string, error)) *cobra.Command {
	c := &cobra.Command{
		Use:     "list",
		Short:   "List the image versions and platforms the repository offers",
		Example: `  mtuf client list --output json`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := openClient(stateDir)
			if err != nil {
				return err
			}
			list, err := cl.List(cmd.Context())
			if err != nil {
				return err
			}
			if g.json() {
				if list == nil {
					list = []client.Available{}
				}
				return g.printJSON(list)
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "IMAGE\tPLATFORM")
			for _, a := range list {
				fmt.Fprintf(tw, "%s\t%s\n", a.Image, a.Platform)
			}
			return tw.Flush()
		},
	}
	addOutputFlag(c, g)
	return c
}

func newClientVerifyCmd(g *globals, stateDir func() (string, error)) *cobra.Command {
	var (
		nodes       []string
		nodesFile   string
		akFiles     []string
		timeout     time.Duration
		concurrency int
	)
	c := &cobra.Command{
		Use:   "verify --node HOST:PORT ... --trusted-ak FILE ...",
		Short: "Verify nodes' TPM attestations against the trusted measurements",
		Long: `Ask each node's mtuf-agent for a TPM quote over a fresh random nonce, check
the quote's signature by a trusted attestation key, the nonce, and the PCR
digest of the quote of the measurements' bank (only that bank), then
compare every PCR with the trusted measurements: an enforced PCR that
differs refuses the node, a warn-only one is reported.

Exit status: 0 when every node is trusted, 1 when any node is refused or
unreachable, 2 for usage or configuration errors.`,
		Example: `  mtuf client verify --node 10.0.0.5:8733 --node 10.0.0.6:8733 \
      --trusted-ak node1-ak.pem --trusted-ak node2-ak.pem
  mtuf client verify --nodes-file nodes.txt --trusted-ak aks.pem --output json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if nodesFile != "" {
				more, err := readNodesFile(nodesFile)
				if err != nil {
					return usageErr("%v", err)
				}
				nodes = append(nodes, more...)
			}
			if len(nodes) == 0 {
				return usageErr("no nodes: give --node HOST:PORT or --nodes-file FILE")
			}
			if len(akFiles) == 0 {
				return usageErr("no trusted attestation keys: give --trusted-ak FILE")
			}
			var aks []crypto.PublicKey
			for _, f := range akFiles {
				k, err := keys.LoadPublic(f)
				if err != nil {
					return usageErr("--trusted-ak %s: %v", f, err)
				}
				aks = append(aks, k)
			}
			cl, err := openClient(stateDir)
			if err != nil {
				return err
			}
			cfg := cl.Config()
			if cfg.Measurements == nil {
				return usageErr("no trusted measurements yet: run 'mtuf client update --image V --platform P' first")
			}
			rep, err := client.Verify(cmd.Context(), nodes, client.Policy{
				Measurements: cfg.Measurements, TrustedAKs: aks, Timeout: timeout, Concurrency: concurrency,
			})
			if err != nil {
				return usageErr("%v", err)
			}
			if g.json() {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else {
				printReport(g, rep)
			}
			if !rep.AllTrusted() {
				return silent{code: exitFailed}
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringArrayVar(&nodes, "node", nil, "node agent `HOST:PORT` (repeat for several)")
	f.StringVar(&nodesFile, "nodes-file", "", "`FILE` with one HOST:PORT per line (# comments allowed)")
	f.StringArrayVar(&akFiles, "trusted-ak", nil, "trusted attestation key `FILE` (PEM; repeat for several)")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "time allowed for each node")
	f.IntVar(&concurrency, "concurrency", 16, "nodes verified at once")
	addOutputFlag(c, g)
	return c
}

func readNodesFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("nodes file: %w", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		if line != "" {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

func printReport(g *globals, rep *client.Report) {
	fmt.Fprintf(g.stdout, "image %s on %s (%s bank)\n\n", rep.Image, rep.Platform, rep.Hash)
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tSTATUS\tDETAIL")
	for _, n := range rep.Nodes {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Node, n.Status, n.Reason)
	}
	tw.Flush()
	for _, n := range rep.Nodes {
		var diff []string
		for _, p := range n.PCRs {
			if p.Match {
				continue
			}
			kind := "enforced"
			if p.WarnOnly {
				kind = "warn-only"
			}
			diff = append(diff, fmt.Sprintf("  PCR %2d (%s)\n    expected %x\n    actual   %x", p.Index, kind, p.Expected, p.Actual))
		}
		if len(diff) > 0 {
			fmt.Fprintf(g.stdout, "\n%s: PCRs that differ\n%s\n", n.Node, strings.Join(diff, "\n"))
		}
	}
	trusted := 0
	for _, n := range rep.Nodes {
		if n.Status == client.Trusted || n.Status == client.TrustedWithWarnings {
			trusted++
		}
	}
	fmt.Fprintf(g.stdout, "\n%d of %d node(s) trusted\n", trusted, len(rep.Nodes))
}
