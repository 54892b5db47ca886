package mtufcmd

import (
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/mtuf/mtuf/repo"
)

// outputPrometheus is repo status's --output for monitoring: the text
// format that node_exporter's textfile collector reads.
const outputPrometheus = "prometheus"

// writeStatusMetrics writes st as Prometheus gauges: for every role, the
// seconds left until it expires (negative once it has), its expiry as a
// Unix time, its version, signatures and threshold; for roles with hash
// bins, the seconds left until the first bin expires. The expiry time is
// there as well as the seconds left because a textfile is read long after
// it was written: an alert on expiry - time() stays right however old the
// file is, and mtuf_repo_status_timestamp_seconds tells how old it is.
func writeStatusMetrics(w io.Writer, st *repo.Status, now time.Time) error {
	reg := prometheus.NewRegistry()
	labels := []string{"repository", "role"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}
	expiry := gauge("mtuf_repo_role_expiry_seconds", "Seconds until the role's metadata expires; negative once it has.")
	expiresAt := gauge("mtuf_repo_role_expiry_timestamp_seconds", "When the role's metadata expires, as a Unix time.")
	version := gauge("mtuf_repo_role_version", "Version of the role's current metadata.")
	sigs := gauge("mtuf_repo_role_signatures", "Valid signatures on the role's current metadata, by keys of the role.")
	threshold := gauge("mtuf_repo_role_threshold", "Signatures the role needs.")
	binsExpiry := gauge("mtuf_repo_role_bins_expiry_seconds", "Seconds until the first hash bin of the role expires; negative once it has.")
	written := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "mtuf_repo_status_timestamp_seconds",
		Help: "When this status was read, as a Unix time.",
	})
	reg.MustRegister(written)
	written.Set(float64(now.Unix()))
	for _, r := range st.Roles {
		l := prometheus.Labels{"repository": st.Storage, "role": r.Role}
		expiry.With(l).Set(r.Expires.Sub(now).Seconds())
		expiresAt.With(l).Set(float64(r.Expires.Unix()))
		version.With(l).Set(float64(r.Version))
		sigs.With(l).Set(float64(r.Signatures))
		threshold.With(l).Set(float64(r.Threshold))
		if r.BinsExpire != nil {
			binsExpiry.With(l).Set(r.BinsExpire.Sub(now).Seconds())
		}
	}
	fams, err := reg.Gather()
	if err != nil {
		return fmt.Errorf("status metrics: %w", err)
	}
	enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if err := enc.Encode(f); err != nil {
			return fmt.Errorf("writing status metrics: %w", err)
		}
	}
	return nil
}
