// Package telemetry gives the long-running commands (mtuf repo serve,
// mtuf-agent, mtuf client verify) their logs and metrics: log/slog in text
// or JSON (--log-format), one log line per HTTP request that names the
// request, and Prometheus metrics of the requests served, on /metrics.
//
// Each command makes its own registry: no metric is global, so a test (or
// an integrator) can run several servers in one process and read each
// one's metrics.
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// The log formats of --log-format.
const (
	LogText = "text"
	LogJSON = "json"
)

// LogFormatUsage is the help of a --log-format flag.
const LogFormatUsage = "log `FORMAT`: text (key=value) or json (one object per line)"

// NewLogger returns a logger writing to w in format (LogText or LogJSON).
func NewLogger(w io.Writer, format string) (*slog.Logger, error) {
	switch format {
	case LogText, "":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case LogJSON:
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

// MetricsPath is where the commands serve their metrics.
const MetricsPath = "/metrics"

// NewRegistry returns a registry with the Go runtime's and the process's
// collectors, as every Prometheus exporter has them.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// MetricsHandler serves reg's metrics in the Prometheus text format (or
// what the scraper negotiates).
func MetricsHandler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

// HTTPMetrics count what a server answers: requests by kind and status,
// bytes sent by kind, and the time to answer by kind.
type HTTPMetrics struct {
	requests *prometheus.CounterVec
	bytes    *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// NewHTTPMetrics registers the request metrics of a server with reg, named
// PREFIX_requests_total, PREFIX_response_bytes_total and
// PREFIX_request_duration_seconds.
func NewHTTPMetrics(reg prometheus.Registerer, prefix string) *HTTPMetrics {
	m := &HTTPMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_requests_total",
			Help: "HTTP requests answered, by kind of resource and status code.",
		}, []string{"kind", "status"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: prefix + "_response_bytes_total",
			Help: "Bytes of response bodies sent, by kind of resource.",
		}, []string{"kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    prefix + "_request_duration_seconds",
			Help:    "Time to answer an HTTP request, by kind of resource.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5ms to ~2min
		}, []string{"kind"}),
	}
	reg.MustRegister(m.requests, m.bytes, m.duration)
	return m
}

// Instrument wraps h so that every request is logged on one line, which
// names it (remote address, method, path) with its kind, status, size and
// duration, and counted in m (nil counts nothing). kind names the kind of
// resource a request asks for; it must return one of a few fixed values,
// since each becomes a label value.
func Instrument(h http.Handler, logger *slog.Logger, m *HTTPMetrics, kind func(*http.Request) string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		d := time.Since(start)
		k := kind(r)
		if m != nil {
			m.requests.WithLabelValues(k, strconv.Itoa(rec.status)).Inc()
			m.bytes.WithLabelValues(k).Add(float64(rec.bytes))
			m.duration.WithLabelValues(k).Observe(d.Seconds())
		}
		logger.Info("request",
			"remote", r.RemoteAddr,
			"method", r.Method,
			"path", r.URL.Path,
			"status", rec.status,
			"bytes", rec.bytes,
			"duration", d.Round(time.Microsecond),
			"kind", k,
		)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status      int
	bytes       int
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(b)
	r.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
