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

func newRepoLayoutCmd(g *globals) *cobra.Command {
	var (
		ws, ownerKey, layoutOut, ownerOut string
		targetsKeys, readers, publishers  []string
		expires                           time.Duration
		threshold                         int
	)
	c := &cobra.Command{
		Use:   "layout --workspace DIR --owner-key K --targets-key T [--read-functionary PUB ...] [--publish-functionary PUB ...]",
		Short: "Sign the in-toto layout of the measurements and publish it as supplychain/root.layout",
		Long: `Create the in-toto layout of the measurements supply chain, sign it with the
layout owner's key, and publish it as the target supplychain/root.layout of
the top-level targets role. From then on clients verify, before they trust
any measurements, that step read-measurements (pcr-reader --link-key)
produced measurements.json and that step publish (mtuf repo publish
--link-key) published it unchanged, each signed by one of the step's
functionaries.

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
      --layout-out root.layout --owner-key-out owner.intoto.pub`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if ownerKey == "" {
				return usageErr("--owner-key K is required: the layout owner's key signs the layout")
			}
			if len(targetsKeys) == 0 {
				return usageErr("--targets-key T is required: the layout is a target of the top-level targets role, signed with its offline key(s)")
			}
			if expires <= 0 {
				return usageErr("--expires must be positive, not %s", expires)
			}
			if threshold < 1 {
				return usageErr("--threshold must be at least 1, not %d", threshold)
			}
			w, err := openWorkspace(g, ws)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			readKeys, readFrom, err := functionaries(ctx, g, w, "--read-functionary", readers)
			if err != nil {
				return err
			}
			publishKeys, publishFrom, err := functionaries(ctx, g, w, "--publish-functionary", publishers)
			if err != nil {
				return err
			}
			owner, err := keys.LoadPrivate(ctx, ownerKey, g.password())
			if err != nil {
				return usageErr("--owner-key: %v", err)
			}
			var tk []crypto.Signer
			for _, ref := range targetsKeys {
				k, err := keys.LoadPrivate(ctx, ref, g.password())
				if err != nil {
					return usageErr("--targets-key: %v", err)
				}
				tk = append(tk, k)
			}
			exp := time.Now().Add(expires).UTC().Truncate(time.Second)
			layout, err := intoto.NewLayout(owner, intoto.LayoutOptions{
				ReadFunctionaries:    readKeys,
				PublishFunctionaries: publishKeys,
				Expires:              exp,
				Threshold:            threshold,
			})
			if err != nil {
				return usageErr("%v", err)
			}
			res, err := w.PublishLayout(ctx, layout, []crypto.PublicKey{owner.Public()}, tk)
			if err != nil {
				return err
			}
			if layoutOut != "" {
				if err := os.WriteFile(layoutOut, layout, 0o644); err != nil {
					return fmt.Errorf("--layout-out: %w", err)
				}
			}
			if ownerOut != "" {
				data, err := intoto.ExportPublicKey(owner.Public())
				if err != nil {
					return err
				}
				if err := os.WriteFile(ownerOut, data, 0o644); err != nil {
					return fmt.Errorf("--owner-key-out: %w", err)
				}
			}
			readIDs, err := inTotoIDs(readKeys)
			if err != nil {
				return err
			}
			publishIDs, err := inTotoIDs(publishKeys)
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(struct {
					*repo.LayoutResult
					Expires              time.Time `json:"expires"`
					ReadFunctionaries    []string  `json:"readFunctionaries"`
					PublishFunctionaries []string  `json:"publishFunctionaries"`
					Threshold            int       `json:"threshold"`
				}{res, exp, readIDs, publishIDs, threshold})
			}
			fmt.Fprintf(g.stdout, "layout signed by owner key %s, expires %s\n", strings.Join(res.OwnerKeyIDs, ", "), exp.Format(time.RFC3339))
			fmt.Fprintf(g.stdout, "  step %s: functionaries %s%s, threshold %d\n", intoto.StepReadMeasurements, strings.Join(readIDs, ", "), readFrom, threshold)
			fmt.Fprintf(g.stdout, "  step %s: functionaries %s%s, threshold %d\n", intoto.StepPublish, strings.Join(publishIDs, ", "), publishFrom, threshold)
			if res.Unchanged {
				fmt.Fprintf(g.stdout, "%s is already published with this content; nothing to do\n", res.Target)
				return nil
			}
			fmt.Fprintf(g.stdout, "published %s (sha256 %s, %d bytes) in targets v%d; snapshot v%d, timestamp v%d\n",
				res.Target, res.SHA256, res.Length, res.TargetsVersion, res.SnapshotVersion, res.TimestampVersion)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&ws, "workspace", "", "workspace `DIR`")
	f.StringVar(&ownerKey, "owner-key", "", "layout owner's private key `FILE`: signs the layout")
	f.StringArrayVar(&targetsKeys, "targets-key", nil, "top-level targets private key `FILE` (repeat up to its threshold)")
	f.StringArrayVar(&readers, "read-functionary", nil, "public key `FILE` of a functionary of step read-measurements (repeat for several)")
	f.StringArrayVar(&publishers, "publish-functionary", nil, "public key `FILE` of a functionary of step publish (repeat for several)")
	f.IntVar(&threshold, "threshold", 1, "links by distinct functionaries each step needs")
	f.DurationVar(&expires, "expires", defaultLayoutExpiry, "how long the layout is valid")
	f.StringVar(&layoutOut, "layout-out", "", "also write the signed layout to `FILE`")
	f.StringVar(&ownerOut, "owner-key-out", "", "write the owner's public key for in-toto-verify to `FILE`")
	addOutputFlag(c, g)
	return c
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
