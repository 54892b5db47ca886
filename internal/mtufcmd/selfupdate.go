package mtufcmd

import (
	"context"
	"errors"
	"fmt"
	"os"

	"golang.org/x/term"

	"github.com/mtuf/mtuf/client"
)

// Version is the running release, set at build time with
// -ldflags "-X github.com/mtuf/mtuf/internal/mtufcmd.Version=v1.2.3".
// A development build does not update itself.
var Version = "dev"

func runSelfUpdate(ctx context.Context, g *globals, stateDir func() (string, error)) error {
	cl, err := openClient(stateDir)
	if err != nil {
		return err
	}
	opts := client.SelfUpdateOptions{Running: Version}
	// A progress line on a terminal, nothing on a pipe.
	if f, ok := g.stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		opts.Progress = func(done, total int64) {
			fmt.Fprintf(f, "\rdownloading: %3d%% of %d MB", done*100/max(total, 1), total>>20)
			if done == total {
				fmt.Fprintln(f)
			}
		}
	}
	rel, err := cl.SelfUpdate(ctx, opts)
	if errors.Is(err, client.ErrNotNewer) {
		fmt.Fprintf(g.stdout, "mtuf %s is up to date (%v)\n", Version, err)
		return nil
	}
	if err != nil {
		return err
	}
	if g.json() {
		return g.printJSON(rel)
	}
	fmt.Fprintf(g.stdout, "updated mtuf from %s to %s (the previous binary is kept as .old)\n", Version, rel.Version)
	return nil
}
