package mtufcmd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/internal/safefile"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/repo"
	"github.com/mtuf/mtuf/translog"
)

// logFlags declare a transparency log in a new or staged root.
type logFlags struct {
	origin, key string
	witnesses   []string
	quorum      int
}

func addLogFlags(f *pflag.FlagSet, o *logFlags) {
	f.StringVar(&o.key, "log-key", "", "declare a transparency log signed with this ed25519 key `FILE` (the workspace signs checkpoints with it)")
	f.StringVar(&o.origin, "log-origin", "", "the log's `NAME`, as checkpoints carry it (e.g. example.com/mtuf)")
	f.StringArrayVar(&o.witnesses, "witness", nil, "a witness that must cosign checkpoints: `VKEY@URL` (its verifier key, @, its URL; repeat)")
	f.IntVar(&o.quorum, "witness-quorum", 0, "how many witnesses must cosign a checkpoint (default: all given)")
}

// settings returns the log the flags declare, or nil when none is given.
func (o logFlags) settings(changed func(string) bool) (*repo.LogSettings, error) {
	if o.key == "" {
		if o.origin != "" || len(o.witnesses) > 0 || changed("witness-quorum") {
			return nil, usageErr("--log-origin, --witness and --witness-quorum need --log-key FILE")
		}
		return nil, nil
	}
	if o.origin == "" {
		return nil, usageErr("--log-key needs --log-origin NAME, the log's name in its checkpoints")
	}
	ls := &repo.LogSettings{Origin: o.origin, Key: o.key, Quorum: o.quorum}
	for _, w := range o.witnesses {
		wit, err := repo.ParseWitness(w)
		if err != nil {
			return nil, usageErr("--witness: %v", err)
		}
		ls.Witnesses = append(ls.Witnesses, wit)
	}
	if !changed("witness-quorum") {
		ls.Quorum = len(ls.Witnesses)
	}
	return ls, nil
}

func newWitnessCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "witness",
		Short: "Run a witness that cosigns repositories' transparency log checkpoints",
		Long: `A witness (C2SP tlog-witness) cosigns a log's checkpoint only when it is
signed by the log's key and consistent with the last checkpoint it
cosigned for that log, which it keeps on disk. A repository whose root
names witnesses gets their cosignatures at every publish, and clients
accept only checkpoints that a quorum of them cosigned: a log can then no
longer show different histories to different clients.`,
		Example: `  mtuf witness keygen --name witness.example.org --out witness.skey
  mtuf witness serve --key witness.skey --log "$(cat log.vkey)" --state /var/lib/mtuf-witness --addr :7380`,
	}
	c.AddCommand(newWitnessKeygenCmd(g), newWitnessServeCmd(g), newWitnessVKeyCmd(g))
	return c
}

func newWitnessKeygenCmd(g *globals) *cobra.Command {
	var name, out string
	c := &cobra.Command{
		Use:   "keygen --name NAME --out FILE",
		Short: "Generate a witness key: FILE (private, mode 0600) and FILE.vkey",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" || out == "" {
				return usageErr("--name NAME and --out FILE are required")
			}
			skey, vkey, err := note.GenerateKey(rand.Reader, name)
			if err != nil {
				return usageErr("witness name %q: %v", name, err)
			}
			if err := safefile.Create(out, []byte(skey+"\n"), 0o600); err != nil {
				return fmt.Errorf("write %s: %w (remove it first to replace the key)", out, err)
			}
			if err := safefile.Create(out+".vkey", []byte(vkey+"\n"), 0o644); err != nil {
				return fmt.Errorf("write %s.vkey: %w", out, err)
			}
			if g.json() {
				return g.printJSON(map[string]string{"name": name, "key": out, "vkey": vkey})
			}
			fmt.Fprintf(g.stdout, "%s\n", vkey)
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "the witness's `NAME` (its cosignatures carry it)")
	c.Flags().StringVar(&out, "out", "", "private key `FILE` to create; the verifier key goes to FILE.vkey")
	addOutputFlag(c, g)
	return c
}

func newWitnessServeCmd(g *globals) *cobra.Command {
	var key, state, addr, readyFile string
	var logs, roots []string
	c := &cobra.Command{
		Use:   "serve --key FILE --state DIR (--log VKEY | --root root.json)... [--addr HOST:PORT]",
		Short: "Serve the tlog-witness protocol (POST /add-checkpoint)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" || state == "" {
				return usageErr("--key FILE and --state DIR are required")
			}
			skey, err := os.ReadFile(key)
			if err != nil {
				return usageErr("witness key: %v", err)
			}
			signer, err := fnote.NewSignerForCosignatureV1(strings.TrimSpace(string(skey)))
			if err != nil {
				return usageErr("witness key %s is not a note signer key (make one with 'mtuf witness keygen'): %v", key, err)
			}
			ws := &translog.WitnessServer{Signer: signer, Logs: map[string]note.Verifier{}, Dir: state}
			for _, r := range roots {
				vkey, err := rootLogKey(r)
				if err != nil {
					return usageErr("--root %s: %v", r, err)
				}
				logs = append(logs, vkey)
			}
			if len(logs) == 0 {
				return usageErr("name at least one log to witness: --log VKEY or --root root.json")
			}
			for _, l := range logs {
				v, err := note.NewVerifier(l)
				if err != nil {
					return usageErr("--log %q is not a note verifier key: %v", l, err)
				}
				ws.Logs[v.Name()] = v
			}
			return serveHTTP(cmd.Context(), ws, addr, readyFile, func(bound string) {
				fmt.Fprintf(g.stdout, "witness %s on http://%s\n", signer.Name(), bound)
			})
		},
	}
	c.Flags().StringVar(&key, "key", "", "the witness's private key `FILE` ('mtuf witness keygen')")
	c.Flags().StringVar(&state, "state", "", "`DIR` keeping the last checkpoint cosigned for each log")
	c.Flags().StringArrayVar(&logs, "log", nil, "a log to witness: its verifier key `VKEY` (repeat)")
	c.Flags().StringArrayVar(&roots, "root", nil, "witness the log that this root.json `FILE` declares (repeat)")
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:7380", "listen `ADDRESS`")
	c.Flags().StringVar(&readyFile, "ready-file", "", "write the bound address to `FILE` once listening")
	return c
}

// rootLogKey returns the log key a root.json file declares.
func rootLogKey(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var root struct {
		Signed map[string]json.RawMessage `json:"signed"`
	}
	if err := json.Unmarshal(data, &root); err != nil {
		return "", fmt.Errorf("not root metadata: %w", err)
	}
	raw, ok := root.Signed[translog.RootField]
	if !ok {
		return "", errors.New("this root declares no transparency log")
	}
	var cfg translog.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return "", err
	}
	return cfg.Key, nil
}

func newClientAuditCmd(g *globals, stateDir func() (string, error)) *cobra.Command {
	var follow bool
	c := &cobra.Command{
		Use:   "audit [--follow] [--output text|json]",
		Short: "Replay the repository's transparency log and list every measurement ever published",
		Long: `Replay the transparency log that the trusted root declares, from its tiles:
each entry is checked against the metadata it names (fetched by version,
as consistent snapshots keep every version), each file's signatures
against the keys its role had at the time, and every measurements
document ever published is listed with the log entry that published it.

With --follow, the audit starts where the last followed audit stopped,
refuses a log that does not extend what it saw then, and reports only the
new entries: run it from cron. Exits 1 when it finds a problem.`,
		Example: `  mtuf client audit --output json
  mtuf client audit --follow`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := openClient(stateDir)
			if err != nil {
				return err
			}
			rep, err := cl.Audit(cmd.Context(), follow)
			if err != nil {
				return err
			}
			if g.json() {
				if err := g.printJSON(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(g.stdout, "log %s: entries %d to %d replayed\n", rep.Origin, rep.From, rep.Size)
				tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "IMAGE\tPLATFORM\tSHA256\tSNAPSHOT\tLOG INDEX")
				for _, m := range rep.Measurements {
					fmt.Fprintf(tw, "%s\t%s\t%s\tv%d\t%d\n", m.Image, m.Platform, m.SHA256, m.Snapshot, m.LogIndex)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				for _, p := range rep.Problems {
					fmt.Fprintf(g.stdout, "PROBLEM at log index %d: %s: %s\n", p.LogIndex, p.File, p.Problem)
				}
			}
			if len(rep.Problems) > 0 {
				return fmt.Errorf("%w: %d problem(s) in the log of %s", client.ErrAuditFindings, len(rep.Problems), rep.Origin)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&follow, "follow", false, "start where the last --follow audit stopped and record where this one stops")
	addOutputFlag(c, g)
	return c
}

func newWitnessVKeyCmd(g *globals) *cobra.Command {
	var key, origin string
	c := &cobra.Command{
		Use:   "log-vkey --log-key FILE --log-origin NAME",
		Short: "Print the verifier key of a log, which its witnesses are started with",
		Long: `Print the note verifier key of a transparency log: its origin and the
public half of its ed25519 log key. Witnesses need it before the
repository's first checkpoint, which 'mtuf repo init' has them cosign.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" || origin == "" {
				return usageErr("--log-key FILE and --log-origin NAME are required")
			}
			pub, err := keys.LoadPublic(key)
			if err != nil {
				return usageErr("log key: %v", err)
			}
			ed, ok := pub.(ed25519.PublicKey)
			if !ok {
				return usageErr("log key %s is a %T; a log key must be ed25519", key, pub)
			}
			vkey, err := note.NewEd25519VerifierKey(origin, ed)
			if err != nil {
				return usageErr("log origin %q: %v", origin, err)
			}
			fmt.Fprintln(g.stdout, vkey)
			return nil
		},
	}
	c.Flags().StringVar(&key, "log-key", "", "the log's public key `FILE` (.pub)")
	c.Flags().StringVar(&origin, "log-origin", "", "the log's `NAME`")
	return c
}
