// Package agentcmd is the mtuf-agent command: it opens the node's TPM,
// optionally boots a test TPM through a described boot chain, and serves
// attestations over HTTP until it is interrupted.
package agentcmd

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-tpm-tools/client"
	"github.com/spf13/cobra"

	"github.com/mtuf/mtuf/internal/agent"
	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/safefile"
	"github.com/mtuf/mtuf/internal/telemetry"
	"github.com/mtuf/mtuf/internal/tpm"
)

// DefaultListen is where the agent listens unless told otherwise: loopback,
// so that exposing attestations to the network is a deliberate choice.
const DefaultListen = "127.0.0.1:8733"

// HTTP server timeouts. A request is a small JSON body; an attestation takes
// one quote per PCR bank, which a slow hardware TPM may take seconds to sign.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 2 * time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 16 << 10
	shutdownTimeout   = 10 * time.Second
)

// Main runs mtuf-agent with os.Args and returns its exit status. SIGINT and
// SIGTERM shut it down cleanly.
func Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

type options struct {
	listen         string
	tpmSpec        string
	bootLog        string
	akPubOut       string
	readyFile      string
	akType         string
	akCAKey        string
	akCACert       string
	akCertValidity time.Duration
	akCertOut      string
	passwordFile   string
	clusterID      string
	eventLogOut    string
	logFormat      string
}

// run runs mtuf-agent with args and returns its exit status, having
// printed the error, if any, to stderr.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := newCommand(stdout, stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	code, silent := cli.Code(err)
	if err == nil || silent {
		return code
	}
	fmt.Fprintf(stderr, "mtuf-agent: %v\n", err)
	if code == cli.ExitUsage {
		fmt.Fprintln(stderr, "Run 'mtuf-agent --help' for usage.")
	}
	return code
}

func newCommand(stdout, stderr io.Writer) *cobra.Command {
	var opts options
	cmd := &cobra.Command{
		Use:   "mtuf-agent",
		Short: "Serve this node's TPM attestations to verifiers",
		Long: `mtuf-agent serves attestations of this node's TPM over HTTP. A verifier
POSTs a fresh nonce to ` + agentapi.AttestationPath + ` and receives a go-tpm-tools
Attestation: a quote of every allocated PCR bank over the nonce, signed by the
node's attestation key (AK), with the TCG event log. GET ` + agentapi.AKPath + ` returns
the AK public key (PEM), for pinning. GET /metrics serves Prometheus metrics:
attestations served, TPM errors, the time the TPM takes to quote, and every
request by kind and status. Each request is logged on one line naming it
(remote address, method, path); --log-format json writes one JSON object a line.

--tpm selects the TPM: a device such as /dev/tpmrm0 (the default), tcp://HOST:PORT
for a TCP TPM such as swtpm (its server port; swtpm must run with
--flags not-need-init,startup-clear), sim for a fresh in-process simulator, or
sim:SEED for a simulator whose keys are the same on every run (demos and tests).
The simulator is only in development builds (go build -tags simulator, with cgo).
swtpm serves one client connection at a time, and the agent holds its connection
for as long as it runs: while it does, any other client of that swtpm (pcr-reader,
tpm2-tools) waits, and fails on its own timeout. Read PCRs through the agent
(pcr-reader --agent) instead, or stop the agent first.

--boot-log FILE measures a described boot (YAML or JSON) into a test TPM (sim or
tcp://) and serves its event log. A device's PCRs hold this machine's real boot
and are never extended; the agent serves the firmware's event log instead.

--cluster-id ID binds a test TPM to a cluster: PCR 15 of every bank is extended
once with the digest of ID (SHA-256 of ID in the sha256 bank), as a node does when
it joins, and the event is logged. Verifiers expect it with
'mtuf client verify --cluster-id ID'. On a real node, the node's initialization
extends PCR 15, not the agent.

--ak-ca-key KEY with --ak-ca-cert CERT issues the attestation key a certificate
from that CA at start-up, as cloud providers certify their vTPMs' keys, and sends
it with every attestation; verifiers then trust the key with
'mtuf client verify --ak-ca CERT' instead of pinning it. This is for development
CAs: KEY is an mtuf or cosign encrypted key (password from $MTUF_PASSWORD or
--password-file), CERT its CA certificate (PEM). An issuing CA that is not a root
is sent along as an intermediate.`,
		Example: `  # Serve the node's TPM to the cluster network:
  mtuf-agent --tpm /dev/tpmrm0 --listen 0.0.0.0:8733 --ak-pub-out /run/mtuf/ak.pem

  # A simulated node booted as image v1.0.0, on a port chosen by the system:
  mtuf-agent --tpm sim:1 --boot-log testdata/boot/image-v1.0.0.yaml \
    --listen 127.0.0.1:0 --ready-file agent.addr --ak-pub-out ak.pem

  # A simulated node of cluster "prod-eu", its AK certified by a development CA:
  MTUF_PASSWORD=test-password mtuf-agent --tpm sim --boot-log testdata/boot/image-v1.0.0.yaml \
    --cluster-id prod-eu --ak-ca-key testdata/ak-ca/test-ak-ca.key \
    --ak-ca-cert testdata/ak-ca/test-ak-ca.pem --listen 127.0.0.1:0 --ready-file agent.addr`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) > 0 {
				return cli.Usage(fmt.Errorf("unexpected argument %q: mtuf-agent takes only flags", args[0]))
			}
			return nil
		},
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return serve(cmd.Context(), opts, stderr)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.listen, "listen", DefaultListen, "listen on `ADDR` (HOST:PORT); port 0 picks a free port, see --ready-file")
	f.StringVar(&opts.tpmSpec, "tpm", "/dev/tpmrm0", "`TPM`: a device path, tcp://HOST:PORT, sim or sim:SEED")
	f.StringVar(&opts.bootLog, "boot-log", "", "boot chain description (YAML or JSON) `FILE` to measure into a test TPM (sim or tcp:// only)")
	f.StringVar(&opts.akPubOut, "ak-pub-out", "", "write the attestation key's public key (PEM) to `FILE` at start-up")
	f.StringVar(&opts.readyFile, "ready-file", "", "once serving, write the listening HOST:PORT to `FILE` (removed at shutdown)")
	f.StringVar(&opts.akType, "ak-type", "ecc", "attestation key `type`: ecc (P-256) or rsa (2048 bits)")
	f.StringVar(&opts.akCAKey, "ak-ca-key", "", "development CA private `KEY` (encrypted key file) that certifies the attestation key at start-up")
	f.StringVar(&opts.akCACert, "ak-ca-cert", "", "certificate (PEM) `FILE` of the --ak-ca-key CA")
	f.DurationVar(&opts.akCertValidity, "ak-cert-validity", agent.DefaultAKCertValidity, "validity of the AK certificate issued at start-up")
	f.StringVar(&opts.akCertOut, "ak-cert-out", "", "write the attestation key's certificate (PEM) to `FILE` at start-up")
	f.StringVar(&opts.passwordFile, "password-file", "", "read the --ak-ca-key password from `FILE` (else $MTUF_PASSWORD, else a prompt)")
	f.StringVar(&opts.clusterID, "cluster-id", "", "extend PCR 15 of a test TPM with the digest of cluster `ID` (sim or tcp:// only)")
	f.StringVar(&opts.eventLogOut, "event-log-out", "", "write the event log the agent serves to `FILE` at start-up (a reference log for verifiers)")
	f.StringVar(&opts.logFormat, "log-format", telemetry.LogText, telemetry.LogFormatUsage)
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return cli.Usage(err)
	})
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd
}

func serve(ctx context.Context, opts options, stderr io.Writer) (err error) {
	logger, err := telemetry.NewLogger(stderr, opts.logFormat)
	if err != nil {
		return cli.Usage(err)
	}

	akType, err := agent.ParseKeyType(opts.akType)
	if err != nil {
		return cli.Usage(fmt.Errorf("--ak-type: %w", err))
	}
	if opts.listen == "" {
		return cli.Usage(errors.New("--listen: give HOST:PORT, as in " + DefaultListen))
	}
	if err := checkFlagCombinations(opts); err != nil {
		return err
	}
	testTPM := tpm.IsTestTPM(opts.tpmSpec)
	chain, err := bootChain(opts, testTPM)
	if err != nil {
		return err
	}
	ca, err := loadAKCA(ctx, opts, stderr)
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", opts.listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w: is another agent running there? choose another --listen address", opts.listen, err)
	}
	defer ln.Close()

	rw, err := tpm.Open(opts.tpmSpec)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := rw.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("close TPM %s: %w", opts.tpmSpec, cerr)
		}
	}()

	eventLog, err := startupEventLog(rw, opts.tpmSpec, testTPM, chain, logger)
	if err != nil {
		return err
	}

	reg := telemetry.NewRegistry()
	metrics := newAgentMetrics(reg, logger, opts.tpmSpec)
	srv, err := agent.New(agent.Config{TPM: rw, EventLog: eventLog, KeyType: akType, AKCA: ca, ObserveQuote: metrics.observeQuote})
	if err != nil {
		return fmt.Errorf("TPM %s: %w", opts.tpmSpec, err)
	}
	defer srv.Close()

	if err := writeStartupFiles(opts, srv, eventLog); err != nil {
		return err
	}
	addr := ln.Addr().String()
	if opts.readyFile != "" {
		if err := safefile.WriteFile(opts.readyFile, []byte(addr+"\n"), 0o644); err != nil {
			return fmt.Errorf("--ready-file: %w", err)
		}
		defer os.Remove(opts.readyFile)
	}

	attrs := []any{"addr", addr, "tpm", opts.tpmSpec, "ak", akType.String(), "event_log_bytes", len(eventLog)}
	if cert := srv.AKCertificate(); cert != nil {
		attrs = append(attrs, "ak_cert", cert.Subject.String(), "ak_cert_issuer", cert.Issuer.String(), "ak_cert_expires", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if opts.clusterID != "" {
		attrs = append(attrs, "cluster_id", opts.clusterID)
	}
	return serveHTTP(ctx, ln, metrics.handler(srv, reg, logger), logger, attrs)
}

// bootChain returns the boot the agent measures into a test TPM at
// start-up: the described boot of --boot-log, then the cluster ID's
// extension of PCR 15; nil when there is none. Both extend PCRs, so
// both are refused for a device.
func bootChain(opts options, testTPM bool) (*tpm.BootChain, error) {
	var chain *tpm.BootChain
	var err error
	if opts.bootLog != "" {
		if !testTPM {
			return nil, cli.Usage(fmt.Errorf("--boot-log extends PCRs, so it needs a test TPM (--tpm sim, sim:SEED or tcp://HOST:PORT): the PCRs of %q hold this machine's real boot", opts.tpmSpec))
		}
		if chain, err = tpm.LoadBootChain(opts.bootLog); err != nil {
			return nil, err
		}
	}
	if opts.clusterID != "" {
		if !testTPM {
			return nil, cli.Usage(fmt.Errorf("--cluster-id extends PCR 15, so it needs a test TPM (--tpm sim, sim:SEED or tcp://HOST:PORT): on a real node, the node's initialization extends PCR 15 once, not the agent at every start"))
		}
		if chain, err = withClusterID(chain, opts.clusterID); err != nil {
			return nil, cli.Usage(fmt.Errorf("--cluster-id: %w", err))
		}
	}
	return chain, nil
}

// writeStartupFiles writes what the agent was asked to write at start-up:
// the AK's public key, its certificate (when it has one) and the event
// log it serves.
func writeStartupFiles(opts options, srv *agent.Server, eventLog []byte) error {
	if opts.akPubOut != "" {
		if err := safefile.WriteFile(opts.akPubOut, srv.AKPublicPEM(), 0o644); err != nil {
			return fmt.Errorf("--ak-pub-out: %w", err)
		}
	}
	if cert := srv.AKCertificate(); opts.akCertOut != "" && cert != nil {
		if err := safefile.WriteFile(opts.akCertOut, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), 0o644); err != nil {
			return fmt.Errorf("--ak-cert-out: %w", err)
		}
	}
	if opts.eventLogOut != "" {
		if err := safefile.WriteFile(opts.eventLogOut, eventLog, 0o644); err != nil {
			return fmt.Errorf("--event-log-out: %w", err)
		}
	}
	return nil
}

// serveHTTP serves srv on ln until ctx is done, then shuts the server down,
// giving requests in flight shutdownTimeout to finish. attrs describe the
// agent in the log line that says it is serving.
func serveHTTP(ctx context.Context, ln net.Listener, srv http.Handler, logger *slog.Logger, attrs []any) error {
	addr := ln.Addr().String()
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	logger.Info("serving attestations", attrs...)

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve on %s: %w", addr, err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

// startupEventLog returns the event log the agent serves: the described
// boot's for a test TPM booted with --boot-log, the firmware's for a device,
// none for a test TPM that was not booted.
func startupEventLog(rw io.ReadWriter, spec string, testTPM bool, chain *tpm.BootChain, logger *slog.Logger) ([]byte, error) {
	switch {
	case chain != nil:
		log, err := tpm.Boot(rw, chain)
		if err != nil {
			return nil, fmt.Errorf("boot TPM %s with %q: %w", spec, chain.Name, err)
		}
		logger.Info("booted TPM", "tpm", spec, "boot", chain.Name, "events", len(chain.Events))
		return log, nil
	case testTPM:
		return nil, nil
	default:
		log, err := client.GetEventLog(rw)
		if err != nil {
			// Quotes still prove the PCRs; the verifier only loses the
			// ability to explain them.
			logger.Warn("no firmware event log: attestations will carry none", "err", err)
			return nil, nil
		}
		return log, nil
	}
}
