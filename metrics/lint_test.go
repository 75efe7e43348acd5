package metrics

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// roles registers each role's collectors on a fresh registry.
var roles = []struct {
	name     string
	register func(*prometheus.Registry)
}{
	{"origin", func(reg *prometheus.Registry) { NewOrigin(reg) }},
	{"tracker", func(reg *prometheus.Registry) { NewTracker(reg) }},
	{"proxy", func(reg *prometheus.Registry) { NewProxy(reg) }},
}

func TestLintClean(t *testing.T) {
	// promtool check metrics runs the same linter (promlint) on a scrape:
	// operators see no complaint from either.
	for _, r := range roles {
		t.Run(r.name, func(t *testing.T) {
			reg := NewRegistry()
			r.register(reg)
			problems, err := lint(reg)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range problems {
				t.Errorf("%s: %s", p.Metric, p.Text)
			}
		})
	}
}

// series lists "name{label=value}" for every series of reg whose name
// starts with p2sp_.
func series(t *testing.T, reg *prometheus.Registry) map[string]*dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.Metric{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[key] = m
		}
	}
	return out
}

func TestSeriesExistFromStart(t *testing.T) {
	// Dashboards and alerts never see a missing series: every labelled
	// series they use is there, at zero, before the first event, and the
	// Go runtime and process collectors are kept.
	for _, tc := range []struct {
		role string
		want []string
	}{
		{"origin", []string{
			"p2sp_origin_sent_bytes_total", "p2sp_origin_requests_total{code=200}", "p2sp_origin_requests_total{code=206}",
			"p2sp_origin_requests_total{code=416}", "p2sp_origin_files_registered", "p2sp_origin_hash_backlog_files",
		}},
		{"tracker", []string{
			"p2sp_tracker_announces_total{result=ok}", "p2sp_tracker_announces_total{result=failed}",
			"p2sp_tracker_announces_total{result=unregistered}", "p2sp_tracker_announces_total{result=rate_limited}",
			"p2sp_tracker_torrents", "p2sp_tracker_peers", "p2sp_tracker_reports_total{kind=verification_failed}",
		}},
		{"proxy", []string{
			"p2sp_proxy_bytes_total{source=cache}", "p2sp_proxy_bytes_total{source=peer}", "p2sp_proxy_bytes_total{source=origin}",
			"p2sp_proxy_pieces_verified_total{source=peer}", "p2sp_proxy_pieces_verified_total{source=origin}",
			"p2sp_proxy_verification_failures_total{source=peer}", "p2sp_proxy_verification_failures_total{source=origin}",
			"p2sp_proxy_time_to_first_byte_seconds", "p2sp_proxy_stalls_total", "p2sp_proxy_stall_duration_seconds",
			"p2sp_proxy_peers", "p2sp_proxy_banned_peers", "p2sp_proxy_cache_bytes", "p2sp_proxy_cache_capacity_bytes",
			"p2sp_proxy_cache_entries", "p2sp_proxy_cache_evictions_total", "p2sp_proxy_uploaded_bytes_total",
			"p2sp_proxy_origin_fetched_bytes_total",
		}},
	} {
		t.Run(tc.role, func(t *testing.T) {
			reg := NewRegistry()
			for _, r := range roles {
				if r.name == tc.role {
					r.register(reg)
				}
			}
			got := series(t, reg)
			for _, name := range append(tc.want, "go_goroutines", "process_start_time_seconds") {
				m, ok := got[name]
				if !ok {
					t.Errorf("%s missing", name)
					continue
				}
				if v := value(m); v != 0 && name != "go_goroutines" && name != "process_start_time_seconds" {
					t.Errorf("%s = %v at start, want 0", name, v)
				}
			}
		})
	}
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Histogram != nil:
		return float64(m.Histogram.GetSampleCount())
	}
	return 0
}

func TestProxyState(t *testing.T) {
	// The state a proxy reports at a scrape shows in its series; the
	// verification counters add the proxy's own counts and the swarm's;
	// a proxy restarted on the same registry replaces the state reader.
	reg := NewRegistry()
	m := NewProxy(reg)
	m.SetState(func() ProxyState { return ProxyState{Peers: 99} })
	m.PiecesVerified.WithLabelValues(SourceOrigin).Add(3)
	m.VerificationFailures.WithLabelValues(SourceOrigin).Inc()

	m = NewProxy(reg)
	m.PiecesVerified.WithLabelValues(SourceOrigin).Add(2)
	m.SetState(func() ProxyState {
		return ProxyState{
			Peers: 4, BannedPeers: 1, CacheBytes: 1000, CacheCapacity: 4096, CacheEntries: 2, CacheEvictions: 5,
			UploadedBytes: 7 << 20, PeerPiecesVerified: 10, PeerVerificationFailures: 2,
		}
	})
	got := series(t, reg)
	for name, want := range map[string]float64{
		"p2sp_proxy_peers":                                      4,
		"p2sp_proxy_banned_peers":                               1,
		"p2sp_proxy_cache_bytes":                                1000,
		"p2sp_proxy_cache_capacity_bytes":                       4096,
		"p2sp_proxy_cache_entries":                              2,
		"p2sp_proxy_cache_evictions_total":                      5,
		"p2sp_proxy_uploaded_bytes_total":                       7 << 20,
		"p2sp_proxy_pieces_verified_total{source=peer}":         10,
		"p2sp_proxy_pieces_verified_total{source=origin}":       5,
		"p2sp_proxy_verification_failures_total{source=peer}":   2,
		"p2sp_proxy_verification_failures_total{source=origin}": 1,
	} {
		m, ok := got[name]
		if !ok {
			t.Errorf("%s missing", name)
			continue
		}
		if v := value(m); v != want {
			t.Errorf("%s = %v, want %v", name, v, want)
		}
	}
	if problems, err := lint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint after restart: %v %v", problems, err)
	}
}

func TestObserveWait(t *testing.T) {
	// Only waits past the threshold are stalls, and each is timed.
	for _, tc := range []struct {
		waits      []time.Duration
		wantStalls float64
		wantSum    float64
	}{
		{nil, 0, 0},
		{[]time.Duration{time.Millisecond, StallThreshold}, 0, 0},
		{[]time.Duration{300 * time.Millisecond, 10 * time.Millisecond, 2 * time.Second}, 2, 2.3},
	} {
		reg := NewRegistry()
		m := NewProxy(reg)
		for _, d := range tc.waits {
			m.ObserveWait(d)
		}
		got := series(t, reg)
		if v := value(got["p2sp_proxy_stalls_total"]); v != tc.wantStalls {
			t.Errorf("%v: stalls %v, want %v", tc.waits, v, tc.wantStalls)
		}
		h := got["p2sp_proxy_stall_duration_seconds"].GetHistogram()
		if float64(h.GetSampleCount()) != tc.wantStalls || !near(h.GetSampleSum(), tc.wantSum) {
			t.Errorf("%v: stall durations %d summing %v, want %v summing %v", tc.waits, h.GetSampleCount(), h.GetSampleSum(), tc.wantStalls, tc.wantSum)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestNoUnboundedLabels(t *testing.T) {
	// Labels are only the few that take a fixed set of values.
	allowed := []string{"code", "result", "kind", "source"}
	for _, r := range roles {
		reg := prometheus.NewRegistry()
		r.register(reg)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				for _, l := range m.GetLabel() {
					if !slices.Contains(allowed, l.GetName()) && l.GetName() != "le" {
						t.Errorf("%s: label %q", mf.GetName(), l.GetName())
					}
				}
			}
		}
	}
}

// lint runs promlint, the linter of promtool check metrics, on what reg
// gathers.
func lint(reg *prometheus.Registry) ([]promlint.Problem, error) {
	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	return promlint.NewWithMetricFamilies(mfs).Lint()
}
