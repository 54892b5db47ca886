package agentcmd

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/mtuf/mtuf/internal/agentapi"
	"github.com/mtuf/mtuf/internal/cli"
	"github.com/mtuf/mtuf/internal/telemetry"
	"github.com/mtuf/mtuf/internal/tpm/tpmtest"
)

// scrape reads the agent's metrics as Prometheus would.
func scrape(t *testing.T, addr string) telemetry.Families {
	t.Helper()
	resp, err := http.Get("http://" + addr + telemetry.MetricsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	fams, err := telemetry.Parse(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

func wantMetric(t *testing.T, fams telemetry.Families, want float64, name string, labels ...string) {
	t.Helper()
	got, err := fams.Value(name, labels...)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Errorf("%s%v = %v, want %v", name, labels, got, want)
	}
}

func attestOnce(addr string) error {
	n := make([]byte, 32)
	if _, err := rand.Read(n); err != nil {
		return err
	}
	_, err := agentapi.Fetch(context.Background(), http.DefaultClient, "http://"+addr, n)
	return err
}

// TestMetricsAndJSONLogs counts attestations, quote times and the errors
// of a TPM that goes away (swtpm shut down under the agent), on /metrics,
// and checks that every JSON log line about a request names it.
func TestMetricsAndJSONLogs(t *testing.T) {
	t.Parallel()
	tpmtest.RequireTools(t, "swtpm", "swtpm_ioctl")
	sw := tpmtest.StartSwtpm(t)
	a := startAgent(t, "--tpm", sw.Spec, "--log-format", "json")

	for range 2 {
		if err := attestOnce(a.addr); err != nil {
			t.Fatal(err)
		}
	}
	fams := scrape(t, a.addr)
	wantMetric(t, fams, 2, "mtuf_agent_attestations_served_total")
	wantMetric(t, fams, 0, "mtuf_agent_tpm_errors_total")
	wantMetric(t, fams, 2, "mtuf_agent_quote_duration_seconds")
	wantMetric(t, fams, 2, "mtuf_agent_http_requests_total", "kind", "attestation", "status", "200")
	wantMetric(t, fams, 2, "mtuf_agent_http_request_duration_seconds", "kind", "attestation")
	if b, err := fams.Value("mtuf_agent_http_response_bytes_total", "kind", "attestation"); err != nil || b < 1000 {
		t.Errorf("attestation bytes %v (%v): two attestations are kilobytes", b, err)
	}

	// The TPM goes away: the quote fails, and is counted as a TPM error.
	if out, err := exec.Command("swtpm_ioctl", "--tcp", "127.0.0.1:"+strconv.Itoa(sw.Port+1), "-s").CombinedOutput(); err != nil {
		t.Fatalf("swtpm_ioctl -s: %v: %s", err, out)
	}
	if err := attestOnce(a.addr); err == nil {
		t.Fatal("attestation with the TPM gone succeeded")
	}
	fams = scrape(t, a.addr)
	wantMetric(t, fams, 2, "mtuf_agent_attestations_served_total")
	wantMetric(t, fams, 1, "mtuf_agent_tpm_errors_total")
	wantMetric(t, fams, 3, "mtuf_agent_quote_duration_seconds")
	wantMetric(t, fams, 1, "mtuf_agent_http_requests_total", "kind", "attestation", "status", "500")
	// The first scrape is counted by the time of the second.
	wantMetric(t, fams, 1, "mtuf_agent_http_requests_total", "kind", "metrics", "status", "200")

	a.shutdown(t)
	var requests, tpmErrors int
	for _, line := range strings.Split(strings.TrimSpace(a.stderr.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		switch rec["msg"] {
		case "request":
			requests++
			for _, k := range []string{"remote", "method", "path", "status", "kind"} {
				if rec[k] == nil || rec[k] == "" {
					t.Errorf("request line without %s: %s", k, line)
				}
			}
		case "TPM quote failed":
			tpmErrors++
			if rec["tpm"] != sw.Spec || rec["level"] != "ERROR" {
				t.Errorf("TPM error line does not name the TPM %s at level ERROR: %s", sw.Spec, line)
			}
		}
	}
	if requests != 5 || tpmErrors != 1 {
		t.Errorf("%d request lines (want 5), %d TPM error lines (want 1):\n%s", requests, tpmErrors, a.stderr)
	}
}

func TestLogFormatRefused(t *testing.T) {
	var stderr bytes.Buffer
	code := run(context.Background(), []string{"--tpm", "sim", "--log-format", "xml"}, &bytes.Buffer{}, &stderr)
	if code != cli.ExitUsage || !strings.Contains(stderr.String(), `--log-format must be text or json, not "xml"`) {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
}
