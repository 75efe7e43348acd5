package metrics

import (
	"fmt"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRestartOnOneRegistry(t *testing.T) {
	// A role restarted in the same process on the same registry (tests,
	// the demo) keeps counting into the series it had, and the registry
	// holds each series once.
	for _, tc := range []struct {
		name string
		// reports makes the role's collectors on a registry and returns
		// its reports counter.
		reports func(*prometheus.Registry) *prometheus.CounterVec
		metric  string
	}{
		{"origin", func(reg *prometheus.Registry) *prometheus.CounterVec { return NewOrigin(reg).Reports }, "p2sp_origin_reports_total"},
		{"tracker", func(reg *prometheus.Registry) *prometheus.CounterVec { return NewTracker(reg).Reports }, "p2sp_tracker_reports_total"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := NewRegistry()
			tc.reports(reg).WithLabelValues("hash_mismatch").Inc()
			again := tc.reports(reg)
			again.WithLabelValues("hash_mismatch").Inc()
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			var series []string
			for _, mf := range mfs {
				if mf.GetName() != tc.metric {
					continue
				}
				for _, m := range mf.GetMetric() {
					series = append(series, fmt.Sprintf("%s=%v", m.GetLabel()[0].GetValue(), m.GetCounter().GetValue()))
				}
			}
			want := []string{"hash_mismatch=2", "unknown_file=0", "verification_failed=0"}
			if !slices.Equal(series, want) {
				t.Errorf("%s: %v, want %v", tc.metric, series, want)
			}
		})
	}
}
