package telemetry

import (
	"fmt"
	"io"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are metrics as a scraper reads them, by metric name.
type Families map[string]*dto.MetricFamily

// Parse reads metrics in the Prometheus text format with Prometheus's own
// parser, as a scraper or node_exporter's textfile collector would.
func Parse(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	return fams, nil
}

// Value returns the value of the sample of metric name whose labels are
// exactly labels (name=value pairs): a counter's or gauge's value, a
// histogram's count. It fails when there is no such sample.
func (f Families) Value(name string, labels ...string) (float64, error) {
	fam, ok := f[name]
	if !ok {
		return 0, fmt.Errorf("no metric %s", name)
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	var seen []string
	for _, m := range fam.GetMetric() {
		got := map[string]string{}
		var desc []string
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
			desc = append(desc, l.GetName()+"="+l.GetValue())
		}
		seen = append(seen, "{"+strings.Join(desc, ",")+"}")
		if !sameLabels(got, want) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), nil
		case m.Gauge != nil:
			return m.Gauge.GetValue(), nil
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), nil
		case m.Untyped != nil:
			return m.Untyped.GetValue(), nil
		}
		return 0, fmt.Errorf("metric %s%v has no value", name, labels)
	}
	sort.Strings(seen)
	return 0, fmt.Errorf("no sample of %s with labels %v (it has %s)", name, labels, strings.Join(seen, " "))
}

func sameLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
