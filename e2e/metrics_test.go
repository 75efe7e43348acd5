package e2e

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os/exec"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/testtool"
	"github.com/p2sp/p2sp/metrics"
)

// TestMetricsAfterStream: after a real stream through two proxies, what
// every component's /metrics says adds up with what the player received,
// each component is ready, and promtool finds nothing to say about any
// scrape.
func TestMetricsAfterStream(t *testing.T) {
	promtool := testtool.Require(t, "promtool")
	const size = 6<<20 + 4321
	c := start(t, demo.Config{Proxies: 2, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, "films/metered.bin", size)
	waitInfo(t, c, "films/metered.bin", "")

	// What each proxy's player received: the whole file through both
	// (the second can take pieces from the first), then a range again from
	// the first, whose cache now holds it.
	received := map[*demo.Service]int{}
	requests := map[*demo.Service]int{}
	for _, p := range c.Proxies {
		got := mustGet(t, streamURL(p, "films/metered.bin"), "", http.StatusOK)
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: bytes differ from the origin's", p.Name)
		}
		received[p] += len(got)
		requests[p]++
	}
	p1 := c.Proxies[0]
	waitComplete(t, p1, "films/metered.bin")
	got := mustGet(t, streamURL(p1, "films/metered.bin"), "bytes=1000000-2999999", http.StatusPartialContent)
	if !bytes.Equal(got, data[1000000:3000000]) {
		t.Fatal("range from the cache: bytes differ")
	}
	received[p1] += len(got)
	requests[p1]++

	// Bytes by source add up to what the players got. Cache hits are
	// counted when the kernel's copy returns, which may be just after the
	// client has read the last byte: wait for it.
	var originServed float64
	for _, p := range c.Proxies {
		var m scrape
		ok := eventually(t, func() bool {
			m = scrapeMetrics(t, p.URL)
			return m.sum("p2sp_proxy_bytes_total") == float64(received[p])
		})
		if !ok {
			t.Errorf("%s: p2sp_proxy_bytes_total adds up to %v (cache %v, peer %v, origin %v), want the %d bytes received", p.Name,
				m.sum("p2sp_proxy_bytes_total"), m.value("p2sp_proxy_bytes_total", metrics.SourceCache),
				m.value("p2sp_proxy_bytes_total", metrics.SourcePeer), m.value("p2sp_proxy_bytes_total", metrics.SourceOrigin), received[p])
		}
		originServed += m.value("p2sp_proxy_bytes_total", metrics.SourceOrigin)
		t.Logf("%s: cache %s, peer %s, origin %s; fetched from origin %s; uploaded %s; pieces verified peer %v origin %v",
			p.Name, mib(m.value("p2sp_proxy_bytes_total", metrics.SourceCache)), mib(m.value("p2sp_proxy_bytes_total", metrics.SourcePeer)),
			mib(m.value("p2sp_proxy_bytes_total", metrics.SourceOrigin)), mib(m.value("p2sp_proxy_origin_fetched_bytes_total", "")),
			mib(m.value("p2sp_proxy_uploaded_bytes_total", "")), m.value("p2sp_proxy_pieces_verified_total", metrics.SourcePeer),
			m.value("p2sp_proxy_pieces_verified_total", metrics.SourceOrigin))
		if n := m.histogramCount("p2sp_proxy_time_to_first_byte_seconds"); n != uint64(requests[p]) {
			t.Errorf("%s: %d time-to-first-byte observations, want one per request (%d)", p.Name, n, requests[p])
		}
		if v := m.sum("p2sp_proxy_pieces_verified_total"); v == 0 {
			t.Errorf("%s: no piece verified", p.Name)
		}
		if v := m.value("p2sp_proxy_cache_bytes", ""); v < size {
			t.Errorf("%s: p2sp_proxy_cache_bytes %v, want at least the file's %d", p.Name, v, size)
		}
		if v := m.value("p2sp_proxy_cache_capacity_bytes", ""); v != 1<<30 {
			t.Errorf("%s: p2sp_proxy_cache_capacity_bytes %v, want the default 1 GiB", p.Name, v)
		}
	}
	if v := scrapeMetrics(t, p1.URL).value("p2sp_proxy_bytes_total", metrics.SourceCache); v < 2000000 {
		t.Errorf("%s: %v bytes from the cache, want at least the 2000000 of the repeated range", p1.Name, v)
	}

	om := scrapeMetrics(t, c.Origin.URL)
	if sent := om.value("p2sp_origin_sent_bytes_total", ""); sent < originServed || sent == 0 {
		t.Errorf("origin sent %v bytes, fewer than the %v the proxies served as origin bytes", sent, originServed)
	}
	if v := om.value("p2sp_origin_requests_total", "206") + om.value("p2sp_origin_requests_total", "200"); v == 0 {
		t.Error("origin counted no successful /files request")
	}

	var tm scrape
	if !eventually(t, func() bool {
		tm = scrapeMetrics(t, c.Tracker.URL)
		return tm.value("p2sp_tracker_announces_total", metrics.AnnounceOK) > 0
	}) {
		t.Error("tracker counted no successful announce")
	}
	// The demo's sample media and the test's file: what the origin
	// registered is what the tracker holds.
	if reg, tor := om.value("p2sp_origin_files_registered", ""), tm.value("p2sp_tracker_torrents", ""); reg < 1 || reg != tor {
		t.Errorf("origin registered %v files, tracker holds %v torrents; want the same, at least 1", reg, tor)
	}

	for _, s := range append([]*demo.Service{c.Tracker, c.Origin}, c.Proxies...) {
		if resp, body, err := get(t, s.URL+"/readyz", ""); err != nil || resp.StatusCode != http.StatusOK {
			t.Errorf("%s /readyz: %v %v %s", s.Name, resp, err, body)
		}
		raw := mustGet(t, s.URL+"/metrics", "", http.StatusOK)
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(raw)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("%s: promtool check metrics: %v\n%s", s.Name, err, out)
		}
	}
}

// scrape is one /metrics answer, parsed.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics fetches and parses base's /metrics over HTTP.
func scrapeMetrics(t *testing.T, base string) scrape {
	t.Helper()
	raw := mustGet(t, base+"/metrics", "", http.StatusOK)
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(io.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("parse %s/metrics: %v", base, err)
	}
	return mfs
}

// value is the value of name's series whose one label has value label
// ("" for an unlabelled metric); 0 if there is none.
func (s scrape) value(name, label string) float64 {
	mf, ok := s[name]
	if !ok {
		return 0
	}
	for _, m := range mf.GetMetric() {
		ls := m.GetLabel()
		if (label == "" && len(ls) == 0) || (len(ls) == 1 && ls[0].GetValue() == label) {
			return metricValue(m)
		}
	}
	return 0
}

// sum adds name's series up.
func (s scrape) sum(name string) float64 {
	var v float64
	for _, m := range s[name].GetMetric() {
		v += metricValue(m)
	}
	return v
}

func (s scrape) histogramCount(name string) uint64 {
	mf, ok := s[name]
	if !ok || len(mf.GetMetric()) != 1 {
		return 0
	}
	return mf.GetMetric()[0].GetHistogram().GetSampleCount()
}

// eventually polls cond for up to ten seconds.
func eventually(t *testing.T, cond func() bool) bool {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(deadline) || t.Context().Err() != nil {
			return false
		}
	}
}

// TestMetricsStalls: an origin too slow for the player makes reads wait
// past the stall threshold after the first byte, and the proxy counts and
// times those stalls.
func TestMetricsStalls(t *testing.T) {
	// 64 kB/s hands out one 32 KiB chunk every half second: each read
	// after the first byte waits about that long.
	c := start(t, demo.Config{Proxies: 1, RateLimit: 64_000, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, "slow.bin", 512<<10)
	waitInfo(t, c, "slow.bin", "")
	p := c.Proxies[0]
	got := mustGet(t, streamURL(p, "slow.bin"), "bytes=0-196607", http.StatusPartialContent)
	if !bytes.Equal(got, data[:196608]) {
		t.Fatal("bytes differ from the origin's")
	}
	m := scrapeMetrics(t, p.URL)
	stalls := m.value("p2sp_proxy_stalls_total", "")
	if stalls == 0 {
		t.Error("no stall counted while the origin trickled")
	}
	if n := m.histogramCount("p2sp_proxy_stall_duration_seconds"); float64(n) != stalls {
		t.Errorf("%d stall durations for %v stalls, want one each", n, stalls)
	}
	if n := m.histogramCount("p2sp_proxy_time_to_first_byte_seconds"); n != 1 {
		t.Errorf("%d time-to-first-byte observations, want 1", n)
	}
	t.Logf("%v stalls", stalls)
}
