package mtufcmd

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/repo"
)

func newRepoMirrorCmd(g *globals) *cobra.Command {
	var from, to, rootFile string
	c := &cobra.Command{
		Use:   "mirror --from URL --to STORAGE --root FILE",
		Short: "Copy a repository, verified as a client would, for air-gapped sites and CDN origins",
		Long: `Copy the repository at --from to the storage --to, verifying it first as a
client would, from the trusted root --root: the root chain, timestamp,
snapshot, targets, every delegated role and hash bin, and every target file
against its signed length and hashes. Nothing is written unless all of it
verifies. Then only what the destination lacks is copied, target files
first and timestamp.json last, so the destination's clients see its old
state or the new one, never a mix. Run it again at any time: a destination
that is up to date gets nothing, and one newer than the source is refused,
not rolled back.

--from is an http(s):// URL, a file:// URL or directory, or an
s3://BUCKET/PREFIX?endpoint=URL&region=R&path-style=true URL; --to is a
directory (file://DIR) or s3://BUCKET/PREFIX. S3 credentials come from the
standard AWS chain.`,
		Example: `  # an air-gapped copy of the public repository
  mtuf repo mirror --from https://example.com/repo --to file:///srv/mtuf --root 1.root.json
  # fill a CDN origin bucket
  mtuf repo mirror --from https://example.com/repo --to s3://cdn-origin/mtuf?region=eu-west-1 --root 1.root.json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" || to == "" || rootFile == "" {
				return usageErr("--from URL, --to STORAGE and --root FILE are required")
			}
			root, err := os.ReadFile(rootFile)
			if err != nil {
				return usageErr("--root: %v", err)
			}
			dst, err := repo.OpenStorage(cmd.Context(), to)
			if err != nil {
				return usageErr("--to: %v", err)
			}
			res, err := repo.Mirror(cmd.Context(), from, dst, repo.MirrorOptions{Root: root})
			if err != nil {
				return err
			}
			if g.json() {
				return g.printJSON(res)
			}
			fmt.Fprintf(g.stdout, "verified %s: timestamp v%d, snapshot v%d, %d roles and bins, %d target files\n",
				from, res.TimestampVersion, res.SnapshotVersion, res.Roles, res.Targets)
			if res.MetadataCopied == 0 && res.TargetsCopied == 0 {
				fmt.Fprintf(g.stdout, "nothing to copy: %s is up to date\n", to)
				return nil
			}
			fmt.Fprintf(g.stdout, "copied %d target files and %d metadata files (%d bytes) to %s; %d were already there\n",
				res.TargetsCopied, res.MetadataCopied, res.BytesCopied, to, res.Present)
			return nil
		},
	}
	c.Flags().StringVar(&from, "from", "", "repository to copy: `URL` (https://, s3://, file://) or directory")
	c.Flags().StringVar(&to, "to", "", "destination `STORAGE`: file://DIR, a directory, or s3://BUCKET/PREFIX")
	c.Flags().StringVar(&rootFile, "root", "", "trusted root metadata `FILE` to verify the source from")
	addOutputFlag(c, g)
	return c
}
