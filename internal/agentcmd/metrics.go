package agentcmd

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/telemetry"
)

// agentMetrics are what an operator watches on a node: attestations
// served, the TPM failing, and how long the TPM takes to quote (a TPM
// that slows down delays every verifier of the cluster).
type agentMetrics struct {
	served    prometheus.Counter
	tpmErrors prometheus.Counter
	quote     prometheus.Histogram
	http      *telemetry.HTTPMetrics
	logger    *slog.Logger
	tpm       string
}

func newAgentMetrics(reg prometheus.Registerer, logger *slog.Logger, tpmSpec string) *agentMetrics {
	m := &agentMetrics{
		served: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mtuf_agent_attestations_served_total",
			Help: "Attestations (TPM quotes over a verifier's nonce) made and served.",
		}),
		tpmErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mtuf_agent_tpm_errors_total",
			Help: "Quotes the TPM failed to make.",
		}),
		quote: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mtuf_agent_quote_duration_seconds",
			Help: "Time the TPM took to quote every PCR bank, failed quotes included.",
			// A software TPM quotes in milliseconds, a hardware one in
			// tenths of a second to seconds.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		logger: logger,
		tpm:    tpmSpec,
	}
	reg.MustRegister(m.served, m.tpmErrors, m.quote)
	m.http = telemetry.NewHTTPMetrics(reg, "mtuf_agent_http")
	return m
}

// observeQuote is the agent's agent.Config.ObserveQuote.
func (m *agentMetrics) observeQuote(d time.Duration, err error) {
	m.quote.Observe(d.Seconds())
	if err != nil {
		m.tpmErrors.Inc()
		m.logger.Error("TPM quote failed", "tpm", m.tpm, "duration", d.Round(time.Microsecond), "err", err)
		return
	}
	m.served.Inc()
}

// handler serves the agent's API and its metrics on MetricsPath, every
// request logged and counted.
func (m *agentMetrics) handler(api http.Handler, reg *prometheus.Registry, logger *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.Handle(telemetry.MetricsPath, telemetry.MetricsHandler(reg))
	mux.Handle("/", api)
	return telemetry.Instrument(mux, logger, m.http, requestKind)
}

// requestKind is the kind label of an agent request.
func requestKind(r *http.Request) string {
	switch r.URL.Path {
	case agentapi.AttestationPath:
		return "attestation"
	case agentapi.AKPath:
		return "ak"
	case telemetry.MetricsPath:
		return "metrics"
	}
	return "other"
}
