package proxy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/manifest"
	"github.com/p2sp/p2sp/metrics"
)

// A live stream is the directory of a live playlist the proxy serves.
// While players ask for the playlist, the proxy long-polls the tracker for
// the directory's registrations (GET /v1/streams/{dir}), so it hears of a
// new segment the moment the origin registers it, together with every
// other proxy of the audience, and prefetches it at once: the first of
// them to announce takes it from the origin, the others from it (see
// plan.Reader.Due).
const (
	// liveIdle: a stream whose playlist nobody asked for this long is no
	// longer watched.
	liveIdle = 30 * time.Second
	// maxLiveStreams bounds the streams watched at once.
	maxLiveStreams = 64
	// livePollTimeout bounds one long poll: the tracker answers within
	// 25 s.
	livePollTimeout = 30 * time.Second
	liveRetry       = time.Second
	// maxLiveAnswer bounds a poll's answer: 32 paths of at most 1 KiB.
	maxLiveAnswer = 1 << 20
	// viewerSegments: a player that asked for the playlist within this
	// many segment durations is watching (players ask every one).
	viewerSegments = 3
	// defaultSegment is the segment duration assumed until a playlist
	// names its target duration.
	defaultSegment = 2 * time.Second
)

// liveStream is one live stream's state and counters.
type liveStream struct {
	dir     string
	segment atomic.Int64 // target duration, ns
	used    atomic.Int64 // last playlist request, unix ns
	// bytes by source of its segments served; segments served (each
	// counted once); the newest segment's edge delay (ns).
	cacheBytes, peerBytes, originBytes atomic.Int64
	segments                           atomic.Int64
	edgeDelay                          atomic.Int64

	mu      sync.Mutex
	viewers map[string]time.Time // by player address: last playlist request
	// registered holds the segments the tracker said were registered,
	// and when it did; registeredNow is closed and replaced when more are.
	registered    map[string]time.Time
	registeredNow chan struct{}
	// window holds the segments the newest playlist names.
	window map[string]bool
}

// maxRegistered bounds the registered segments a stream remembers: many
// windows of live segments.
const maxRegistered = 512

// heard records the tracker's news of registered paths.
func (ls *liveStream) heard(paths []string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.registered)+len(paths) > maxRegistered {
		clear(ls.registered) // old segments, long out of every playlist
	}
	now := time.Now()
	for _, p := range paths {
		if _, ok := ls.registered[p]; !ok {
			ls.registered[p] = now
		}
	}
	close(ls.registeredNow)
	ls.registeredNow = make(chan struct{})
}

// awaitRegistered waits, at most half a segment duration (and a second),
// once the tracker named any of the stream's segments, until it said the newest segment of the live playlist p (body)
// was registered: a player reads a new playlist and asks for its new
// segment at once, and a segment the tracker does not know yet would be
// streamed from the origin alone, outside the swarm. It reports whether
// the segment is known.
func (ls *liveStream) awaitRegistered(ctx context.Context, p string, body []byte) bool {
	next := manifest.Next(p, body, 1)
	if len(next) != 1 {
		return true
	}
	seg, err := fileinfo.CleanPath(next[0])
	if err != nil {
		return true
	}
	timer := time.NewTimer(min(ls.segmentDuration()/2, time.Second))
	defer timer.Stop()
	for {
		ls.mu.Lock()
		_, known := ls.registered[seg]
		none := len(ls.registered) == 0
		changed := ls.registeredNow
		ls.mu.Unlock()
		if known {
			return true
		}
		if none {
			// The tracker named no segment of the stream yet: it may not
			// tell (another replica's registrations), or the stream has
			// not started; the playlist does not wait on it.
			return false
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// segmentDuration is the stream's target duration (ls may be nil: a
// stream the proxy does not follow).
func (ls *liveStream) segmentDuration() time.Duration {
	if ls == nil {
		return defaultSegment
	}
	if d := time.Duration(ls.segment.Load()); d > 0 {
		return d
	}
	return defaultSegment
}

// due is when segment p must be held whole: dueSegments segment
// durations after the tracker said it was registered (or after since, if
// it did not), so that the proxies of the swarm have that long to supply
// it before the origin is asked (plan.Reader.Due). ls may be nil (a
// stream the proxy does not follow).
func (ls *liveStream) due(p string, since time.Time) time.Time {
	if ls != nil {
		ls.mu.Lock()
		if at, ok := ls.registered[p]; ok {
			since = at
		}
		ls.mu.Unlock()
	}
	return since.Add(dueSegments * ls.segmentDuration())
}

// dueSegments: the origin, at 1.5 times the stream's bitrate, sends one
// copy of a segment in two thirds of a segment duration; an audience that
// starts together wants the three segments behind the edge at once, and
// new ones keep coming, so their one copy takes about three durations.
// Going to the origin sooner, while the proxy supplying the swarm is still
// receiving, only shares the origin's rate among more copies and makes
// every segment late. (A player starts three segments behind the edge:
// only a supplier that fails costs its viewers a wait.)
const dueSegments = 4

// playerDue is the due time of a player's request for p: that of a
// segment of a live stream the proxy follows and heard of, zero (no
// deadline but the player's own) for anything else.
func (s *Server) playerDue(p string) time.Time {
	ls := s.liveStreamOf(p)
	if ls == nil || manifest.ByName(p) {
		return time.Time{}
	}
	ls.mu.Lock()
	_, ok := ls.registered[p]
	ls.mu.Unlock()
	if !ok {
		return time.Time{}
	}
	return ls.due(p, time.Time{})
}

// viewerCount counts the players that asked lately, forgetting the others.
func (ls *liveStream) viewerCount(now time.Time) int {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for v, at := range ls.viewers {
		if now.Sub(at) > viewerSegments*ls.segmentDuration() {
			delete(ls.viewers, v)
		}
	}
	return len(ls.viewers)
}

// watchLive notes a request for the live playlist p from a player's
// connection remote (a player polls on one keep-alive connection), and
// starts following its stream if nobody does yet.
func (s *Server) watchLive(p string, body []byte, remote string) {
	dir := path.Dir(p)
	if dir == "." {
		return // the tracker's streams are directories
	}
	now := time.Now()
	s.mu.Lock()
	ls := s.live[dir]
	start := ls == nil && len(s.live) < maxLiveStreams
	if start {
		ls = &liveStream{dir: dir, viewers: map[string]time.Time{},
			registered: map[string]time.Time{}, registeredNow: make(chan struct{})}
		s.live[dir] = ls
	}
	if ls != nil {
		ls.used.Store(now.UnixNano())
	}
	s.mu.Unlock()
	if ls == nil {
		return
	}
	if d := manifest.TargetDuration(body); d > 0 {
		ls.segment.Store(int64(d))
	}
	window := map[string]bool{}
	for _, seg := range manifest.Next(p, body, maxRegistered) {
		if seg, err := fileinfo.CleanPath(seg); err == nil {
			window[seg] = true
		}
	}
	ls.mu.Lock()
	if len(ls.viewers) < maxLiveViewers {
		ls.viewers[remote] = now
	}
	ls.window = window
	ls.mu.Unlock()
	if start {
		// The first answer, at once, names the segments registered
		// before: a player asks for them next, and they must count as
		// the stream's (playerDue) from its first request on.
		after := ""
		if ev, err := s.pollLive(dir, ""); err == nil {
			ls.heard(ls.segmentsOf(ev.Paths))
			after = fmt.Sprint(ev.Next)
		}
		s.wg.Go(func() { s.followLive(ls, after) })
	}
}

// segmentsOf keeps the paths of ls's segments.
func (ls *liveStream) segmentsOf(paths []string) []string {
	var segs []string
	for _, p := range paths {
		if p, err := fileinfo.CleanPath(p); err == nil && path.Dir(p) == ls.dir && !manifest.ByName(p) {
			segs = append(segs, p)
		}
	}
	return segs
}

// maxLiveViewers bounds the players a stream remembers.
const maxLiveViewers = 4096

// liveStreamOf returns the stream the media path p belongs to, if the
// proxy follows it.
func (s *Server) liveStreamOf(p string) *liveStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.live[path.Dir(p)]
}

// followLive long-polls the tracker for ls's registrations after the
// cursor after (empty: it asks for one) and prefetches each new segment,
// until nobody asked for its playlist for liveIdle or
// the proxy closes.
func (s *Server) followLive(ls *liveStream, after string) {
	for {
		if s.ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		if time.Since(time.Unix(0, ls.used.Load())) > liveIdle {
			delete(s.live, ls.dir)
			s.mu.Unlock()
			// Nobody here watches any more: no segment of it is wanted.
			s.retireLive(ls, true)
			return
		}
		s.mu.Unlock()
		s.retireLive(ls, false)
		ev, err := s.pollLive(ls.dir, after)
		if err != nil {
			s.log.Debug("stream poll", "stream", ls.dir, "err", err)
			select {
			case <-s.ctx.Done():
			case <-time.After(liveRetry):
			}
			continue
		}
		segs := ls.segmentsOf(ev.Paths)
		ls.heard(segs)
		if after != "" {
			// (The first answer names what was registered before this
			// proxy watched: the playlist's prefetch has those.)
			for _, p := range segs {
				s.startPrefetch(p, ls)
			}
		}
		after = fmt.Sprint(ev.Next)
	}
}

// retireSegments: a live segment's torrent is closed once the segment
// was registered this many segment durations ago and the playlist no
// longer names it. Its audience fetched it within dueSegments of its
// registration, and a live event would otherwise keep a torrent, its
// announces and its peer connections per segment for as long as the cache
// holds the segment (1800 an hour of 2 s segments). The cache entry stays:
// a player seeking back (a DVR window) is served from it, or the torrent
// is opened again for it.
const retireSegments = 15

// errRetired closes the torrent of a segment long out of the window.
var errRetired = errors.New("a live segment long out of the playlist window")

// retireLive closes the torrents of ls's segments that no reader and no
// origin fetch holds and that were registered retireSegments durations
// ago and are out of the window (all: every one, the stream no longer
// followed), and forgets them.
func (s *Server) retireLive(ls *liveStream, all bool) {
	now := time.Now()
	var old []string
	ls.mu.Lock()
	for p, at := range ls.registered {
		if all || (now.Sub(at) > retireSegments*ls.segmentDuration() && !ls.window[p]) {
			old = append(old, p)
		}
	}
	ls.mu.Unlock()
	for _, p := range old {
		if s.retireIdle(p) {
			ls.mu.Lock()
			delete(ls.registered, p)
			ls.mu.Unlock()
		}
	}
}

// retireIdle closes the torrent of p's cached version if it is open and
// idle; false if it is in use (kept for a later round).
func (s *Server) retireIdle(p string) bool {
	e, ok := s.cache.Peek(p)
	if !ok {
		return true
	}
	ih := e.Info().InfoHash
	e.Release()
	s.bind.Lock()
	defer s.bind.Unlock()
	s.mu.Lock()
	f := s.files[ih]
	s.mu.Unlock()
	if f == nil {
		return true
	}
	f.mu.Lock()
	busy := len(f.readers) > 0 || len(f.runs) > 0
	f.mu.Unlock()
	if busy {
		return false
	}
	s.retire(ih, f, errRetired)
	return true
}

// liveEvents is the tracker's answer to a stream poll.
type liveEvents struct {
	Next  uint64   `json:"next"`
	Paths []string `json:"paths"`
}

// pollLive asks the tracker for dir's registrations after the cursor
// (empty: at once, for the cursor).
func (s *Server) pollLive(dir, after string) (*liveEvents, error) {
	ctx, cancel := context.WithTimeout(s.ctx, livePollTimeout)
	defer cancel()
	return s.tracker.streamEvents(ctx, dir, after)
}

// count adds n bytes of a segment (counters st), served from source, to
// the stream's counters.
func (ls *liveStream) count(st *fileStats, source string, n int64) {
	addBySource(source, n, &ls.cacheBytes, &ls.peerBytes, &ls.originBytes)
	if st.liveCounted.CompareAndSwap(false, true) {
		ls.segments.Add(1)
	}
}

// liveStatus is one stream's line in /v1/status.
type liveStatus struct {
	Stream string `json:"stream"`
	// Viewers asked for its playlist within the last three segment
	// durations.
	Viewers         int     `json:"viewers"`
	SegmentSeconds  float64 `json:"segment_seconds"`
	Segments        int64   `json:"segments"`
	CacheBytes      int64   `json:"cache_bytes"`
	PeerBytes       int64   `json:"peer_bytes"`
	OriginBytes     int64   `json:"origin_bytes"`
	EdgeDelaySecond float64 `json:"edge_delay_seconds"`
}

// liveStates snapshots the streams followed, by name.
func (s *Server) liveStates() []metrics.StreamState {
	s.mu.Lock()
	streams := make([]*liveStream, 0, len(s.live))
	for _, ls := range s.live {
		streams = append(streams, ls)
	}
	s.mu.Unlock()
	now := time.Now()
	out := make([]metrics.StreamState, 0, len(streams))
	for _, ls := range streams {
		out = append(out, metrics.StreamState{
			Stream: ls.dir, Viewers: ls.viewerCount(now), Segments: ls.segments.Load(),
			Bytes: map[string]int64{
				metrics.SourceCache: ls.cacheBytes.Load(), metrics.SourcePeer: ls.peerBytes.Load(),
				metrics.SourceOrigin: ls.originBytes.Load(),
			},
			EdgeDelay: time.Duration(ls.edgeDelay.Load()),
			Segment:   ls.segmentDuration(),
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Stream < out[j].Stream })
	return out
}

func liveStatuses(states []metrics.StreamState) []liveStatus {
	out := make([]liveStatus, 0, len(states))
	for _, st := range states {
		out = append(out, liveStatus{
			Stream: st.Stream, Viewers: st.Viewers, SegmentSeconds: st.Segment.Seconds(), Segments: st.Segments,
			CacheBytes: st.Bytes[metrics.SourceCache], PeerBytes: st.Bytes[metrics.SourcePeer],
			OriginBytes: st.Bytes[metrics.SourceOrigin], EdgeDelaySecond: st.EdgeDelay.Seconds(),
		})
	}
	return out
}
