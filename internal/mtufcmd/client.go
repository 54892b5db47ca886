package mtufcmd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/attest"
	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/telemetry"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
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
	c.AddCommand(newClientInitCmd(g, stateDir), newClientUpdateCmd(g, stateDir), newClientListCmd(g, stateDir), newClientVerifyCmd(g, stateDir), newClientDiffCmd(g, stateDir), newClientAuditCmd(g, stateDir))
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
		Use:   "init [--repo URL] [--root FILE]",
		Short: "Trust a repository, starting from its initial root metadata",
		Long: `Initialize the client for a repository. The initial root metadata is the
anchor of all trust: every later root is verified by the one before it.

A release build ('make release ROOT=FILE REPO=URL') carries the root and
URL of the project's repository, checked when it was built: with no flags,
init trusts those, and prints the root's version and key ids to compare
with the ones the project announces. --root FILE trusts another root
instead (get it from a source you trust), --repo URL reads the repository
from elsewhere, such as a mirror. A development build carries no root:
give both flags.`,
		Example: `  mtuf client init
  mtuf client init --repo https://example.com/repo --root 1.root.json
  mtuf client init --repo file:///srv/repo --root /srv/repo/metadata/1.root.json --state ./state`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			root, embRepo, embedded, err := embeddedTrust()
			if err != nil && rootFile == "" {
				return err
			}
			source := "embedded in this binary"
			if rootFile != "" {
				if root, err = os.ReadFile(rootFile); err != nil {
					return usageErr("root: %v", err)
				}
				source = rootFile
			} else if !embedded {
				return usageErr("this mtuf is a development build with no root of trust built in: give --repo URL and --root FILE (the repository's 1.root.json, from a source you trust), or use a release build")
			}
			if repoURL == "" {
				if embRepo == "" {
					return usageErr("--repo URL is required: this binary has no repository URL built in")
				}
				repoURL = embRepo
			}
			sum, err := summarizeRoot(root)
			if err != nil {
				return fmt.Errorf("root %s: %w", source, err)
			}
			dir, err := stateDir()
			if err != nil {
				return usageErr("%v", err)
			}
			cl, err := client.Init(dir, repoURL, root)
			if err != nil {
				return fmt.Errorf("root %s: %w", source, err)
			}
			if g.json() {
				return g.printJSON(struct {
					State      string      `json:"state"`
					Repository string      `json:"repository"`
					RootSource string      `json:"root_source"`
					Root       rootSummary `json:"root"`
				}{dir, cl.Config().Repository, source, sum})
			}
			fmt.Fprintf(g.stdout, "client initialized in %s for %s\n", dir, cl.Config().Repository)
			fmt.Fprintf(g.stdout, "trusting root v%d (%s); root keys, threshold %d:\n", sum.Version, source, sum.Threshold)
			for _, id := range sum.KeyIDs {
				fmt.Fprintf(g.stdout, "  %s\n", id)
			}
			return nil
		},
	}
	c.Flags().StringVar(&repoURL, "repo", "", "repository `URL` (https://, http://, s3://, file:// or a directory; default: the one built into a release)")
	c.Flags().StringVar(&rootFile, "root", "", "trusted initial root metadata `FILE` (default: the one built into a release)")
	addOutputFlag(c, g)
	return c
}

func newClientUpdateCmd(g *globals, stateDir func() (string, error)) *cobra.Command {
	var images, drop []string
	var platform string
	var self bool
	c := &cobra.Command{
		Use:   "update --image V [--image V2] --platform P | --drop-image V",
		Short: "Fetch the trusted measurements of image versions through TUF",
		Long: `Refresh the TUF metadata (root, timestamp, snapshot, targets, following the
TUF client workflow), download the measurements of the image on the
platform, check them against their signed length and hashes, and record
them in the client's config as the reference for 'mtuf client verify'.
When the repository publishes an in-toto layout (supplychain/root.layout,
signed into the top-level targets), the measurements must also come with
links that verify against it; without a layout, a warning on standard
error says that the measurements are trusted on their TUF signature alone.
Nothing is changed when any check fails.

The images given replace every image trusted before. Give --image more than
once to trust several at once, as a cluster in the middle of a rolling
upgrade runs two versions: 'mtuf client verify' then trusts a node that
matches any of them and says which. --drop-image V stops trusting one of
them once the upgrade is over, without network.`,
		Example: `  mtuf client update --image v1.0.0 --platform qemu-vtpm
  mtuf client update --image v1.0.0 --image v1.1.0 --platform qemu-vtpm   # during a rolling upgrade
  mtuf client update --drop-image v1.0.0                                    # once it is over
  mtuf client update --self     # replace this binary with the newest release`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if self {
				if len(images) > 0 || platform != "" || len(drop) > 0 {
					return usageErr("--self updates the binary only; run it apart from --image/--platform/--drop-image")
				}
				return runSelfUpdate(cmd.Context(), g, stateDir)
			}
			if len(drop) > 0 {
				if len(images) > 0 || platform != "" {
					return usageErr("--drop-image only drops; run it apart from --image/--platform")
				}
				return runDropImages(cmd.Context(), g, stateDir, drop)
			}
			if len(images) == 0 || platform == "" {
				return usageErr("--image V and --platform P are required")
			}
			cl, err := openClient(stateDir)
			if err != nil {
				return err
			}
			for i, im := range images {
				if slices.Contains(images[:i], im) {
					return usageErr("--image %s is given twice", im)
				}
			}
			ms, err := cl.UpdateImages(cmd.Context(), images, platform)
			if err != nil {
				return err
			}
			if err := printSupplyChain(g, cl); err != nil {
				return err
			}
			if g.json() {
				// One image prints its document, as before several could be
				// trusted at once.
				if len(ms) == 1 {
					return g.printJSON(ms[0])
				}
				return g.printJSON(ms)
			}
			for _, m := range ms {
				fmt.Fprintf(g.stdout, "trusted measurements for image %s on %s: %d PCRs (%s)\n", m.Image, m.Platform, len(m.PCRs), m.Hash)
			}
			return nil
		},
	}
	c.Flags().StringArrayVar(&images, "image", nil, "image `VERSION` (repeat to trust several at once)")
	c.Flags().StringVar(&platform, "platform", "", "attestation `PLATFORM`")
	c.Flags().StringArrayVar(&drop, "drop-image", nil, "stop trusting image `VERSION` (repeat for several)")
	c.Flags().BoolVar(&self, "self", false, "update this mtuf binary to the newest release for this OS and architecture")
	addOutputFlag(c, g)
	return c
}

// runDropImages stops trusting the images drop, one after the other.
func runDropImages(ctx context.Context, g *globals, stateDir func() (string, error), drop []string) error {
	cl, err := openClient(stateDir)
	if err != nil {
		return err
	}
	for _, im := range drop {
		if err := cl.DropImage(ctx, im); err != nil {
			return usageErr("--drop-image: %v", err)
		}
	}
	var left []string
	for _, ti := range cl.Config().Images {
		left = append(left, ti.Image)
	}
	if g.json() {
		return g.printJSON(map[string][]string{"dropped": drop, "trusted": left})
	}
	fmt.Fprintf(g.stdout, "dropped image %s; trusted: %s\n", strings.Join(drop, ", "), strings.Join(left, ", "))
	return nil
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

type verifyOptions struct {
	nodes        []string
	nodesFile    string
	akFiles      []string
	caFiles      []string
	clusterID    string
	clusterIDSet bool
	referenceLog string
	timeout      time.Duration
	concurrency  int
	output       string
	update       bool
	logFormat    string
}

func newClientVerifyCmd(g *globals, stateDir func() (string, error)) *cobra.Command {
	var o verifyOptions
	c := &cobra.Command{
		Use:   "verify --node HOST:PORT ... | --nodes-file FILE  --trusted-ak FILE ... | --ak-ca CA.pem",
		Short: "Verify nodes' TPM attestations against the trusted measurements",
		Long: `Ask each node's mtuf-agent for a TPM quote over a fresh random nonce and check:

  - the attestation key: pinned (--trusted-ak), or certified by a trusted CA
    (--ak-ca) through the AK certificate the node sends;
  - the quote of the measurements' bank, and only that bank: its signature by
    that key, the nonce (a replayed attestation is refused), its PCR digest;
  - the TCG event log, when the node sends one: it must replay to the quoted
    PCRs;
  - every PCR of the trusted measurements: an enforced PCR that differs refuses
    the node, a warn-only one is reported. --cluster-id ID also enforces PCR 15
    to SHA256(0^32 || SHA256(ID)), the value of a node bound to that cluster.

For a refused node, the report names the first boot event of a differing PCR
that departs from the reference, where that can be told: the measurements hold
only final PCR values, so the event is named when the node measured more than
the reference, or, with --reference-log FILE (the TCG event log of a node of
the release image, as mtuf-agent --event-log-out writes it), always. The
reference log must replay to the trusted measurements.

Nodes are verified concurrently, at most --concurrency at once, each within its
own --timeout, so a slow or dead node delays no other.

--log-format text|json also logs on standard error, as it happens, every
exchange with a node and then each node's verdict, each line naming its node.

The trusted measurements must be current: the TUF metadata that the last update
verified them under, read from the client's state without network, must be
unexpired and still list them. When it is not, no node is asked; run 'mtuf
client update', or give --update to update first.

Exit status: 0 when every node is trusted (warn-only differences allowed), 1
when any node is refused or unreachable or the measurements are not current, 2 for usage or configuration errors
(bad flags, no trusted measurements, a key or CA file that cannot be read), in
which case no node was asked.`,
		Example: `  mtuf client verify --node 10.0.0.5:8733 --node 10.0.0.6:8733 \
      --trusted-ak node1-ak.pem --trusted-ak node2-ak.pem
  mtuf client verify --nodes-file nodes.txt --ak-ca vtpm-ca.pem --cluster-id prod-eu-1 \
      --concurrency 64 --timeout 5s --output json
  mtuf client verify --nodes-file nodes.txt --ak-ca vtpm-ca.pem --reference-log release.eventlog`,
		Args: noArgs,
		PreRunE: func(cmd *cobra.Command, args []string) error {
			switch o.output {
			case "table", "text", "json":
				return nil
			}
			return usageErr("--output must be text or json, not %q", o.output)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.clusterIDSet = cmd.Flags().Changed("cluster-id")
			return runClientVerify(cmd.Context(), g, stateDir, o)
		},
	}
	f := c.Flags()
	f.StringArrayVar(&o.nodes, "node", nil, "node agent `HOST:PORT` (repeat for several)")
	f.StringVar(&o.nodesFile, "nodes-file", "", "`FILE` with one HOST:PORT per line (# comments allowed)")
	f.StringArrayVar(&o.akFiles, "trusted-ak", nil, "pinned attestation keys `FILE` (PEM public keys or certificates, every block pinned; repeat for several)")
	f.StringArrayVar(&o.caFiles, "ak-ca", nil, "CA certificates (PEM `FILE`) that certify attestation keys (repeat for several)")
	f.StringVar(&o.clusterID, "cluster-id", "", "also enforce PCR 15 to the value of cluster `ID`")
	f.StringVar(&o.referenceLog, "reference-log", "", "TCG event log `FILE` of a node of the release image, to name the boot event that differs")
	f.DurationVar(&o.timeout, "timeout", attest.DefaultTimeout, "time allowed for each node")
	f.IntVar(&o.concurrency, "concurrency", attest.DefaultConcurrency, "nodes verified at once")
	// "table" was this flag's name for text, and stays one.
	f.StringVarP(&o.output, "output", "o", "text", "output format: text (a table) or json")
	f.StringVar(&o.logFormat, "log-format", "", "also log every exchange with a node and each node's verdict on standard error, as `FORMAT` text or json")
	f.BoolVar(&o.update, "update", false, "update the trusted measurements first, as 'mtuf client update' does for the image and platform they are for")
	return c
}

// policy checks the flags and reads the nodes and the files that say which
// attestation keys to trust, before any node is asked. The policy returned
// has no measurements yet: those come from the client's trusted state.
func (o verifyOptions) policy() ([]string, attest.Policy, error) {
	var p attest.Policy
	all, err := collectNodes(o.nodes, o.nodesFile)
	if err != nil {
		return nil, p, usageErr("%v", err)
	}
	if o.concurrency < 1 {
		return nil, p, usageErr("--concurrency %d: give at least 1", o.concurrency)
	}
	if o.logFormat != "" && o.logFormat != telemetry.LogText && o.logFormat != telemetry.LogJSON {
		return nil, p, usageErr("--log-format must be text or json, not %q", o.logFormat)
	}
	if o.timeout <= 0 {
		return nil, p, usageErr("--timeout %v: give a positive duration such as 10s", o.timeout)
	}
	if len(o.akFiles) == 0 && len(o.caFiles) == 0 {
		return nil, p, usageErr("no way to trust attestation keys: give --trusted-ak FILE (pinned keys) or --ak-ca CA.pem (a CA that certifies them)")
	}
	for _, f := range o.akFiles {
		// A file of several blocks pins every key in it.
		ks, err := keys.LoadPublicKeys(f)
		if err != nil {
			return nil, p, usageErr("--trusted-ak %s: %v", f, err)
		}
		p.TrustedAKs = append(p.TrustedAKs, ks...)
	}
	for _, f := range o.caFiles {
		certs, err := attest.LoadAKRoots(f)
		if err != nil {
			return nil, p, usageErr("--ak-ca: %v", err)
		}
		p.AKRoots = append(p.AKRoots, certs...)
	}
	if o.referenceLog != "" {
		if p.ReferenceEventLog, err = readReferenceLog(o.referenceLog); err != nil {
			return nil, p, usageErr("--reference-log: %v", err)
		}
	}
	p.ClusterID = o.clusterID
	if o.clusterIDSet && o.clusterID == "" {
		return nil, p, usageErr("--cluster-id: empty cluster ID")
	}
	return all, p, nil
}

func runClientVerify(ctx context.Context, g *globals, stateDir func() (string, error), o verifyOptions) error {
	all, p, err := o.policy()
	if err != nil {
		return err
	}
	cl, err := openClient(stateDir)
	if err != nil {
		return err
	}
	images, err := currentImages(ctx, cl, o.update)
	if err != nil {
		return err
	}
	// The last image updated is the reference the report compares a node
	// that matches none with, and the one --reference-log is of.
	p.Measurements = images[len(images)-1].Measurements
	for _, ti := range images[:len(images)-1] {
		p.Alternatives = append(p.Alternatives, ti.Measurements)
	}
	vo := attest.Options{Timeout: o.timeout, Concurrency: o.concurrency}
	var logger *slog.Logger
	if o.logFormat != "" {
		if logger, err = telemetry.NewLogger(g.stderr, o.logFormat); err != nil {
			return usageErr("%v", err)
		}
		vo.HTTPClient = verifyHTTPClient(logger)
	}
	v, err := attest.NewVerifier(p, vo)
	if err != nil {
		return usageErr("%v", err)
	}
	rep, err := v.Verify(ctx, all)
	if err != nil {
		return usageErr("%v", err)
	}
	if logger != nil {
		logVerdicts(ctx, logger, rep)
	}
	if o.output == "json" {
		if err := g.printJSON(rep); err != nil {
			return err
		}
	} else {
		printReport(g, rep)
	}
	if !rep.AllTrusted() {
		return cli.Silent(cli.ExitFailed)
	}
	return nil
}

// currentImages returns the client's trusted images once the TUF
// metadata they were verified under is known to be unexpired, after an
// update when asked for one. Stale measurements fail the command: no node
// is asked.
func currentImages(ctx context.Context, cl *client.Client, update bool) ([]client.TrustedImage, error) {
	if len(cl.Config().Images) == 0 {
		return nil, usageErr("no trusted measurements yet: run 'mtuf client update --image V --platform P' first")
	}
	if update {
		return cl.UpdateCurrentImages(ctx)
	}
	images, err := cl.CurrentImages(ctx)
	if errors.Is(err, client.ErrStale) {
		return nil, fmt.Errorf("%w (or verify with --update)", err)
	}
	return images, err
}

// maxReferenceLog bounds a reference event log: the agent protocol bounds a
// node's whole attestation, log included, to the same size.
const maxReferenceLog = agentapi.MaxResponseBytes

func readReferenceLog(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxReferenceLog+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxReferenceLog {
		return nil, fmt.Errorf("%s: larger than %d bytes: is this a TCG event log?", path, maxReferenceLog)
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%s is empty", path)
	}
	return data, nil
}

// collectNodes gathers the nodes of --node and --nodes-file, checking each
// address and refusing duplicates, which would be asked twice and reported
// twice.
func collectNodes(flagNodes []string, nodesFile string) ([]string, error) {
	var all []string
	seen := make(map[string]string)
	add := func(addr, where string) error {
		if err := checkNodeAddr(addr); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if prev, dup := seen[addr]; dup {
			return fmt.Errorf("node %s is given twice (%s and %s): each node is verified once", addr, prev, where)
		}
		seen[addr] = where
		all = append(all, addr)
		return nil
	}
	for _, n := range flagNodes {
		if err := add(n, "--node"); err != nil {
			return nil, err
		}
	}
	if nodesFile != "" {
		lines, err := readNodesFile(nodesFile)
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if err := add(l.addr, fmt.Sprintf("%s:%d", nodesFile, l.line)); err != nil {
				return nil, err
			}
		}
		if len(lines) == 0 && len(flagNodes) == 0 {
			return nil, fmt.Errorf("nodes file %s lists no node: write one HOST:PORT per line", nodesFile)
		}
	}
	if len(all) == 0 {
		return nil, errors.New("no nodes: give --node HOST:PORT or --nodes-file FILE")
	}
	return all, nil
}

// checkNodeAddr accepts HOST:PORT, the address of a node's mtuf-agent.
func checkNodeAddr(addr string) error {
	if strings.Contains(addr, "://") {
		return fmt.Errorf("%q: give the agent's HOST:PORT, without a scheme", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not HOST:PORT (as in 10.0.0.5:8733)", addr)
	}
	if host == "" {
		return fmt.Errorf("%q has no host", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("%q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

type nodeLine struct {
	addr string
	line int
}

// maxNodesFile bounds a nodes file: a line per node, for clusters of up to
// hundreds of thousands of nodes.
const maxNodesFile = 16 << 20

func readNodesFile(path string) ([]nodeLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("nodes file: %w", err)
	}
	defer f.Close()
	var out []nodeLine
	sc := bufio.NewScanner(io.LimitReader(f, maxNodesFile))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, nodeLine{addr: line, line: n})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("nodes file %s: %w", path, err)
	}
	return out, nil
}

func printReport(g *globals, rep *attest.Report) {
	several := len(rep.Alternatives) > 0
	if several {
		// The last image updated first, as the report compares with it.
		fmt.Fprintf(g.stdout, "images %s on %s (%s bank)", strings.Join(append([]string{rep.Image}, rep.Alternatives...), ", "), rep.Platform, rep.Hash)
	} else {
		fmt.Fprintf(g.stdout, "image %s on %s (%s bank)", rep.Image, rep.Platform, rep.Hash)
	}
	if rep.ClusterID != "" {
		fmt.Fprintf(g.stdout, ", cluster ID %s", rep.ClusterID)
	}
	fmt.Fprint(g.stdout, "\n\n")
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	if several {
		fmt.Fprintln(tw, "NODE\tSTATUS\tIMAGE\tDETAIL")
	} else {
		fmt.Fprintln(tw, "NODE\tSTATUS\tDETAIL")
	}
	for _, n := range rep.Nodes {
		detail := n.Reason
		if detail == "" && n.AKTrust != "" {
			detail = "AK " + n.AKTrust
		}
		if several {
			// Only a trusted node matched an image.
			image := "-"
			if n.Status == attest.Trusted || n.Status == attest.TrustedWithWarnings {
				image = n.Image
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Node, n.Status, image, detail)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Node, n.Status, detail)
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
		if n.EventLog != nil {
			for _, d := range n.EventLog.Differences {
				where := fmt.Sprintf("  PCR %2d", d.PCR)
				if d.Position > 0 {
					where += fmt.Sprintf(" event %d", d.Position)
				}
				if d.Node != nil && d.Node.Seq > 0 {
					where += fmt.Sprintf(" (log event #%d)", d.Node.Seq)
				}
				diff = append(diff, where+": "+d.Explanation)
			}
		}
		if len(diff) > 0 {
			fmt.Fprintf(g.stdout, "\n%s: PCRs that differ\n%s\n", n.Node, strings.Join(diff, "\n"))
		}
	}
	fmt.Fprintf(g.stdout, "\n%d of %d node(s) trusted", rep.Count(attest.Trusted)+rep.Count(attest.TrustedWithWarnings), len(rep.Nodes))
	if r, u := rep.Count(attest.Refused), rep.Count(attest.Unreachable); r+u > 0 {
		fmt.Fprintf(g.stdout, ", %d refused, %d unreachable", r, u)
	}
	fmt.Fprintln(g.stdout)
}

func newClientDiffCmd(g *globals, stateDir func() (string, error)) *cobra.Command {
	var images []string
	var platform string
	c := &cobra.Command{
		Use:   "diff --image FROM --image TO [--platform P]",
		Short: "Show which PCRs changed between two image versions",
		Long: `Fetch the measurements of two image versions through TUF, verified as
'mtuf client update' verifies them but without trusting them, and list the
PCRs whose reference value or enforcement changed from the first to the
second, and those only one of them holds. The platform defaults to that of
the last update.`,
		Example: `  mtuf client diff --image v1.0.0 --image v1.1.0 --platform qemu-vtpm`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(images) != 2 {
				return usageErr("give two image versions: --image FROM --image TO")
			}
			cl, err := openClient(stateDir)
			if err != nil {
				return err
			}
			if platform == "" {
				if platform = cl.Config().Platform; platform == "" {
					return usageErr("no platform: give --platform P (no update has named one yet)")
				}
			}
			from, err := cl.Fetch(cmd.Context(), images[0], platform)
			if err != nil {
				return err
			}
			to, err := cl.Fetch(cmd.Context(), images[1], platform)
			if err != nil {
				return err
			}
			changes, unchanged, err := metadata.Diff(from, to)
			if err != nil {
				return err
			}
			if g.json() {
				if changes == nil {
					changes = []metadata.PCRChange{}
				}
				if unchanged == nil {
					unchanged = []uint32{}
				}
				return g.printJSON(map[string]any{
					"from": from.Image, "to": to.Image, "platform": platform, "hash": from.Hash,
					"changes": changes, "unchanged": unchanged,
				})
			}
			printDiff(g, from, to, changes, unchanged)
			return nil
		},
	}
	c.Flags().StringArrayVar(&images, "image", nil, "image `VERSION`: the older, then the newer")
	c.Flags().StringVar(&platform, "platform", "", "attestation `PLATFORM` (default: that of the last update)")
	addOutputFlag(c, g)
	return c
}

func printDiff(g *globals, from, to *metadata.Measurements, changes []metadata.PCRChange, unchanged []uint32) {
	fmt.Fprintf(g.stdout, "image %s to %s on %s (%s bank): %d PCR(s) changed, %d unchanged\n",
		from.Image, to.Image, from.Platform, from.Hash, len(changes), len(unchanged))
	if len(changes) == 0 {
		return
	}
	value := func(v *metadata.PCRValue) string {
		switch {
		case v == nil:
			return "(none)"
		case v.WarnOnly:
			return v.Expected + " (warn-only)"
		}
		return v.Expected
	}
	fmt.Fprintln(g.stdout)
	for _, c := range changes {
		fmt.Fprintf(g.stdout, "PCR %2d %s\n  %-8s %s\n  %-8s %s\n", c.Index, c.Change, from.Image, value(c.From), to.Image, value(c.To))
	}
}
