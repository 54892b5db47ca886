package pcrreadercmd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/safefile"
	"github.com/mtuf/mtuf/metadata"
)

type importOptions struct {
	in, image, outDir, platform string
	clouds                      []string
}

func newImportCommand(stdout io.Writer) *cobra.Command {
	var o importOptions
	c := &cobra.Command{
		Use:   "import --in FILE [--image V] --out-dir DIR",
		Short: "Convert measurements in older layouts into measurements documents, one per platform",
		Long: `import reads a measurements file in one of the layouts found in the wild
and writes one measurements document per platform, as
DIR/<image>/<platform>/measurements.json, ready for 'mtuf repo publish':

  - the seed project's per-cloud measurements.yaml (a map of cloud to
    {image, measurements: {index: base64 digest}}, unstable PCRs commented
    out). It names no image version: give --image. Every listed PCR is
    enforced. Clouds map to platforms as aws=aws-nitro-tpm,
    azure=azure-sev-snp, gcp=gcp-sev-es, qemu=qemu-vtpm; --cloud NAME=PLATFORM
    changes or adds one.
  - the v2 release format {"version", "ref", "stream", "list": [{"csp",
    "attestationVariant", "measurements": {...}}]}: one document per
    entry, with the release version as image and the attestation variant as
    platform. Where several providers share a variant (OpenStack, QEMU and
    STACKIT all attest with qemu-vtpm), each keeps its provider:
    qemu-vtpm-openstack, qemu-vtpm-qemu, qemu-vtpm-stackit.
  - a measurements document itself, in any layout 'mtuf repo publish'
    reads (bare digests, base64, YAML): it is written in canonical form.

With --image, documents of another image version are refused. Existing
files are replaced.`,
		Example: `  pcr-reader import --in measurements.yaml --image v1.0.0 --out-dir imported
  pcr-reader import --in release-v2.15.0.json --out-dir imported --platform azure-sev-snp
  mtuf repo publish --workspace ws --measurements imported/v1.0.0/azure-sev-snp/measurements.json \
      --image v1.0.0 --platform azure-sev-snp`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runImport(o, stdout)
		},
	}
	f := c.Flags()
	f.StringVar(&o.in, "in", "", "measurements `FILE` to convert (YAML or JSON)")
	f.StringVar(&o.image, "image", "", "image `VERSION` of the measurements (required for a per-cloud measurements.yaml)")
	f.StringVar(&o.outDir, "out-dir", "", "write the documents under `DIR`")
	f.StringVar(&o.platform, "platform", "", "convert only the measurements of this `PLATFORM`")
	f.StringArrayVar(&o.clouds, "cloud", nil, "per-cloud file: the platform of a cloud, as `NAME=PLATFORM` (repeat for several)")
	return c
}

func runImport(o importOptions, stdout io.Writer) error {
	if o.in == "" || o.outDir == "" {
		return cli.Usage(errors.New("--in FILE and --out-dir DIR are required"))
	}
	if o.platform != "" {
		if err := metadata.ValidatePlatform(o.platform); err != nil {
			return cli.Usage(fmt.Errorf("--platform: %w", err))
		}
	}
	data, err := os.ReadFile(o.in)
	if err != nil {
		return cli.Usage(fmt.Errorf("--in: %w", err))
	}
	var docs []*metadata.Measurements
	if len(o.clouds) > 0 {
		mapping, err := cloudPlatforms(o.clouds)
		if err != nil {
			return cli.Usage(err)
		}
		if o.image == "" {
			return cli.Usage(errors.New("--cloud maps the clouds of a per-cloud measurements.yaml, which names no image version: give --image V"))
		}
		docs, err = metadata.ParseLegacyYAML(data, o.image, mapping)
		if err != nil {
			return cli.Usage(fmt.Errorf("%s: %w", o.in, err))
		}
	} else if docs, err = metadata.ParseAll(data, o.image); err != nil {
		if errors.Is(err, metadata.ErrNoImageVersion) {
			return cli.Usage(fmt.Errorf("%s: reading legacy measurements: the per-cloud layout names no image version: give --image V", o.in))
		}
		return cli.Usage(fmt.Errorf("%s: %w", o.in, err))
	}
	if o.platform != "" {
		var found []string
		docs = slices.DeleteFunc(docs, func(m *metadata.Measurements) bool {
			found = append(found, m.Platform)
			return m.Platform != o.platform
		})
		if len(docs) == 0 {
			return cli.Usage(fmt.Errorf("%s has no measurements for platform %s (it has %s)", o.in, o.platform, strings.Join(found, ", ")))
		}
	}
	for _, m := range docs {
		out, err := m.Marshal()
		if err != nil {
			return err
		}
		dir := filepath.Join(o.outDir, m.Image, m.Platform)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("--out-dir: %w", err)
		}
		path := filepath.Join(dir, metadata.MeasurementsFile)
		if err := safefile.WriteFile(path, append(out, '\n'), 0o644); err != nil {
			return err
		}
		warn := 0
		for _, p := range m.PCRs {
			if p.WarnOnly {
				warn++
			}
		}
		fmt.Fprintf(stdout, "wrote %s: image %s on %s, %d PCRs of the %s bank (%d enforced, %d warn-only)\n",
			path, m.Image, m.Platform, len(m.PCRs), m.Hash, len(m.PCRs)-warn, warn)
	}
	return nil
}

// cloudPlatforms returns the default cloud to platform map with the
// --cloud NAME=PLATFORM changes applied.
func cloudPlatforms(flags []string) (map[string]string, error) {
	mapping := metadata.DefaultCloudPlatforms()
	for _, f := range flags {
		cloud, platform, ok := strings.Cut(f, "=")
		if !ok || cloud == "" {
			return nil, fmt.Errorf("--cloud %q: want NAME=PLATFORM, e.g. azure=azure-sev-snp", f)
		}
		if err := metadata.ValidatePlatform(platform); err != nil {
			return nil, fmt.Errorf("--cloud %q: %w", f, err)
		}
		mapping[cloud] = platform
	}
	return mapping, nil
}
