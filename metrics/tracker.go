package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// Announce results, the values of p2sp_tracker_announces_total's result
// label.
const (
	AnnounceOK           = "ok"
	AnnounceFailed       = "failed"
	AnnounceUnregistered = "unregistered"
	AnnounceRateLimited  = "rate_limited"
	// AnnounceUnauthorized: no passkey, or one the tracker never issued
	// or has revoked.
	AnnounceUnauthorized = "unauthorized"
)

// ReportKinds are the kinds of problem a proxy may report to the tracker,
// the values of p2sp_tracker_reports_total's kind label.
var ReportKinds = []string{fileinfo.ReportUnknownFile, fileinfo.ReportVerificationFailed, fileinfo.ReportHashMismatch}

// Tracker holds the tracker's collectors.
type Tracker struct {
	// Announces counts announce requests by result.
	Announces *prometheus.CounterVec
	// Torrents is the number of registered files.
	Torrents prometheus.Gauge
	// Peers is the number of live peers over all swarms.
	Peers prometheus.Gauge
	// Reports counts accepted proxy reports by kind.
	Reports *prometheus.CounterVec
}

// NewTracker creates the tracker's collectors and registers them on reg,
// reusing any that an earlier NewTracker registered there.
// Every label value starts at zero, so that each series exists (and rate()
// works) before the first event.
func NewTracker(reg *prometheus.Registry) *Tracker {
	m := &Tracker{
		Announces: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2sp_tracker_announces_total",
			Help: "BitTorrent announce requests, by result.",
		}, []string{"result"}),
		Torrents: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2sp_tracker_torrents",
			Help: "Files registered with the tracker.",
		}),
		Peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2sp_tracker_peers",
			Help: "Live peers over all swarms.",
		}),
		Reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2sp_tracker_reports_total",
			Help: "Problem reports accepted from proxies, by kind.",
		}, []string{"kind"}),
	}
	for _, r := range []string{AnnounceOK, AnnounceFailed, AnnounceUnregistered, AnnounceRateLimited, AnnounceUnauthorized} {
		m.Announces.WithLabelValues(r)
	}
	for _, k := range ReportKinds {
		m.Reports.WithLabelValues(k)
	}
	m.Announces = registerOrReuse(reg, m.Announces)
	m.Torrents = registerOrReuse(reg, m.Torrents)
	m.Peers = registerOrReuse(reg, m.Peers)
	m.Reports = registerOrReuse(reg, m.Reports)
	return m
}
