// Command tuf-conformance-client runs mtuf's TUF updater under the client
// protocol of the TUF conformance suite (theupdateframework/tuf-conformance,
// CLIENT-CLI.md), so that the suite can test the code mtuf client runs:
//
//	tuf-conformance-client --metadata-dir D init ROOT
//	tuf-conformance-client --metadata-dir D --metadata-url U refresh
//	tuf-conformance-client --metadata-dir D --metadata-url U \
//	    --target-name P [--target-name P2 ...] --target-base-url T --target-dir TD download
//
// The updater is client.NewUpdater, with the fetcher and the go-tuf
// configuration that client.Client uses. Exit status 0 means the command
// succeeded fully, 1 anything else, as the protocol asks (usage errors
// included).
//
// The suite fakes the clock with libfaketime, which Go's runtime does not
// see (it reads the time with vDSO calls, not through libc). The reference
// time for expiry checks is therefore read from the `date +%s` command,
// which libfaketime does fake, as the suite's own go-tuf client does.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"github.com/theupdateframework/go-tuf/v2/metadata/updater"

	"github.com/mtuf/mtuf/client"
	"github.com/mtuf/mtuf/internal/safefile"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `usage:
  tuf-conformance-client --metadata-dir DIR init TRUSTED_ROOT
  tuf-conformance-client --metadata-dir DIR --metadata-url URL refresh
  tuf-conformance-client --metadata-dir DIR --metadata-url URL --target-name PATH \
      --target-base-url URL --target-dir DIR download

The client protocol of the TUF conformance suite (CLIENT-CLI.md of
theupdateframework/tuf-conformance), over mtuf's TUF updater. A repeated
--target-name downloads the targets in order, after one refresh, and stops at
the first that fails. The reference time is the output of 'date +%s'. Exit
status: 0 on success, 1 otherwise.
`

// maxRootBytes bounds the trusted root file given to init: go-tuf accepts
// root metadata up to 512,000 bytes.
const maxRootBytes = 512000

type options struct {
	metadataDir string
	metadataURL string
	// targetNames are downloaded in order by one updater; the first
	// that fails ends the download (the protocol repeats --target-name).
	targetNames   []string
	targetBaseURL string
	targetDir     string
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var o options
	fs := pflag.NewFlagSet("tuf-conformance-client", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.metadataDir, "metadata-dir", "", "directory of the trusted metadata")
	fs.StringVar(&o.metadataURL, "metadata-url", "", "base URL of the repository's metadata")
	fs.StringArrayVar(&o.targetNames, "target-name", nil, "target path to download (repeat for several, downloaded in order)")
	fs.StringVar(&o.targetBaseURL, "target-base-url", "", "base URL of the repository's targets")
	fs.StringVar(&o.targetDir, "target-dir", "", "directory of the downloaded targets")
	help := fs.BoolP("help", "h", false, "show this help")
	err := fs.Parse(args)
	if *help {
		io.WriteString(stdout, usage)
		return 0
	}
	if err == nil {
		err = dispatch(ctx, o, fs.Args(), stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "tuf-conformance-client: %v\n", err)
		return 1
	}
	return 0
}

func dispatch(ctx context.Context, o options, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("no command: give init, refresh or download (see --help)")
	}
	if o.metadataDir == "" {
		return errors.New("--metadata-dir DIR is required")
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "init":
		if len(rest) != 1 {
			return errors.New("init takes one argument, the trusted root metadata file")
		}
		return initialize(o, rest[0], stdout)
	case "refresh":
		if len(rest) != 0 {
			return fmt.Errorf("refresh takes no argument, not %q", rest[0])
		}
		return refresh(ctx, o, stdout)
	case "download":
		if len(rest) != 0 {
			return fmt.Errorf("download takes no argument, not %q", rest[0])
		}
		return download(ctx, o, stdout)
	default:
		return fmt.Errorf("unknown command %q: give init, refresh or download", cmd)
	}
}

// initialize trusts the given root: the protocol asks for no check and no
// request to the repository; the first refresh verifies it.
func initialize(o options, rootFile string, stdout io.Writer) error {
	root, err := readLimited(rootFile, maxRootBytes)
	if err != nil {
		return fmt.Errorf("trusted root: %w", err)
	}
	if err := os.MkdirAll(o.metadataDir, 0o700); err != nil {
		return fmt.Errorf("metadata dir: %w", err)
	}
	if err := safefile.WriteFile(filepath.Join(o.metadataDir, "root.json"), root, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trusting %s in %s\n", rootFile, o.metadataDir)
	return nil
}

func refresh(ctx context.Context, o options, stdout io.Writer) error {
	if o.metadataURL == "" {
		return errors.New("refresh needs --metadata-url URL")
	}
	// A refresh downloads no target: the metadata directory stands in for
	// the targets directory the updater requires, and stays free of
	// targets.
	up, err := newUpdater(ctx, o, "", o.metadataDir)
	if err != nil {
		return err
	}
	if err := up.Refresh(); err != nil {
		return fmt.Errorf("refresh from %s: %w", o.metadataURL, err)
	}
	fmt.Fprintf(stdout, "refreshed %s from %s\n", o.metadataDir, o.metadataURL)
	return nil
}

func download(ctx context.Context, o options, stdout io.Writer) error {
	switch {
	case o.metadataURL == "":
		return errors.New("download needs --metadata-url URL")
	case len(o.targetNames) == 0:
		return errors.New("download needs --target-name PATH")
	case o.targetBaseURL == "":
		return errors.New("download needs --target-base-url URL")
	case o.targetDir == "":
		return errors.New("download needs --target-dir DIR")
	}
	up, err := newUpdater(ctx, o, o.targetBaseURL, o.targetDir)
	if err != nil {
		return err
	}
	// The protocol asks for up-to-date metadata before any download.
	if err := up.Refresh(); err != nil {
		return fmt.Errorf("refresh from %s: %w", o.metadataURL, err)
	}
	for _, name := range o.targetNames {
		if err := downloadOne(up, name, stdout); err != nil {
			return err
		}
	}
	return nil
}

// downloadOne looks one target up with the refreshed updater, verifying
// every delegated role on its own delegation path, and fetches it or finds
// it already verified in the target directory.
func downloadOne(up *updater.Updater, name string, stdout io.Writer) error {
	ti, err := client.LookupTarget(up, name)
	if err != nil {
		return fmt.Errorf("target %q: %w", name, err)
	}
	if path, _, err := up.FindCachedTarget(ti, ""); err == nil && path != "" {
		fmt.Fprintf(stdout, "%s is up to date in %s\n", name, path)
		return nil
	}
	path, _, err := up.DownloadTarget(ti, "", "")
	if err != nil {
		return fmt.Errorf("download %q: %w", name, err)
	}
	fmt.Fprintf(stdout, "downloaded %s to %s\n", name, path)
	return nil
}

// newUpdater builds the updater mtuf client uses, from the trusted root in
// the metadata directory, at the reference time `date +%s` gives.
func newUpdater(ctx context.Context, o options, targetsURL, targetsDir string) (*updater.Updater, error) {
	root, err := readLimited(filepath.Join(o.metadataDir, "root.json"), maxRootBytes)
	if err != nil {
		return nil, fmt.Errorf("trusted root (run init first): %w", err)
	}
	now, err := referenceTime(ctx)
	if err != nil {
		return nil, err
	}
	return client.NewUpdater(ctx, client.UpdaterConfig{
		MetadataURL: o.metadataURL,
		TargetsURL:  targetsURL,
		MetadataDir: o.metadataDir,
		TargetsDir:  targetsDir,
		Root:        root,
		Now:         now,
	})
}

// referenceTime runs `date +%s`: under libfaketime it prints the faked
// time, which Go's own clock would not.
func referenceTime(ctx context.Context) (time.Time, error) {
	out, err := exec.CommandContext(ctx, "date", "+%s").Output()
	if err != nil {
		return time.Time{}, fmt.Errorf("reference time from 'date +%%s': %w", err)
	}
	secs, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("reference time: 'date +%%s' printed %q, not seconds since the epoch", strings.TrimSpace(string(out)))
	}
	return time.Unix(secs, 0).UTC(), nil
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, limit)
	}
	return data, nil
}
