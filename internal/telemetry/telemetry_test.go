package telemetry

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l, err := NewLogger(&buf, LogJSON)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("request", "path", "/x")
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("json log line %q: %v", buf.String(), err)
	}
	if rec["msg"] != "request" || rec["path"] != "/x" {
		t.Errorf("json log line %v", rec)
	}

	buf.Reset()
	if l, err = NewLogger(&buf, LogText); err != nil {
		t.Fatal(err)
	}
	l.Info("request", "path", "/x")
	if !strings.Contains(buf.String(), "msg=request path=/x") {
		t.Errorf("text log line %q", buf.String())
	}

	if _, err := NewLogger(&buf, "logfmt"); err == nil || !strings.Contains(err.Error(), `--log-format must be text or json, not "logfmt"`) {
		t.Errorf("unknown format: %v", err)
	}
}

// TestInstrument serves requests through Instrument and reads the counts
// back from /metrics with Prometheus's parser.
func TestInstrument(t *testing.T) {
	t.Parallel()
	reg := NewRegistry()
	m := NewHTTPMetrics(reg, "test")
	var logs bytes.Buffer
	logger, _ := NewLogger(&logs, LogText)
	mux := http.NewServeMux()
	mux.Handle(MetricsPath, MetricsHandler(reg))
	mux.HandleFunc("/hello", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello")) })
	kind := func(r *http.Request) string { return strings.Trim(r.URL.Path, "/") }
	srv := httptest.NewServer(Instrument(mux, logger, m, kind))
	defer srv.Close()

	for _, p := range []string{"/hello", "/hello", "/nope"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	resp, err := http.Get(srv.URL + MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	fams, err := Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"test_requests_total", []string{"kind", "hello", "status", "200"}, 2},
		{"test_requests_total", []string{"kind", "nope", "status", "404"}, 1},
		{"test_response_bytes_total", []string{"kind", "hello"}, 10},
		{"test_request_duration_seconds", []string{"kind", "hello"}, 2},
	} {
		got, err := fams.Value(c.name, c.labels...)
		if err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if _, err := fams.Value("test_requests_total", "kind", "hello", "status", "500"); err == nil {
		t.Error("Value found a sample that is not there")
	}
	for _, want := range []string{"path=/hello status=200 bytes=5", "path=/nope status=404", "kind=nope"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestParseRefusesGarbage(t *testing.T) {
	t.Parallel()
	if _, err := Parse(strings.NewReader("metric{ 1\n")); err == nil {
		t.Fatal("Parse accepted a broken exposition")
	}
}
