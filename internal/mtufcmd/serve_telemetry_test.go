package mtufcmd

import (
	"net/http/httptest"
	"testing"
)

func TestRepoRequestKind(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/metadata/timestamp.json":             "timestamp",
		"/metadata/3.root.json":                "root",
		"/metadata/7.snapshot.json":            "snapshot",
		"/metadata/2.targets.json":             "targets",
		"/metadata/1.measurements.json":        "delegated",
		"/metadata/4.measurements-bin-0a.json": "delegated",
		"/targets/cli/v1/linux-amd64/ab.mtuf":  "target",
		"/metrics":                             "metrics",
		"/metadata/../targets/x":               "target",
		"/metadata/root.json":                  "other",
		"/workspace.json":                      "other",
		"/":                                    "other",
	} {
		if got := repoRequestKind(httptest.NewRequest("GET", path, nil)); got != want {
			t.Errorf("%s: kind %q, want %q", path, got, want)
		}
	}
}
