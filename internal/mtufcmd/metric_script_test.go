package mtufcmd

import (
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/mtuf/mtuf/internal/telemetry"
)

// metric SRC NAME [LABEL=VALUE...] OP WANT reads metrics in the Prometheus
// text format, from an http:// URL (a scrape) or a file (a textfile), with
// Prometheus's own parser, and compares the value of the sample of NAME
// with exactly those labels (a histogram's count) with WANT; OP is one of
// == < <= > >=.
func cmdMetric(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 4 {
		ts.Fatalf("usage: metric SRC NAME [LABEL=VALUE...] OP WANT")
	}
	src, name, op, wantS := args[0], args[1], args[len(args)-2], args[len(args)-1]
	var labels []string
	for _, kv := range args[2 : len(args)-2] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			ts.Fatalf("metric: label %q is not LABEL=VALUE", kv)
		}
		labels = append(labels, k, v)
	}
	want, err := strconv.ParseFloat(wantS, 64)
	ts.Check(err)
	var r io.Reader
	if strings.HasPrefix(src, "http://") {
		resp, err := http.Get(src)
		ts.Check(err)
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			ts.Fatalf("metric: GET %s: %s", src, resp.Status)
		}
		r = resp.Body
	} else {
		f, err := os.Open(ts.MkAbs(src))
		ts.Check(err)
		defer f.Close()
		r = f
	}
	fams, err := telemetry.Parse(r)
	ts.Check(err)
	got, err := fams.Value(name, labels...)
	ts.Check(err)
	var ok bool
	switch op {
	case "==":
		ok = got == want
	case "<":
		ok = got < want
	case "<=":
		ok = got <= want
	case ">":
		ok = got > want
	case ">=":
		ok = got >= want
	default:
		ts.Fatalf("metric: unknown comparison %q", op)
	}
	if !ok {
		ts.Fatalf("metric %s%v = %v, want %s %v", name, labels, got, op, wantS)
	}
	ts.Logf("%s%v = %v", name, labels, got)
}
