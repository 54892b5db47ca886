package agentcmd

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode"

	"github.com/google/go-eventlog/tcg"

	"github.com/mtuf/mtuf/internal/agent"
	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/tpm"
	"github.com/mtuf/mtuf/keys"
	"github.com/mtuf/mtuf/metadata"
)

// MaxClusterIDBytes bounds a cluster ID. IDs are names or encoded digests of
// a few dozen bytes; the bound keeps a file passed by mistake out of the
// event log.
const MaxClusterIDBytes = 1024

// maxCertFileBytes bounds the CA certificate file: a PEM certificate is a
// few kilobytes.
const maxCertFileBytes = 1 << 20

// checkFlagCombinations refuses flags that only make sense together, before
// anything is opened.
func checkFlagCombinations(opts options) error {
	switch {
	case (opts.akCAKey == "") != (opts.akCACert == ""):
		return cli.Usage(errors.New("--ak-ca-key and --ak-ca-cert go together: give the CA's encrypted private key and its certificate"))
	case opts.akCertOut != "" && opts.akCAKey == "":
		return cli.Usage(errors.New("--ak-cert-out: the attestation key has no certificate without --ak-ca-key and --ak-ca-cert"))
	case opts.akCertValidity <= 0:
		return cli.Usage(fmt.Errorf("--ak-cert-validity %v: give a positive duration such as 24h", opts.akCertValidity))
	}
	return nil
}

// withClusterID returns the boot chain followed by the cluster ID event: PCR
// 15 extended once with the ID's digest in every bank, which is
// metadata.ClusterIDDigest of the bank, so that a verifier expecting
// metadata.ClusterIDPCR finds it. The event is logged with the ID as its
// data, so that a verifier can tell which cluster a node claims.
func withClusterID(chain *tpm.BootChain, id string) (*tpm.BootChain, error) {
	if err := checkClusterID(id); err != nil {
		return nil, err
	}
	out := &tpm.BootChain{Name: "cluster ID " + id}
	if chain != nil {
		for i, ev := range chain.Events {
			if ev.PCR == metadata.ClusterIDPCRIndex {
				return nil, fmt.Errorf("the boot chain %q already measures into PCR %d (events[%d], %s), which holds the cluster ID: remove that event", chain.Name, metadata.ClusterIDPCRIndex, i, ev.Description)
			}
		}
		out.Name = chain.Name + ", " + out.Name
		out.Events = append(out.Events, chain.Events...)
	}
	out.Events = append(out.Events, tpm.BootEvent{
		PCR:         metadata.ClusterIDPCRIndex,
		Type:        tcg.Ipl,
		Description: "cluster ID",
		Data:        []byte(id),
	})
	return out, nil
}

// checkClusterID refuses IDs that cannot be what the user meant: the digest
// covers the exact bytes, so a stray newline or space would bind the node to
// another cluster than the one the verifier expects.
func checkClusterID(id string) error {
	switch {
	case id == "":
		return errors.New("empty cluster ID")
	case len(id) > MaxClusterIDBytes:
		return fmt.Errorf("cluster ID of %d bytes: at most %d are allowed", len(id), MaxClusterIDBytes)
	case strings.TrimSpace(id) != id:
		return fmt.Errorf("cluster ID %q starts or ends with white space, which would be part of its digest: remove it", id)
	}
	for _, r := range id {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return fmt.Errorf("cluster ID %q holds a control character or invalid UTF-8: use printable text", id)
		}
	}
	return nil
}

// loadAKCA loads the development CA of --ak-ca-key and --ak-ca-cert, or
// returns nil when none is given.
func loadAKCA(ctx context.Context, opts options, stderr io.Writer) (*agent.CA, error) {
	if opts.akCAKey == "" {
		return nil, nil
	}
	cert, err := loadCACert(opts.akCACert)
	if err != nil {
		return nil, cli.Usage(fmt.Errorf("--ak-ca-cert: %w", err))
	}
	key, err := keys.LoadPrivate(ctx, opts.akCAKey, keys.PasswordSource{File: opts.passwordFile, Prompt: stderr})
	if err != nil {
		return nil, cli.Usage(fmt.Errorf("--ak-ca-key: %w", err))
	}
	ca := &agent.CA{Cert: cert, Key: key, Validity: opts.akCertValidity}
	if err := ca.Check(); err != nil {
		return nil, cli.Usage(fmt.Errorf("--ak-ca-key %s with --ak-ca-cert %s: %w", opts.akCAKey, opts.akCACert, err))
	}
	return ca, nil
}

// loadCACert reads one PEM certificate.
func loadCACert(path string) (*x509.Certificate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxCertFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxCertFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes: is this a PEM certificate?", path, maxCertFileBytes)
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM block: want a PEM CERTIFICATE", path)
	}
	if block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: PEM block %q, want CERTIFICATE", path, block.Type)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cert, nil
}
