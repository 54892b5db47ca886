package mtufcmd

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/repo"
)

// defaultLayoutExpiry is the life of a layout: it is signed offline by its
// owner, like root, and renewed as rarely.
const defaultLayoutExpiry = 365 * 24 * time.Hour

type layoutOptions struct {
	ws, ownerKey, layoutOut, ownerOut string
	targetsKeys, readers, publishers  []string
	precalcs                          []string
	expires                           time.Duration
	threshold                         int
}

func newRepoLayoutCmd(g *globals) *cobra.Command {
	var o layoutOptions
	c := &cobra.Command{
		Use:   "layout --workspace DIR --owner-key K --targets-key T [--read-functionary PUB ...] [--publish-functionary PUB ...] [--precalc-functionary PUB ...]",
		Short: "Sign the in-toto layout of the measurements and publish it as supplychain/root.layout",
		Long: `Create the in-toto layout of the measurements supply chain, sign it with the
layout owner's key, and publish it as the target supplychain/root.layout of
the top-level targets role. From then on clients verify, before they trust
any measurements, that step read-measurements (pcr-reader --link-key)
produced measurements.json and that step publish (mtuf repo publish
--link-key) published it unchanged, each signed by one of the step's
functionaries.

--precalc-functionary adds a second, independent functionary: step
precalculate-measurements (pcr-precalc --link-key), which computes from the
image itself the PCRs the image determines. The two documents differ (a
booted reading also holds firmware PCRs no one can compute from the image),
so their links record each PCR as an artifact pcrs/<bank>/<index> besides
measurements.json, and the layout demands
  MATCH pcrs/* WITH PRODUCTS FROM read-measurements
in the precalculation's products: every PCR it computed must hold the same
value in the reading. mtuf also checks that the reading's PCR artifacts are
those of the published document and that the precalculation computed every
PCR the document enforces. 'mtuf repo publish' and 'mtuf client update' then
refuse measurements the two do not agree on, naming the PCR; so does
in-toto-verify.

The layout decides whose measurements are trusted, so it is signed into the
top-level targets metadata with the offline --targets-key (as many as its
threshold), never with the online measurements key. The owner's public key
goes into the target's custom metadata: clients take it from TUF-verified
metadata, not from the network.

Functionaries are public key files: mtuf's PEM .pub files, or in-toto's
securesystemslib JSON keys (in-toto-keygen's .pub). Without
--read-functionary or --publish-functionary, the step's functionaries are
the workspace's measurements keys (the CI key).

--layout-out and --owner-key-out write the layout and the owner's public key
in the form in-toto-verify (in-toto 1.3.1) reads:
  in-toto-verify -l root.layout -k owner.intoto.pub -t ed25519   (ecdsa: -t ecdsa; RSA: no -t)`,
		Example: `  mtuf repo layout --workspace ws --owner-key owner.key --targets-key targets.key
  mtuf repo layout --workspace ws --owner-key owner.key --targets-key targets.key \
      --read-functionary ci.pub --publish-functionary publisher.pub --expires 4380h \
      --layout-out root.layout --owner-key-out owner.intoto.pub
  mtuf repo layout --workspace ws --owner-key owner.key --targets-key targets.key \
      --read-functionary ci.pub --precalc-functionary precalc.pub`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRepoLayout(cmd.Context(), g, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.ws, "workspace", "", "workspace `DIR`")
	f.StringVar(&o.ownerKey, "owner-key", "", "layout owner's private key `FILE`: signs the layout")
	f.StringArrayVar(&o.targetsKeys, "targets-key", nil, "top-level targets private key `FILE` (repeat up to its threshold)")
	f.StringArrayVar(&o.readers, "read-functionary", nil, "public key `FILE` of a functionary of step read-measurements (repeat for several)")
	f.StringArrayVar(&o.publishers, "publish-functionary", nil, "public key `FILE` of a functionary of step publish (repeat for several)")
	f.StringArrayVar(&o.precalcs, "precalc-functionary", nil, "public key `FILE` of a functionary of step precalculate-measurements (pcr-precalc); requires the reading and the precalculation to agree (repeat for several)")
	f.IntVar(&o.threshold, "threshold", 1, "links by distinct functionaries each step needs")
	f.DurationVar(&o.expires, "expires", defaultLayoutExpiry, "how long the layout is valid")
	f.StringVar(&o.layoutOut, "layout-out", "", "also write the signed layout to `FILE`")
	f.StringVar(&o.ownerOut, "owner-key-out", "", "write the owner's public key for in-toto-verify to `FILE`")
	addOutputFlag(c, g)
	return c
}

// check checks the flags before the workspace is opened.
func (o layoutOptions) check() error {
	if o.ownerKey == "" {
		return usageErr("--owner-key K is required: the layout owner's key signs the layout")
	}
	if len(o.targetsKeys) == 0 {
		return usageErr("--targets-key T is required: the layout is a target of the top-level targets role, signed with its offline key(s)")
	}
	if o.expires <= 0 {
		return usageErr("--expires must be positive, not %s", o.expires)
	}
	if o.threshold < 1 {
		return usageErr("--threshold must be at least 1, not %d", o.threshold)
	}
	return nil
}

// layoutPlan is what a layout command signs: the functionaries of each
// step (and where they came from, for the output) and the expiry.
type layoutPlan struct {
	readKeys, publishKeys []crypto.PublicKey
	precalcKeys           []crypto.PublicKey
	readFrom, publishFrom string
	expires               time.Time
}

func runRepoLayout(ctx context.Context, g *globals, o layoutOptions) error {
	if err := o.check(); err != nil {
		return err
	}
	w, err := openWorkspace(g, o.ws)
	if err != nil {
		return err
	}
	var p layoutPlan
	if p.readKeys, p.readFrom, err = functionaries(ctx, g, w, "--read-functionary", o.readers); err != nil {
		return err
	}
	if p.publishKeys, p.publishFrom, err = functionaries(ctx, g, w, "--publish-functionary", o.publishers); err != nil {
		return err
	}
	for _, ref := range o.precalcs {
		pub, err := loadFunctionary(ctx, g, ref)
		if err != nil {
			return usageErr("--precalc-functionary %s: %v", ref, err)
		}
		p.precalcKeys = append(p.precalcKeys, pub)
	}
	owner, err := keys.LoadPrivate(ctx, o.ownerKey, g.password())
	if err != nil {
		return usageErr("--owner-key: %v", err)
	}
	var tk []crypto.Signer
	for _, ref := range o.targetsKeys {
		k, err := keys.LoadPrivate(ctx, ref, g.password())
		if err != nil {
			return usageErr("--targets-key: %v", err)
		}
		tk = append(tk, k)
	}
	p.expires = time.Now().Add(o.expires).UTC().Truncate(time.Second)
	layout, err := intoto.NewLayout(owner, intoto.LayoutOptions{
		ReadFunctionaries:    p.readKeys,
		PublishFunctionaries: p.publishKeys,
		PrecalcFunctionaries: p.precalcKeys,
		Expires:              p.expires,
		Threshold:            o.threshold,
	})
	if err != nil {
		return usageErr("%v", err)
	}
	res, err := w.PublishLayout(ctx, layout, []crypto.PublicKey{owner.Public()}, tk)
	if err != nil {
		return err
	}
	if err := o.writeOut(layout, owner.Public()); err != nil {
		return err
	}
	return printLayout(g, res, p, o.threshold)
}

// writeOut writes the layout and its owner's public key to the files
// --layout-out and --owner-key-out name, for in-toto-verify.
func (o layoutOptions) writeOut(layout []byte, owner crypto.PublicKey) error {
	if o.layoutOut != "" {
		if err := os.WriteFile(o.layoutOut, layout, 0o644); err != nil {
			return fmt.Errorf("--layout-out: %w", err)
		}
	}
	if o.ownerOut != "" {
		data, err := intoto.ExportPublicKey(owner)
		if err != nil {
			return err
		}
		if err := os.WriteFile(o.ownerOut, data, 0o644); err != nil {
			return fmt.Errorf("--owner-key-out: %w", err)
		}
	}
	return nil
}

// printLayout prints the layout published: its owner, each step's
// functionaries by in-toto key ID, and the repository versions.
func printLayout(g *globals, res *repo.LayoutResult, p layoutPlan, threshold int) error {
	readIDs, err := inTotoIDs(p.readKeys)
	if err != nil {
		return err
	}
	publishIDs, err := inTotoIDs(p.publishKeys)
	if err != nil {
		return err
	}
	precalcIDs, err := inTotoIDs(p.precalcKeys)
	if err != nil {
		return err
	}
	if g.json() {
		return g.printJSON(struct {
			*repo.LayoutResult
			Expires              time.Time `json:"expires"`
			ReadFunctionaries    []string  `json:"readFunctionaries"`
			PublishFunctionaries []string  `json:"publishFunctionaries"`
			PrecalcFunctionaries []string  `json:"precalcFunctionaries,omitempty"`
			Threshold            int       `json:"threshold"`
		}{res, p.expires, readIDs, publishIDs, precalcIDs, threshold})
	}
	fmt.Fprintf(g.stdout, "layout signed by owner key %s, expires %s\n", strings.Join(res.OwnerKeyIDs, ", "), p.expires.Format(time.RFC3339))
	fmt.Fprintf(g.stdout, "  step %s: functionaries %s%s, threshold %d\n", intoto.StepReadMeasurements, strings.Join(readIDs, ", "), p.readFrom, threshold)
	fmt.Fprintf(g.stdout, "  step %s: functionaries %s%s, threshold %d\n", intoto.StepPublish, strings.Join(publishIDs, ", "), p.publishFrom, threshold)
	if len(precalcIDs) > 0 {
		fmt.Fprintf(g.stdout, "  step %s: functionaries %s, threshold %d; it and step %s must agree on every PCR it computes\n",
			intoto.StepPrecalculateMeasurements, strings.Join(precalcIDs, ", "), threshold, intoto.StepReadMeasurements)
	}
	if res.Unchanged {
		fmt.Fprintf(g.stdout, "%s is already published with this content; nothing to do\n", res.Target)
		return nil
	}
	fmt.Fprintf(g.stdout, "published %s (sha256 %s, %d bytes) in targets v%d; snapshot v%d, timestamp v%d\n",
		res.Target, res.SHA256, res.Length, res.TargetsVersion, res.SnapshotVersion, res.TimestampVersion)
	return nil
}

// functionaries loads the public keys a flag names, or, when it names
// none, those of the workspace's measurements role. from says which, for
// the output.
func functionaries(ctx context.Context, g *globals, w *repo.Workspace, flag string, refs []string) (pubs []crypto.PublicKey, from string, err error) {
	if len(refs) == 0 {
		refs = w.Config.Keys[repo.RoleMeasurements]
		if len(refs) == 0 {
			return nil, "", usageErr("%s is required: the workspace has no measurements key to default to", flag)
		}
		from = " (the workspace's measurements key)"
	}
	for _, ref := range refs {
		pub, err := loadFunctionary(ctx, g, ref)
		if err != nil {
			return nil, "", usageErr("%s %s: %v", flag, ref, err)
		}
		pubs = append(pubs, pub)
	}
	return pubs, from, nil
}

// loadFunctionary reads a functionary's public key: a PEM public key, the
// NAME.pub beside a NAME.key, an in-toto (securesystemslib JSON) public
// key, or, last, an encrypted private key file.
func loadFunctionary(ctx context.Context, g *globals, ref string) (crypto.PublicKey, error) {
	if pub, err := keys.LoadPublic(ref); err == nil {
		return pub, nil
	}
	if base, ok := strings.CutSuffix(ref, ".key"); ok {
		if pub, err := keys.LoadPublic(base + ".pub"); err == nil {
			return pub, nil
		}
	}
	data, err := os.ReadFile(ref)
	if err != nil {
		return nil, err
	}
	pub, jsonErr := intoto.ParsePublicKey(data)
	if jsonErr == nil {
		return pub, nil
	}
	priv, err := keys.LoadPrivate(ctx, ref, g.password())
	if err != nil {
		return nil, fmt.Errorf("not a public key (PEM or in-toto JSON: %v) nor a private key (%v)", jsonErr, err)
	}
	return priv.Public(), nil
}

func inTotoIDs(pubs []crypto.PublicKey) ([]string, error) {
	out := make([]string, len(pubs))
	for i, p := range pubs {
		id, err := intoto.KeyID(p)
		if err != nil {
			return nil, err
		}
		out[i] = id
	}
	return out, nil
}

// readLinks reads the --link files of a publish.
func readLinks(files []string) ([]repo.LinkFile, error) {
	var out []repo.LinkFile
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, usageErr("--link: %v", err)
		}
		out = append(out, repo.LinkFile{Source: f, Data: data})
	}
	return out, nil
}

// printSupplyChain says how the measurements of an update were traced to
// the step that read them: on standard output when the in-toto chain was
// verified, as a warning on standard error when the repository publishes
// no layout.
func printSupplyChain(g *globals, cl *client.Client) error {
	sc, err := cl.SupplyChain()
	if err != nil {
		return err
	}
	if sc == nil {
		return errors.New("the update recorded no supply chain verification")
	}
	if !sc.Verified {
		fmt.Fprintf(g.stderr, "mtuf: warning: %s\n", sc.Warning)
		return nil
	}
	if g.json() {
		return nil
	}
	steps := make([]string, len(sc.Links))
	for i, l := range sc.Links {
		steps[i] = l[strings.LastIndex(l, "/")+1:]
	}
	fmt.Fprintf(g.stdout, "in-toto supply chain verified: layout %s by owner %s, links %s\n",
		metadata.LayoutTarget, layoutShortIDs(sc.LayoutOwners), strings.Join(steps, ", "))
	return nil
}

func layoutShortIDs(ids []string) string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id[:min(8, len(id))]
	}
	return strings.Join(out, ", ")
}

// loadLinkKey unlocks the publish step's functionary key, if one is given.
func loadLinkKey(ctx context.Context, g *globals, ref string) (crypto.Signer, error) {
	if ref == "" {
		return nil, nil
	}
	k, err := keys.LoadPrivate(ctx, ref, g.password())
	if err != nil {
		return nil, usageErr("--link-key: %v", err)
	}
	return k, nil
}

// refuseWithoutLinks refuses measurements without links for a repository
// whose layout makes clients refuse them.
func refuseWithoutLinks(ctx context.Context, w *repo.Workspace) error {
	layout, err := w.Layout(ctx)
	if err != nil {
		return err
	}
	if layout != nil {
		return usageErr("the repository has an in-toto layout (%s), so clients refuse measurements without their links: "+
			"give --link FILE (the %s link that pcr-reader --link-key wrote) and --link-key K (the %s step's functionary key)",
			metadata.LayoutTarget, intoto.StepReadMeasurements, intoto.StepPublish)
	}
	return nil
}

// printLinked reports the links of a publish and what they were checked
// against.
func printLinked(g *globals, res *repo.LinkedPublishResult) {
	if res.PublishLink != "" {
		fmt.Fprintf(g.stdout, "signed the in-toto link of this publish: %s\n", res.PublishLink)
	}
	if res.LayoutVerified {
		fmt.Fprintf(g.stdout, "in-toto supply chain verified against %s before publishing (links: %s)\n", metadata.LayoutTarget, linkBaseNames(res.Links))
		return
	}
	fmt.Fprintf(g.stdout, "the repository has no in-toto layout yet: links published unverified (%s); clients verify them once 'mtuf repo layout' publishes one\n", linkBaseNames(res.Links))
}

func linkBaseNames(names []string) string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = n[strings.LastIndex(n, "/")+1:]
	}
	return strings.Join(out, ", ")
}
