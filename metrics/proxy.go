package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Sources of the bytes a proxy serves to players.
const (
	SourceCache  = "cache"
	SourcePeer   = "peer"
	SourceOrigin = "origin"
)

// StallThreshold is how long a player's read must wait for data to count
// as a stall: shorter waits are hidden by the player's buffer, longer ones
// are what viewers notice.
const StallThreshold = 250 * time.Millisecond

// Proxy holds the proxy's collectors.
type Proxy struct {
	// BytesServed counts bytes sent to players by where they came from.
	BytesServed *prometheus.CounterVec
	// OriginFetchedBytes counts bytes the proxy fetched from origins,
	// served or not.
	OriginFetchedBytes prometheus.Counter
	// PiecesVerified counts pieces that passed their SHA-1, by supplier.
	// The proxy counts what it verifies itself (the origin's pieces); the
	// swarm's own verifications (ProxyState.PeerPiecesVerified) are added
	// at each scrape.
	PiecesVerified *prometheus.CounterVec
	// VerificationFailures counts pieces or files that failed a hash check,
	// by supplier; the swarm's failures (ProxyState.PeerVerificationFailures)
	// are added at each scrape.
	VerificationFailures *prometheus.CounterVec
	// TimeToFirstByte observes, for each response with a body, the time
	// from the request's arrival to its first body byte being available.
	TimeToFirstByte prometheus.Histogram
	// Stalls counts player reads that waited longer than StallThreshold.
	Stalls prometheus.Counter
	// StallDuration observes how long each stall lasted.
	StallDuration prometheus.Histogram
	// OriginFailovers counts origins given up on for another, by where the
	// request was (kind): FailoverRequest (it went to the next origin) or
	// FailoverBody (the body went on from another origin mid-way).
	OriginFailovers *prometheus.CounterVec

	state *proxyState
}

// OriginFailovers labels.
const (
	FailoverRequest = "request"
	FailoverBody    = "body"
)

// ProxyState is a snapshot of what the proxy holds, read once per scrape.
// Its counters are totals since the proxy started and never decrease.
type ProxyState struct {
	// Peers is the number of connected peers over all open torrents.
	Peers int
	// BannedPeers is the number of peer IPs banned for bad data.
	BannedPeers int
	// CacheBytes and CacheCapacity are the cache's use and bound.
	CacheBytes, CacheCapacity int64
	// CacheEntries is the number of files in the cache.
	CacheEntries int
	// CacheEvictions counts entries evicted to make room.
	CacheEvictions int64
	// UploadedBytes counts piece data sent to peers.
	UploadedBytes int64
	// PeerPiecesVerified and PeerVerificationFailures count pieces peers
	// supplied that passed, or failed, their hash check.
	PeerPiecesVerified, PeerVerificationFailures int64
	// Streams are the live streams the proxy serves.
	Streams []StreamState
}

// StreamState is one live stream (a playlist's directory) as a proxy
// serves it.
type StreamState struct {
	Stream string
	// Segment is its segments' target duration.
	Segment time.Duration
	// Viewers is how many players asked for its playlist lately.
	Viewers int
	// Bytes counts its segments' bytes served to players, by source
	// (SourceCache, SourcePeer, SourceOrigin); Segments the segment
	// responses.
	Bytes    map[string]int64
	Segments int64
	// EdgeDelay is, for the stream's newest segment, the time from the
	// proxy hearing of it to holding it whole: how far behind the origin's
	// live edge the proxy can answer.
	EdgeDelay time.Duration
}

// NewProxy creates the proxy's collectors and registers them on reg,
// reusing any that an earlier NewProxy registered there. Every labelled
// series exists from the start, at zero; the state-derived ones read zero
// until SetState is called.
func NewProxy(reg *prometheus.Registry) *Proxy {
	m := &Proxy{
		BytesServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2sp_proxy_bytes_total",
			Help: "Bytes served to players, by where they came from.",
		}, []string{"source"}),
		OriginFetchedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2sp_proxy_origin_fetched_bytes_total",
			Help: "Bytes fetched from origins by the proxy.",
		}),
		TimeToFirstByte: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "p2sp_proxy_time_to_first_byte_seconds",
			Help:    "Time from a stream request's arrival to its first body byte.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		Stalls: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2sp_proxy_stalls_total",
			Help: "Player reads that waited longer than 250 ms for data after the first byte.",
		}),
		StallDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "p2sp_proxy_stall_duration_seconds",
			Help:    "How long each stall (a player read waiting longer than 250 ms) lasted.",
			Buckets: []float64{.25, .5, 1, 2, 4, 8, 16, 32},
		}),
		OriginFailovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2sp_proxy_origin_failovers_total",
			Help: "Origins given up on for another: before a response (request) or mid-body (body).",
		}, []string{"kind"}),
	}
	for _, k := range []string{FailoverRequest, FailoverBody} {
		m.OriginFailovers.WithLabelValues(k)
	}
	for _, s := range []string{SourceCache, SourcePeer, SourceOrigin} {
		m.BytesServed.WithLabelValues(s)
	}
	m.BytesServed = registerOrReuse(reg, m.BytesServed)
	m.OriginFetchedBytes = registerOrReuse(reg, m.OriginFetchedBytes)
	m.TimeToFirstByte = registerOrReuse(reg, m.TimeToFirstByte)
	m.Stalls = registerOrReuse(reg, m.Stalls)
	m.StallDuration = registerOrReuse(reg, m.StallDuration)
	m.OriginFailovers = registerOrReuse(reg, m.OriginFailovers)
	m.state = registerOrReuse(reg, newProxyState())
	m.PiecesVerified, m.VerificationFailures = m.state.verified, m.state.failed
	return m
}

// SetState installs the function each scrape reads the proxy's state
// from; a proxy restarted on the same registry replaces its predecessor's.
func (m *Proxy) SetState(read func() ProxyState) { m.state.read.Store(&read) }

// ObserveWait records a player read that waited d for data, after the
// response's first byte: one past StallThreshold is a stall.
func (m *Proxy) ObserveWait(d time.Duration) {
	if d <= StallThreshold {
		return
	}
	m.Stalls.Inc()
	m.StallDuration.Observe(d.Seconds())
}

// proxyState exports what the proxy holds (peers, bans, the cache, the
// swarm's totals) from one snapshot per scrape, and the verification
// counters, where the proxy's own counts and the swarm's meet in one
// series per supplier.
type proxyState struct {
	read             atomic.Pointer[func() ProxyState]
	verified, failed *prometheus.CounterVec // not registered: exported here

	peers, banned, cacheBytes, cacheCapacity, cacheEntries *prometheus.Desc
	evictions, uploaded, verifiedDesc, failedDesc          *prometheus.Desc
	streamViewers, streamBytes, streamSegments, edgeDelay  *prometheus.Desc
}

func newProxyState() *proxyState {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	s := &proxyState{
		verified: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2sp_proxy_pieces_verified_total"}, []string{"source"}),
		failed:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "p2sp_proxy_verification_failures_total"}, []string{"source"}),

		peers:         desc("p2sp_proxy_peers", "Connected peers over all open torrents."),
		banned:        desc("p2sp_proxy_banned_peers", "Peer IPs banned for sending data that failed its hash."),
		cacheBytes:    desc("p2sp_proxy_cache_bytes", "Bytes the cache's entries take."),
		cacheCapacity: desc("p2sp_proxy_cache_capacity_bytes", "The cache's size bound in bytes."),
		cacheEntries:  desc("p2sp_proxy_cache_entries", "Files in the cache."),
		evictions:     desc("p2sp_proxy_cache_evictions_total", "Cache entries evicted to make room."),
		uploaded:      desc("p2sp_proxy_uploaded_bytes_total", "Piece data bytes uploaded to peers."),
		verifiedDesc:  desc("p2sp_proxy_pieces_verified_total", "Pieces that passed their SHA-1 check, by supplier.", "source"),
		failedDesc:    desc("p2sp_proxy_verification_failures_total", "Pieces or whole files that failed a hash check, by supplier.", "source"),

		streamViewers:  desc("p2sp_proxy_stream_viewers", "Players that asked for a live stream's playlist lately.", "stream"),
		streamBytes:    desc("p2sp_proxy_stream_bytes_total", "A live stream's segment bytes served to players, by where they came from.", "stream", "source"),
		streamSegments: desc("p2sp_proxy_stream_segments_total", "A live stream's segment responses.", "stream"),
		edgeDelay:      desc("p2sp_proxy_stream_edge_delay_seconds", "For a live stream's newest segment, the time from the proxy hearing of it to holding it whole.", "stream"),
	}
	for _, src := range []string{SourcePeer, SourceOrigin} {
		s.verified.WithLabelValues(src)
		s.failed.WithLabelValues(src)
	}
	return s
}

var _ prometheus.Collector = (*proxyState)(nil)

func (s *proxyState) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{s.peers, s.banned, s.cacheBytes, s.cacheCapacity, s.cacheEntries,
		s.evictions, s.uploaded, s.verifiedDesc, s.failedDesc, s.streamViewers, s.streamBytes, s.streamSegments, s.edgeDelay} {
		ch <- d
	}
}

func (s *proxyState) Collect(ch chan<- prometheus.Metric) {
	var st ProxyState
	if read := s.read.Load(); read != nil {
		st = (*read)()
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge(s.peers, float64(st.Peers))
	gauge(s.banned, float64(st.BannedPeers))
	gauge(s.cacheBytes, float64(st.CacheBytes))
	gauge(s.cacheCapacity, float64(st.CacheCapacity))
	gauge(s.cacheEntries, float64(st.CacheEntries))
	counter(s.evictions, float64(st.CacheEvictions))
	counter(s.uploaded, float64(st.UploadedBytes))
	for _, ls := range st.Streams {
		gauge(s.streamViewers, float64(ls.Viewers), ls.Stream)
		for _, src := range []string{SourceCache, SourcePeer, SourceOrigin} {
			counter(s.streamBytes, float64(ls.Bytes[src]), ls.Stream, src)
		}
		counter(s.streamSegments, float64(ls.Segments), ls.Stream)
		gauge(s.edgeDelay, ls.EdgeDelay.Seconds(), ls.Stream)
	}
	swarm := map[*prometheus.Desc]int64{s.verifiedDesc: st.PeerPiecesVerified, s.failedDesc: st.PeerVerificationFailures}
	for d, vec := range map[*prometheus.Desc]*prometheus.CounterVec{s.verifiedDesc: s.verified, s.failedDesc: s.failed} {
		for _, src := range []string{SourcePeer, SourceOrigin} {
			v := counterValue(vec.WithLabelValues(src))
			if src == SourcePeer {
				v += float64(swarm[d])
			}
			counter(d, v, src)
		}
	}
}

// counterValue reads a counter's current value.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
