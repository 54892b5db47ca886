package mtufcmd

import (
	"log/slog"
	"net/http"
	"path"
	"strings"

	"github.com/mtuf/mtuf/internal/telemetry"
)

// serveTelemetry serves a repository handler with its metrics on
// /metrics, every request logged and counted by kind.
func serveTelemetry(h http.Handler, logger *slog.Logger) http.Handler {
	reg := telemetry.NewRegistry()
	m := telemetry.NewHTTPMetrics(reg, "mtuf_repo_http")
	mux := http.NewServeMux()
	mux.Handle(telemetry.MetricsPath, telemetry.MetricsHandler(reg))
	mux.Handle("/", h)
	return telemetry.Instrument(mux, logger, m, repoRequestKind)
}

// repoRequestKind is the kind label of a repository request: the
// top-level role of a metadata file, "delegated" for delegated roles and
// hash bins, "target" for target files. Label values must stay few, so
// anything else is "other".
func repoRequestKind(r *http.Request) string {
	p := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
	switch {
	case p == strings.TrimPrefix(telemetry.MetricsPath, "/"):
		return "metrics"
	case p == "metadata/timestamp.json":
		return "timestamp"
	case strings.HasPrefix(p, "targets/"):
		return "target"
	case !strings.HasPrefix(p, "metadata/") || !strings.HasSuffix(p, ".json"):
		return "other"
	}
	// metadata/N.ROLE.json
	_, role, ok := strings.Cut(strings.TrimSuffix(path.Base(p), ".json"), ".")
	switch {
	case !ok:
		return "other"
	case role == "root", role == "snapshot", role == "targets":
		return role
	}
	return "delegated"
}
