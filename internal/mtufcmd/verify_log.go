package mtufcmd

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/mtuf/mtuf/attest"
)

// nodeLogTransport logs every exchange with a node's agent, naming the
// node, as it happens: with many nodes verified at once, the log shows
// which ones are slow or do not answer before the report is printed.
type nodeLogTransport struct {
	base   http.RoundTripper
	logger *slog.Logger
}

func (t nodeLogTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	d := time.Since(start).Round(time.Microsecond)
	if err != nil {
		t.logger.Warn("node request failed", "node", r.URL.Host, "method", r.Method, "path", r.URL.Path, "duration", d, "err", err)
		return nil, err
	}
	t.logger.Info("node request", "node", r.URL.Host, "method", r.Method, "path", r.URL.Path, "status", resp.StatusCode, "duration", d)
	return resp, nil
}

// verifyHTTPClient is the client that asks the nodes, logging with
// logger.
func verifyHTTPClient(logger *slog.Logger) *http.Client {
	return &http.Client{Transport: nodeLogTransport{base: http.DefaultTransport, logger: logger}}
}

// logVerdicts logs each node's verdict, naming the node.
func logVerdicts(ctx context.Context, logger *slog.Logger, rep *attest.Report) {
	for _, n := range rep.Nodes {
		attrs := []any{"node", n.Node, "status", string(n.Status)}
		if n.Failed != "" {
			attrs = append(attrs, "failed", string(n.Failed))
		}
		if n.Reason != "" {
			attrs = append(attrs, "reason", n.Reason)
		}
		level := slog.LevelInfo
		if n.Status == attest.Refused || n.Status == attest.Unreachable {
			level = slog.LevelWarn
		}
		logger.Log(ctx, level, "node verified", attrs...)
	}
}
