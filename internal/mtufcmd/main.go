// Package mtufcmd is the mtuf command line: the keys, repo and client
// command groups. cmd/mtuf is a thin main around Main.
package mtufcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/keys"
)

// usageErr is a usage error: the command could not run as asked.
func usageErr(format string, args ...any) error { return cli.Usagef(format, args...) }

// globals are the flags every command shares.
type globals struct {
	passwordFile string
	output       string
	stdout       io.Writer
	stderr       io.Writer
}

func (g *globals) password() keys.PasswordSource {
	return keys.PasswordSource{File: g.passwordFile, Prompt: g.stderr}
}

func (g *globals) json() bool { return g.output == "json" }

func (g *globals) printJSON(v any) error {
	enc := json.NewEncoder(g.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// Main runs the mtuf command with os.Args and returns the exit status.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Log out of any hardware token a command opened.
	defer keys.ClosePKCS11()
	return Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

// Run runs the mtuf command with args.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	g := &globals{stdout: stdout, stderr: stderr}
	root := newRoot(g)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	code, silent := cli.Code(err)
	if err == nil || silent {
		return code
	}
	fmt.Fprintf(stderr, "mtuf: %v\n", err)
	if code == cli.ExitFailed && (isFlagError(err) || strings.HasPrefix(err.Error(), "unknown command")) {
		return cli.ExitUsage
	}
	return code
}

// flagErrors are the errors cobra returns for a command line it cannot
// parse; they are usage errors.
type flagError struct{ error }

func isFlagError(err error) bool {
	var fe flagError
	return errors.As(err, &fe)
}

func newRoot(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "mtuf",
		Short: "Trusted TPM measurements and releases through TUF, with in-toto provenance",
		Long: `mtuf publishes TPM measurements and release binaries as TUF targets, and
verifies cluster nodes' TPM attestations against measurements it fetched
through TUF.`,
		Example: `  # maintainers: create keys and a repository, publish measurements
  mtuf keys generate --type ed25519 --out root   # and targets, ci, online
  mtuf repo init --workspace ws --storage file://$PWD/repo --root-key root.key \
      --targets-key targets.key --measurements-key ci.key \
      --snapshot-key online.key --timestamp-key online.key
  mtuf repo publish --workspace ws --measurements m.json --image v1.0.0 --platform qemu-vtpm

  # users: trust the repository once, then update and verify
  mtuf client init --repo https://example.com/repo --root 1.root.json
  mtuf client update --image v1.0.0 --platform qemu-vtpm
  mtuf client verify --node 10.0.0.5:8733 --trusted-ak node1-ak.pem`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       Version,
	}
	root.PersistentFlags().StringVar(&g.passwordFile, "password-file", "", "read key passwords from `FILE` (else $MTUF_PASSWORD, else a prompt)")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return flagError{fmt.Errorf("%w (see '%s --help')", err, c.CommandPath())}
	})
	root.AddCommand(newKeysCmd(g), newRepoCmd(g), newClientCmd(g), newWitnessCmd(g))
	registerCompletions(root)
	return root
}

// addOutputFlag adds --output to a command that reports something.
func addOutputFlag(c *cobra.Command, g *globals) {
	c.Flags().StringVarP(&g.output, "output", "o", "text", "output format: text or json")
	prev := c.PreRunE
	c.PreRunE = func(cmd *cobra.Command, args []string) error {
		if g.output != "text" && g.output != "json" {
			return usageErr("--output must be text or json, not %q", g.output)
		}
		if prev != nil {
			return prev(cmd, args)
		}
		return nil
	}
}

// exactArgs is cobra.ExactArgs with a usage exit status.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := cobra.ExactArgs(n)(cmd, args); err != nil {
			return usageErr("%v (see '%s --help')", err, cmd.CommandPath())
		}
		return nil
	}
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageErr("unexpected argument %q (see '%s --help')", args[0], cmd.CommandPath())
	}
	return nil
}
