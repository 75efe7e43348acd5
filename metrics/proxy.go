package metrics

import "github.com/prometheus/client_golang/prometheus"

// Sources of the bytes a proxy serves to players.
const (
	SourceCache  = "cache"
	SourcePeer   = "peer"
	SourceOrigin = "origin"
)

// Proxy holds the proxy's collectors.
type Proxy struct {
	// BytesServed counts bytes sent to players by where they came from.
	BytesServed *prometheus.CounterVec
	// OriginFetchedBytes counts bytes the proxy fetched from origins,
	// served or not.
	OriginFetchedBytes prometheus.Counter
	// PiecesVerified counts pieces that passed their SHA-1, by supplier.
	PiecesVerified *prometheus.CounterVec
	// VerificationFailures counts pieces or files that failed a hash check,
	// by supplier.
	VerificationFailures *prometheus.CounterVec
}

// NewProxy registers the proxy's collectors on reg. Every labelled series
// exists from the start, at zero.
func NewProxy(reg prometheus.Registerer) *Proxy {
	m := &Proxy{
		BytesServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2sp_proxy_bytes_total",
			Help: "Bytes served to players, by where they came from.",
		}, []string{"source"}),
		OriginFetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2sp_proxy_origin_fetched_bytes_total",
			Help: "Bytes fetched from origins by the proxy.",
		}),
		PiecesVerified: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2sp_proxy_pieces_verified_total",
			Help: "Pieces that passed their SHA-1 check, by supplier.",
		}, []string{"source"}),
		VerificationFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2sp_proxy_verification_failures_total",
			Help: "Pieces or whole files that failed a hash check, by supplier.",
		}, []string{"source"}),
	}
	for _, s := range []string{SourceCache, SourcePeer, SourceOrigin} {
		m.BytesServed.WithLabelValues(s)
	}
	for _, s := range []string{SourcePeer, SourceOrigin} {
		m.PiecesVerified.WithLabelValues(s)
		m.VerificationFailures.WithLabelValues(s)
	}
	reg.MustRegister(m.BytesServed, m.OriginFetchedBytes, m.PiecesVerified, m.VerificationFailures)
	return m
}
