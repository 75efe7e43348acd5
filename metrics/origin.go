package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// OriginCodes are the statuses the origin's file handler answers with, the
// values of p2sp_origin_requests_total's code label; any other status is
// counted under its class ("2xx", "4xx", "5xx").
var OriginCodes = []int{200, 206, 304, 400, 404, 412, 416, 500}

// Origin holds the origin's collectors.
type Origin struct {
	// SentBytes counts response body bytes written to clients of /files,
	// error answers included.
	SentBytes prometheus.Counter
	// Requests counts /files requests by status code.
	Requests *prometheus.CounterVec
	// FilesRegistered is the number of files whose latest hash the
	// tracker accepted.
	FilesRegistered prometheus.Gauge
	// HashBacklog is the number of files waiting to be hashed or
	// registered, the one in progress included.
	HashBacklog prometheus.Gauge
	// HashedBytes counts bytes read by the hasher.
	HashedBytes prometheus.Counter
	// Reports counts accepted proxy reports by kind.
	Reports *prometheus.CounterVec
}

// NewOrigin creates the origin's collectors and registers them on reg,
// reusing any that an earlier NewOrigin registered there.
// Every label value starts at zero, so that each series exists before the
// first event.
func NewOrigin(reg *prometheus.Registry) *Origin {
	m := &Origin{
		SentBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2sp_origin_sent_bytes_total",
			Help: "Response body bytes sent to clients of /files.",
		}),
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2sp_origin_requests_total",
			Help: "Requests for /files, by status code (or status class for unusual codes).",
		}, []string{"code"}),
		FilesRegistered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2sp_origin_files_registered",
			Help: "Files whose latest hash the tracker accepted.",
		}),
		HashBacklog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "p2sp_origin_hash_backlog_files",
			Help: "Files waiting to be hashed or registered, including the one in progress.",
		}),
		HashedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2sp_origin_hashed_bytes_total",
			Help: "Bytes of media read by the hasher.",
		}),
		Reports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2sp_origin_reports_total",
			Help: "Problem reports accepted from proxies, by kind.",
		}, []string{"kind"}),
	}
	for _, c := range OriginCodes {
		m.Requests.WithLabelValues(strconv.Itoa(c))
	}
	for _, k := range ReportKinds {
		m.Reports.WithLabelValues(k)
	}
	m.SentBytes = registerOrReuse(reg, m.SentBytes)
	m.Requests = registerOrReuse(reg, m.Requests)
	m.FilesRegistered = registerOrReuse(reg, m.FilesRegistered)
	m.HashBacklog = registerOrReuse(reg, m.HashBacklog)
	m.HashedBytes = registerOrReuse(reg, m.HashedBytes)
	m.Reports = registerOrReuse(reg, m.Reports)
	return m
}

// ObserveRequest counts one /files request answered with status code.
func (m *Origin) ObserveRequest(code int) {
	m.Requests.WithLabelValues(originCodeLabel(code)).Inc()
}

// originCodeLabel keeps the code label's values bounded: the codes the
// origin means to answer with are exact, anything else is its class.
func originCodeLabel(code int) string {
	for _, c := range OriginCodes {
		if c == code {
			return strconv.Itoa(c)
		}
	}
	if code < 100 || code > 599 {
		return "5xx"
	}
	return strconv.Itoa(code/100) + "xx"
}
