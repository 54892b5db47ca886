// Package pcrreadercmd is the pcr-reader command: it reads the PCRs of one
// bank from a TPM, or from a node's mtuf-agent, applies the platform's
// profile and writes a measurements document ready for 'mtuf repo publish',
// with the in-toto link of its run (step read-measurements) when given a
// functionary key. 'pcr-reader import' converts measurements files in the
// older layouts into measurements documents.
package pcrreadercmd

import (
	"context"
	"crypto"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm-tools/quote"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/measurementsfile"
	"github.com/mtuf/mtuf/internal/tpm"
	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// Main runs pcr-reader with os.Args and returns the exit status (see
// package cli): 0 on success, 1 when reading failed, 2 for a bad command
// line.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd := newCommand(os.Stdout, os.Stderr)
	cmd.SetArgs(os.Args[1:])
	err := cmd.ExecuteContext(ctx)
	code, silent := cli.Code(err)
	if err != nil && !silent {
		fmt.Fprintf(os.Stderr, "pcr-reader: %v\n", err)
	}
	return code
}

type options struct {
	tpmSpec, agentURL, bootLog, trustedAK string
	image, platform, bank, out            string
	linkKey, passwordFile                 string
	enforce, warnOnly                     []uint
}

func newCommand(stdout, stderr io.Writer) *cobra.Command {
	var o options
	c := &cobra.Command{
		Use:   "pcr-reader (--tpm SPEC | --agent URL) --image V --platform P --out FILE",
		Short: "Read PCRs from a TPM and write a measurements document",
		Long: `pcr-reader reads one PCR bank from a TPM (a device, a TCP TPM such as swtpm,
or the simulator) or from a node's mtuf-agent, applies the platform's
profile (which PCRs are enforced, warn-only or left out, and why), and
writes a measurements document for 'mtuf repo publish'. It refuses to write
a document whose enforced PCRs hold their reset value (all zeros; all ones
for PCRs 17-22): the TPM read then booted nothing, as the simulator without
--boot-log.

With --link-key, it also records the in-toto link of its run, signed with
that functionary key: step read-measurements, with the document as its
product measurements.json. The link is written next to --out as
read-measurements.<keyid>.link, where in-toto expects it; publish it with
'mtuf repo publish --link'. The key's password comes from MTUF_PASSWORD,
--password-file or a prompt.

Platforms: ` + strings.Join(metadata.Platforms(), ", "),
		Example: `  pcr-reader --tpm /dev/tpmrm0 --image v1.0.0 --platform qemu-vtpm --out measurements.json
  pcr-reader --agent http://10.0.0.5:8733 --trusted-ak node-ak.pem \
      --image v1.0.0 --platform qemu-vtpm --out measurements.json
  pcr-reader --tpm sim --boot-log image.yaml --image v1.0.0 --platform qemu-vtpm --out m.json
  pcr-reader --tpm tcp://127.0.0.1:2321 --bank sha384 --image v1.0.0 --platform qemu-vtpm \
      --out measurements.json --link-key ci.key
  pcr-reader import --in measurements.yaml --image v1.0.0 --out-dir imported`,
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
	f.StringVar(&o.tpmSpec, "tpm", "", "TPM to read: /dev/tpmrm0, tcp://HOST:PORT, sim or sim:SEED")
	f.StringVar(&o.agentURL, "agent", "", "read from a node's mtuf-agent at `URL` instead (http://HOST:PORT)")
	f.StringVar(&o.trustedAK, "trusted-ak", "", "with --agent: the node's attestation key `FILE` (PEM)")
	f.StringVar(&o.bootLog, "boot-log", "", "with a simulator or swtpm: boot through the described chain `FILE` first")
	f.StringVar(&o.image, "image", "", "image `VERSION` the PCRs belong to")
	f.StringVar(&o.platform, "platform", "", "attestation `PLATFORM`")
	f.StringVar(&o.bank, "bank", "sha256", "PCR bank: sha256 or sha384")
	f.StringVar(&o.out, "out", "", "write the measurements document to `FILE` (- for stdout)")
	f.UintSliceVar(&o.enforce, "enforce", nil, "enforce these PCRs whatever the profile says")
	f.UintSliceVar(&o.warnOnly, "warn-only", nil, "make these PCRs warn-only whatever the profile says")
	f.StringVar(&o.linkKey, "link-key", "", "sign the in-toto link of this run with the functionary key `FILE`")
	f.StringVar(&o.passwordFile, "password-file", "", "read the --link-key password from `FILE` (else $MTUF_PASSWORD, else a prompt)")
	c.AddCommand(newImportCommand(stdout))
	return c
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	profile, bank, err := o.check()
	if err != nil {
		return err
	}
	// The key is unlocked before the TPM is read, so that a wrong
	// password costs nothing.
	var functionary crypto.Signer
	if o.linkKey != "" {
		functionary, err = keys.LoadPrivate(ctx, o.linkKey, keys.PasswordSource{File: o.passwordFile, Prompt: stderr})
		if err != nil {
			return cli.Usage(fmt.Errorf("--link-key: %w", err))
		}
	}
	var values map[uint32][]byte
	if o.agentURL != "" {
		values, err = readAgent(ctx, o, bank, stderr)
	} else {
		values, err = readTPM(o, bank)
	}
	if err != nil {
		return err
	}
	m, err := profile.Apply(o.image, o.bank, values, toU32(o.enforce), toU32(o.warnOnly))
	if err != nil {
		return cli.Usage(err)
	}
	// 'mtuf repo publish' refuses such a document too; refusing it here
	// says so where the reading went wrong, before anything is written.
	if err := m.CheckNotReset(profile); err != nil {
		return fmt.Errorf("refusing to write %s: the TPM read measured nothing into PCRs the profile of %s enforces, so it did not boot the image (or the wrong TPM was read): %w", o.out, o.platform, err)
	}
	return measurementsfile.Write(measurementsfile.Output{
		Path:        o.out,
		Step:        intoto.StepReadMeasurements,
		Functionary: functionary,
	}, m, stdout, stderr)
}

// check checks the flags before any key or TPM is touched, and returns
// the platform's profile and the PCR bank to read.
func (o options) check() (*metadata.Profile, crypto.Hash, error) {
	switch {
	case o.image == "" || o.platform == "" || o.out == "":
		return nil, 0, cli.Usage(errors.New("--image V, --platform P and --out FILE are required"))
	case (o.tpmSpec == "") == (o.agentURL == ""):
		return nil, 0, cli.Usage(errors.New("give exactly one of --tpm SPEC and --agent URL"))
	case o.bootLog != "" && !tpm.IsTestTPM(o.tpmSpec):
		return nil, 0, cli.Usage(errors.New("--boot-log extends PCRs and is only for a simulator (--tpm sim) or swtpm (--tpm tcp://...), never a real TPM or an agent"))
	case o.bootLog == "" && tpm.IsSimulator(o.tpmSpec):
		return nil, 0, cli.Usage(errors.New("--tpm sim without --boot-log: the simulator has booted nothing, so every PCR holds its reset value and the document would make a blank TPM trusted; give --boot-log FILE with the boot chain of the image"))
	case o.trustedAK != "" && o.agentURL == "":
		return nil, 0, cli.Usage(errors.New("--trusted-ak goes with --agent"))
	case o.linkKey != "" && o.out == "-":
		return nil, 0, cli.Usage(errors.New("--link-key needs --out FILE: the link is written next to the measurements document"))
	}
	if err := metadata.ValidateImage(o.image); err != nil {
		return nil, 0, cli.Usage(err)
	}
	profile, err := metadata.ProfileFor(o.platform)
	if err != nil {
		return nil, 0, cli.Usage(err)
	}
	bank, err := metadata.HashAlgorithm(o.bank)
	if err != nil {
		return nil, 0, cli.Usage(fmt.Errorf("--bank: %w", err))
	}
	return profile, bank, nil
}

func readTPM(o options, bank crypto.Hash) (map[uint32][]byte, error) {
	rw, err := tpm.Open(o.tpmSpec)
	if err != nil {
		return nil, err
	}
	defer rw.Close()
	if o.bootLog != "" {
		chain, err := tpm.LoadBootChain(o.bootLog)
		if err != nil {
			return nil, cli.Usage(err)
		}
		if _, err := tpm.Boot(rw, chain); err != nil {
			return nil, err
		}
	}
	return tpm.ReadPCRs(rw, bank)
}

// readAgent reads the PCRs from a node's quote. The quote must verify
// under the attestation key it came with and carry our nonce; with
// --trusted-ak the key must also be the pinned one.
func readAgent(ctx context.Context, o options, bank crypto.Hash, stderr io.Writer) (map[uint32][]byte, error) {
	var pinned []crypto.PublicKey
	if o.trustedAK != "" {
		ks, err := keys.LoadPublicKeys(o.trustedAK)
		if err != nil {
			return nil, cli.Usage(fmt.Errorf("--trusted-ak: %w", err))
		}
		pinned = ks
	}
	nonce := make([]byte, 32)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	att, err := agentapi.Fetch(ctx, http.DefaultClient, strings.TrimSuffix(o.agentURL, "/"), nonce)
	if err != nil {
		return nil, err
	}
	pub, err := tpm2.DecodePublic(att.GetAkPub())
	if err != nil {
		return nil, fmt.Errorf("agent %s: attestation key: %w", o.agentURL, err)
	}
	ak, err := pub.Key()
	if err != nil {
		return nil, fmt.Errorf("agent %s: attestation key: %w", o.agentURL, err)
	}
	if pinned != nil {
		if !slices.ContainsFunc(pinned, func(k crypto.PublicKey) bool { return keys.Equal(k, ak) }) {
			return nil, fmt.Errorf("agent %s quoted with an attestation key that is not among those in %s", o.agentURL, o.trustedAK)
		}
	} else {
		fmt.Fprintf(stderr, "pcr-reader: warning: the attestation key of %s is not pinned (--trusted-ak); trusting it on first use\n", o.agentURL)
	}
	want := tpmpb.HashAlgo_SHA256
	if bank == crypto.SHA384 {
		want = tpmpb.HashAlgo_SHA384
	}
	for _, q := range att.GetQuotes() {
		if q.GetPcrs().GetHash() != want {
			continue
		}
		if err := quote.Verify(q, ak, nonce); err != nil {
			return nil, fmt.Errorf("agent %s: %s quote does not verify: %w", o.agentURL, o.bank, err)
		}
		pcrs := q.GetPcrs().GetPcrs()
		// The quote signs the digest of the PCR values laid end to end:
		// only with every value of the bank's length does that fix each
		// PCR's own value, rather than bytes shifted from one PCR to the
		// next.
		for _, idx := range slices.Sorted(maps.Keys(pcrs)) {
			if len(pcrs[idx]) != bank.Size() {
				return nil, fmt.Errorf("agent %s: the %s quote gives PCR %d a value of %d bytes, where %s digests have %d: the quoted values were tampered with",
					o.agentURL, o.bank, idx, len(pcrs[idx]), o.bank, bank.Size())
			}
		}
		return pcrs, nil
	}
	return nil, fmt.Errorf("agent %s sent no quote of the %s bank", o.agentURL, o.bank)
}

func toU32(v []uint) []uint32 {
	out := make([]uint32, len(v))
	for i, x := range v {
		out[i] = uint32(x)
	}
	return out
}
