package mtufcmd

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/repo"
)

// parseRoleArg splits ROLE:VALUE; without a role, the default applies.
func parseRoleArg(s, def string) (role, value string) {
	if i := strings.Index(s, ":"); i > 0 && !strings.HasPrefix(s, "pkcs11:") && !strings.HasPrefix(s, "awskms://") {
		return s[:i], s[i+1:]
	}
	return def, s
}

type stageOptions struct {
	ws                  string
	add, remove, thresh []string
	expires             time.Duration
	log                 logFlags
	changed             func(string) bool
}

func newRepoStageCmd(g *globals) *cobra.Command {
	var o stageOptions
	c := &cobra.Command{
		Use:   "stage root|targets|measurements|releases --workspace DIR [--add-key [ROLE:]FILE] [--remove-key [ROLE:]KEY] [--threshold [ROLE:]N] [--expires D]",
		Short: "Propose the next version of a role's metadata, for offline signing",
		Long: `Write the next version of a role's metadata, unsigned, to the workspace's
staged/ directory: keys added or removed, a threshold changed, a new expiry,
or just the same content re-signed before it expires.

A staged root changes the keys of root, targets, snapshot and timestamp
(ROLE: defaults to root); a staged targets changes the keys of the
delegated roles measurements and releases (ROLE: is required). A key to
add is a public key file; for an online role (snapshot, timestamp,
measurements, releases) give the private key file the workspace will sign
with. A key to remove is a key file or a key id (8 characters or more).

Carry the staged file to each key holder, sign it with 'mtuf repo sign',
and publish it with 'mtuf repo commit' once every threshold is met: for a
new root, both the current root's and the new root's.`,
		Example: `  # replace root key 1 by root key 4, keeping a 2-of-3 threshold
  mtuf repo stage root --workspace ws --add-key root-4.pub --remove-key root-1.pub
  # rotate the CI key of the measurements role
  mtuf repo stage targets --workspace ws --add-key measurements:ci-2.key --remove-key measurements:ci-1.pub
  # re-sign targets before it expires
  mtuf repo stage targets --workspace ws --expires 2160h`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.changed = cmd.Flags().Changed
			return runRepoStage(cmd.Context(), g, args[0], o)
		},
	}
	addLogFlags(c.Flags(), &o.log)
	c.Flags().StringVar(&o.ws, "workspace", "", "workspace `DIR`")
	c.Flags().StringArrayVar(&o.add, "add-key", nil, "add a key: [ROLE:]FILE")
	c.Flags().StringArrayVar(&o.remove, "remove-key", nil, "remove a key: [ROLE:]FILE or key id")
	c.Flags().StringArrayVar(&o.thresh, "threshold", nil, "set a threshold: [ROLE:]N")
	c.Flags().DurationVar(&o.expires, "expires", 0, "validity of the new version (default: the role's period)")
	addOutputFlag(c, g)
	return c
}

// request turns the flags into the key changes of each role, in the order
// the roles are first named, before the workspace is opened. Staging root
// changes root's keys unless a flag names another role; staging targets
// changes the delegated roles' keys, so every flag must name one.
func (o stageOptions) request(role string) (repo.StageRequest, error) {
	def := ""
	if role == "root" {
		def = "root"
	}
	changes := map[string]*repo.KeyChange{}
	var order []string
	get := func(r string) (*repo.KeyChange, error) {
		if r == "" {
			return nil, usageErr("say whose key: --add-key measurements:FILE (staging %s changes the keys of the roles it delegates to)", role)
		}
		if changes[r] == nil {
			changes[r] = &repo.KeyChange{Role: r}
			order = append(order, r)
		}
		return changes[r], nil
	}
	for _, a := range o.add {
		r, v := parseRoleArg(a, def)
		ch, err := get(r)
		if err != nil {
			return repo.StageRequest{}, err
		}
		ch.Add = append(ch.Add, v)
	}
	for _, a := range o.remove {
		r, v := parseRoleArg(a, def)
		ch, err := get(r)
		if err != nil {
			return repo.StageRequest{}, err
		}
		ch.Remove = append(ch.Remove, v)
	}
	for _, a := range o.thresh {
		r, v := parseRoleArg(a, def)
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return repo.StageRequest{}, usageErr("--threshold %q: want [ROLE:]N with N at least 1", a)
		}
		ch, err := get(r)
		if err != nil {
			return repo.StageRequest{}, err
		}
		ch.Threshold = n
	}
	req := repo.StageRequest{Role: role, Expires: o.expires}
	if o.changed != nil {
		ls, err := o.log.settings(o.changed)
		if err != nil {
			return repo.StageRequest{}, err
		}
		if ls != nil && role != "root" {
			return repo.StageRequest{}, usageErr("the transparency log is declared in root: stage root to change it")
		}
		req.Log = ls
	}
	for _, r := range order {
		req.Changes = append(req.Changes, *changes[r])
	}
	return req, nil
}

func runRepoStage(ctx context.Context, g *globals, role string, o stageOptions) error {
	req, err := o.request(role)
	if err != nil {
		return err
	}
	w, err := openWorkspace(g, o.ws)
	if err != nil {
		return err
	}
	p, err := w.Stage(ctx, req)
	if err != nil {
		return err
	}
	st, err := repo.ReadStaged(p)
	if err != nil {
		return err
	}
	if g.json() {
		return g.printJSON(map[string]any{"staged": p, "role": role, "version": st.Version(), "progress": st.Progress()})
	}
	fmt.Fprintf(g.stdout, "staged %s v%d in %s\n", role, st.Version(), p)
	printProgress(g, st)
	fmt.Fprintf(g.stdout, "sign it with: mtuf repo sign %s --key KEY\n", p)
	return nil
}

func printProgress(g *globals, st *repo.Staged) {
	for _, p := range st.Progress() {
		state := "needs more signatures"
		if p.Met {
			state = "threshold met"
		}
		fmt.Fprintf(g.stdout, "  %s: %d of %d signed, %s; signed by: %s; may still sign: %s\n", p.Authority, len(p.SignedBy), p.Threshold, state, shortIDs(p.SignedBy), shortIDs(p.MaySign))
	}
}

func shortIDs(ids []string) string {
	if len(ids) == 0 {
		return "-"
	}
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id[:min(8, len(id))]
	}
	return strings.Join(out, " ")
}

func newRepoSignCmd(g *globals) *cobra.Command {
	var key string
	c := &cobra.Command{
		Use:   "sign FILE --key KEY",
		Short: "Add one signature to a staged file (works offline, with just the file and the key)",
		Long: `Sign a staged file with one key and write it back. Nothing but the file and
the key is needed, so it runs on an offline machine or with a hardware key
(--key pkcs11:token=...;object=...). A key that may not sign the staged
version, or a file changed since an earlier signature, is refused.`,
		Example: `  mtuf repo sign root.json --key /media/usb/root-2.key
  mtuf repo sign root.json --key 'pkcs11:token=root;object=root-3'`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return usageErr("--key KEY is required")
			}
			st, id, err := repo.Sign(cmd.Context(), args[0], key, keys.Files{Password: g.password()})
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(map[string]any{"file": args[0], "signedBy": id, "progress": st.Progress()})
			}
			fmt.Fprintf(g.stdout, "signed %s v%d with key %s\n", st.Role, st.Version(), id[:8])
			printProgress(g, st)
			return nil
		},
	}
	c.Flags().StringVar(&key, "key", "", "private key `FILE` or pkcs11: URI")
	addOutputFlag(c, g)
	return c
}

func newRepoCommitCmd(g *globals) *cobra.Command {
	var ws string
	c := &cobra.Command{
		Use:   "commit --workspace DIR",
		Short: "Publish the staged metadata once every threshold is met",
		Long: `Publish every staged file of the workspace, then re-sign snapshot and
timestamp. Each signature is checked against the repository's trusted
metadata; until every threshold is met nothing is published and the
message names who has signed and who may still sign.`,
		Example: `  mtuf repo commit --workspace ws`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := openWorkspace(g, ws)
			if err != nil {
				return err
			}
			res, err := w.Commit(cmd.Context())
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.stdout, "committed %s; snapshot v%d, timestamp v%d\n", strings.Join(res.Committed, ", "), res.SnapshotVersion, res.TimestampVersion)
			return nil
		},
	}
	c.Flags().StringVar(&ws, "workspace", "", "workspace `DIR`")
	addOutputFlag(c, g)
	return c
}

// printStaged lists a workspace's staged files in 'repo status'.
func printStaged(g *globals, w *repo.Workspace) error {
	staged, err := w.Staged()
	if err != nil {
		return err
	}
	for role, st := range staged {
		fmt.Fprintf(g.stdout, "\nstaged %s v%d (%s)\n", role, st.Version(), filepath.Join(w.Dir, repo.StagedDir, role+".json"))
		printProgress(g, st)
	}
	return nil
}
