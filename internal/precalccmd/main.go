// Package precalccmd is the pcr-precalc command: it computes from a boot
// image (a UKI, an ESP or a disk image) the PCRs that its measured boot
// will hold, applies the platform's profile, and writes a measurements
// document, with the in-toto link of its run (step
// precalculate-measurements) when given a functionary key. It is the second
// functionary beside pcr-reader, which reads a booted node.
package precalccmd

import (
	"context"
	"crypto"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/measurementsfile"
	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
	"github.com/mtuf/mtuf/precalc"
)

// secureBootDisabled is the --secure-boot state whose PCR 7 is modelled.
const secureBootDisabled = "disabled"

// Main runs pcr-precalc with os.Args and returns the exit status (see
// package cli): 0 on success, 1 when the image could not be read, 2 for a
// bad command line.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newCommand(os.Stdout, os.Stderr)
	cmd.SetArgs(os.Args[1:])
	err := cmd.ExecuteContext(ctx)
	code, silent := cli.Code(err)
	if err != nil && !silent {
		fmt.Fprintf(os.Stderr, "pcr-precalc: %v\n", err)
	}
	return code
}

type options struct {
	image, version, platform, bank, out string
	linkKey, linkDir, passwordFile      string
	secureBoot                          string
}

func newCommand(stdout, stderr io.Writer) *cobra.Command {
	var o options
	c := &cobra.Command{
		Use:   "pcr-precalc --image PATH --image-version V [--platform P] [-o FILE]",
		Short: "Compute the PCRs a boot image will measure and write a measurements document",
		Long: `pcr-precalc reads a boot image and computes the PCR values that UEFI
firmware, systemd-stub and the Linux EFI stub will measure when they boot it,
without booting it: PCR 4 (the Authenticode hashes of the UKI and of its
kernel), PCR 9 (the kernel's load options and initrd), PCR 11 (the UKI's
sections) and PCR 12 (zero: the UKI's own command line is used); with
--secure-boot disabled, also PCR 7 for firmware without Secure Boot keys.
PCRs that
the firmware alone decides are left to the platform's profile, which also
says which of these PCRs are enforced.

The image is a unified kernel image (a PE file), an EFI System Partition (a
FAT file system image or a directory) or a raw disk image whose GPT holds an
ESP; the last two boot EFI/BOOT/BOOTX64.EFI. The same image always gives the
same document, byte for byte.

With --link-key, it also records the in-toto link of its run, signed with
that functionary key: step precalculate-measurements, with the image as its
material and the document as its product measurements.json, written as
precalculate-measurements.<keyid>.link next to --out or in --link-dir. The
key's password comes from MTUF_PASSWORD, --password-file or a prompt.

Platforms: ` + strings.Join(metadata.Platforms(), ", "),
		Example: `  pcr-precalc --image uki.efi --image-version v1.0.0 -o measurements.json
  pcr-precalc --image disk.raw --image-version v1.0.0 --bank sha384 -o measurements.json \
      --link-key precalc.key`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cli.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return run(cmd.Context(), o, stdout, stderr)
		},
	}
	c.SetOut(stdout)
	c.SetErr(stderr)
	c.SetFlagErrorFunc(cli.FlagError)
	f := c.Flags()
	f.StringVar(&o.image, "image", "", "boot image `PATH`: a UKI, an ESP (FAT image or directory) or a GPT disk image")
	f.StringVar(&o.version, "image-version", "", "image `VERSION` the PCRs belong to")
	f.StringVar(&o.platform, "platform", "qemu-vtpm", "attestation `PLATFORM` whose profile decides which PCRs are enforced")
	f.StringVar(&o.bank, "bank", metadata.HashSHA256, "PCR bank: sha256 or sha384")
	f.StringVarP(&o.out, "out", "o", "-", "write the measurements document to `FILE` (- for stdout)")
	f.StringVar(&o.secureBoot, "secure-boot", "", "also compute PCR 7 for the firmware's Secure Boot `STATE`: disabled (no keys enrolled, as OVMF's empty variable store)")
	f.StringVar(&o.linkKey, "link-key", "", "sign the in-toto link of this run with the functionary key `FILE`")
	f.StringVar(&o.linkDir, "link-dir", "", "write the link into `DIR` (default: next to --out)")
	f.StringVar(&o.passwordFile, "password-file", "", "read the --link-key password from `FILE` (else $MTUF_PASSWORD, else a prompt)")
	return c
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	profile, bank, err := o.check()
	if err != nil {
		return err
	}
	// The key is unlocked before the image is read, so that a wrong
	// password costs nothing.
	var functionary crypto.Signer
	if o.linkKey != "" {
		functionary, err = keys.LoadPrivate(ctx, o.linkKey, keys.PasswordSource{File: o.passwordFile, Prompt: stderr})
		if err != nil {
			return cli.Usage(fmt.Errorf("--link-key: %w", err))
		}
	}
	res, err := precalc.File(o.image, bank)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return cli.Usage(fmt.Errorf("--image: %w", err))
		}
		return err
	}
	if o.secureBoot == secureBootDisabled {
		res.AddSecureBootDisabled()
	}
	values, err := res.PCRs(bank)
	if err != nil {
		return err
	}
	m, err := document(profile, o.version, o.bank, values)
	if err != nil {
		return err
	}
	var materials map[string][sha256.Size]byte
	if functionary != nil {
		if materials, err = imageMaterial(o.image); err != nil {
			return err
		}
	}
	fmt.Fprintf(stderr, "pcr-precalc: %s: %s, sections %s\n", o.image, res.Source, strings.Join(res.Sections, " "))
	return measurementsfile.Write(measurementsfile.Output{
		Path:        o.out,
		Step:        intoto.StepPrecalculateMeasurements,
		Functionary: functionary,
		LinkDir:     o.linkDir,
		Materials:   materials,
	}, m, stdout, stderr)
}

// check checks the flags before any key or image is touched, and returns
// the platform's profile and the PCR bank to compute.
func (o options) check() (*metadata.Profile, crypto.Hash, error) {
	switch {
	case o.image == "" || o.version == "":
		return nil, 0, cli.Usage(errors.New("--image PATH and --image-version V are required"))
	case o.linkKey != "" && o.out == "-" && o.linkDir == "":
		return nil, 0, cli.Usage(errors.New("--link-key needs --out FILE or --link-dir DIR: the link is written next to the measurements document"))
	case o.linkKey == "" && o.linkDir != "":
		return nil, 0, cli.Usage(errors.New("--link-dir goes with --link-key"))
	case o.secureBoot != "" && o.secureBoot != secureBootDisabled:
		return nil, 0, cli.Usage(fmt.Errorf("--secure-boot %q: only %q (no keys enrolled) is modelled; leave PCR 7 to a reading of a booted node otherwise", o.secureBoot, secureBootDisabled))
	}
	if err := metadata.ValidateImage(o.version); err != nil {
		return nil, 0, cli.Usage(fmt.Errorf("--image-version: %w", err))
	}
	profile, err := metadata.ProfileFor(o.platform)
	if err != nil {
		return nil, 0, cli.Usage(err)
	}
	bank, err := metadata.HashAlgorithm(o.bank)
	if err != nil {
		return nil, 0, cli.Usage(fmt.Errorf("--bank: %w", err))
	}
	if o.linkDir != "" {
		if fi, err := os.Stat(o.linkDir); err != nil || !fi.IsDir() {
			return nil, 0, cli.Usage(fmt.Errorf("--link-dir %s is not a directory", o.linkDir))
		}
	}
	return profile, bank, nil
}

// document builds the measurements document of the PCRs the image
// determines: each one the profile publishes, enforced or warn-only as it
// says. PCRs the image does not determine are absent, never zero-filled:
// only a reading of a booted node can pin those.
func document(profile *metadata.Profile, image, hash string, values map[uint32][]byte) (*metadata.Measurements, error) {
	m := &metadata.Measurements{Image: image, Platform: profile.Platform, Hash: hash, PCRs: map[uint32]metadata.PCR{}}
	for idx, v := range values {
		rule, ok := profile.PCRs[idx]
		if !ok || rule.Action == metadata.Omit {
			continue
		}
		m.PCRs[idx] = metadata.PCR{Expected: v, WarnOnly: rule.Action == metadata.WarnOnly}
	}
	if len(m.PCRs) == 0 {
		return nil, cli.Usage(fmt.Errorf("platform %s publishes none of the PCRs the image determines (%v)", profile.Platform, slices.Sorted(maps.Keys(values))))
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// imageMaterial returns the image as the link records it: the file under
// its base name, or for an ESP directory the UKI it boots under its path
// in the ESP. The file is hashed as it streams: a disk image need not fit
// in memory.
func imageMaterial(path string) (map[string][sha256.Size]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	name := filepath.Base(path)
	if fi.IsDir() {
		if path, name, err = precalc.ESPBootFile(path); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.Copy(d, f); err != nil {
		return nil, fmt.Errorf("hashing %s: %w", path, err)
	}
	var sum [sha256.Size]byte
	d.Sum(sum[:0])
	return map[string][sha256.Size]byte{name: sum}, nil
}
