// Package measurementsfile writes a measurements document where 'mtuf repo
// publish' takes it, with the in-toto link of the step that produced it:
// the one output path of pcr-reader and pcr-precalc, so that both
// functionaries record their product the same way.
package measurementsfile

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"

	"github.com/mtuf/mtuf/internal/safefile"
	"github.com/mtuf/mtuf/intoto"
	"github.com/mtuf/mtuf/metadata"
)

// Output says where a document goes and how its run is recorded.
type Output struct {
	// Path is the document's file, or "-" for the standard output.
	Path string
	// Step is the in-toto step of the run.
	Step string
	// Functionary signs the run's link; nil writes none.
	Functionary crypto.Signer
	// LinkDir is the directory of the link; empty means next to Path.
	LinkDir string
	// Materials are the files the step read (name -> content), recorded
	// in the link.
	Materials map[string][]byte
}

// Encode returns the canonical bytes of m as they are written: the
// document's JSON and a newline.
func Encode(m *metadata.Measurements) ([]byte, error) {
	data, err := m.Marshal()
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}

// Write writes m and, with a functionary, the link of the run whose only
// product is the document, recorded under the name the layout expects
// (measurements.json) whatever the file is called. The link is signed
// before anything is written, and both files are written atomically, so a
// failure leaves no half-written output. It reports what it wrote on
// stdout, or on stderr when stdout receives the document (Path "-").
func Write(o Output, m *metadata.Measurements, stdout, stderr io.Writer) error {
	data, err := Encode(m)
	if err != nil {
		return err
	}
	var link []byte
	var linkPath string
	if o.Functionary != nil {
		dir := o.LinkDir
		if dir == "" {
			if o.Path == "-" {
				return fmt.Errorf("the in-toto link of step %s needs a directory when the document goes to the standard output", o.Step)
			}
			dir = filepath.Dir(o.Path)
		}
		var keyID string
		link, keyID, err = intoto.NewLink(o.Step, o.Materials, map[string][]byte{metadata.MeasurementsFile: data}, o.Functionary)
		if err != nil {
			return fmt.Errorf("--link-key: %w", err)
		}
		name, err := metadata.LinkFileName(o.Step, keyID)
		if err != nil {
			return err
		}
		linkPath = filepath.Join(dir, name)
	}
	if o.Path == "-" {
		if _, err := stdout.Write(data); err != nil {
			return err
		}
	} else {
		if err := safefile.WriteFile(o.Path, data, 0o644); err != nil {
			return err
		}
		warn := 0
		for _, p := range m.PCRs {
			if p.WarnOnly {
				warn++
			}
		}
		fmt.Fprintf(stdout, "wrote %s: image %s on %s, %d PCRs of the %s bank (%d enforced, %d warn-only)\n",
			o.Path, m.Image, m.Platform, len(m.PCRs), m.Hash, len(m.PCRs)-warn, warn)
	}
	if link != nil {
		if err := safefile.WriteFile(linkPath, link, 0o644); err != nil {
			return err
		}
		report := stdout
		if o.Path == "-" {
			report = stderr
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(report, "wrote %s: in-toto link of step %s, product %s sha256 %s\n",
			linkPath, o.Step, metadata.MeasurementsFile, hex.EncodeToString(sum[:]))
	}
	return nil
}
