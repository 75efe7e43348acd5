package proxy

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2sp/p2sp/internal/cache"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/plan"
	"github.com/p2sp/p2sp/internal/swarm"
	"github.com/p2sp/p2sp/metrics"
)

// file is one file version (infohash) the proxy holds open: its cache
// entry, its torrent, and the scheduler that feeds the planner (package
// plan) and carries out what it decides. It lives until the cache evicts
// the entry, seeding in the meantime.
type file struct {
	s       *Server
	info    *fileinfo.Info
	entry   *cache.Entry
	torrent *swarm.Torrent
	stats   *fileStats

	// ctx ends when the file is dropped; its cause is the failure readers
	// see (a changed origin file, a failed verification).
	ctx    context.Context
	cancel context.CancelCauseFunc
	wake   chan struct{}
	// announce, one per tracker, is owned by the server's announce loop.
	announce []announceState
	// peersUntil: the tracker named peers, so until then a lack of
	// connected peers means "still connecting", not "none".
	peersUntil time.Time
	// sched is owned by run.
	sched scheduler

	mu      sync.Mutex
	readers map[*streamReader]plan.Reader
	runs    []*originRun
	// partial holds the origin bytes of pieces being fetched, before they
	// verify: the origin is the source of truth, so a waiting player may
	// have them at once; the cache and the swarm get them only verified.
	partial    map[int]*partialPiece
	progress   chan struct{} // closed and replaced as partial pieces grow
	fromOrigin []bool        // pieces the origin supplied
	// served marks pieces whose bytes were served once: a piece counts for
	// its supplier (origin or peer) the first time, for the cache after.
	served  []bool
	retryAt time.Time
	// originAtStart is the path's origin byte count when this version
	// opened.
	originAtStart int64
}

// scheduler is the planner's input and output, reused every round.
type scheduler struct {
	cfg   plan.Config
	st    plan.State
	d     plan.Decision
	asked []plan.Priority // what the swarm was told, per piece
	// good counts the pieces peers delivered, to tell when they last did.
	good int64
}

// fileStats are the counters /v1/status shows for a path.
type fileStats struct {
	peerBytes, originBytes, cacheBytes atomic.Int64
	originFetched                      atomic.Int64
	verifyFailures                     atomic.Int64
	lastErr                            atomic.Pointer[string]
	// refused is why the tracker's last answer for the path was refused,
	// until one verifies.
	refused atomic.Pointer[string]
	used    time.Time // last statsFor; Server.mu
	// live is the live stream the path is a segment of, if the proxy
	// follows one; liveCounted, that it counted as one of its segments.
	live        atomic.Pointer[liveStream]
	liveCounted atomic.Bool
}

func (st *fileStats) setErr(err error) {
	msg := err.Error()
	st.lastErr.Store(&msg)
}

func (st *fileStats) setRefused(err error) {
	msg := err.Error()
	st.refused.Store(&msg)
}

// Scheduling constants (see plan.Config).
const (
	urgentPieces = 2
	maxRunBytes  = 1 << 20
	fillRunBytes = 256 << 10
	// maxOriginFetches: with two, a crowd of 5 took its budget from the
	// origin at 8-9 MB/s of its 12.5 (short fill runs, a round trip
	// each); with four at 11-12 (N=5 crowd median 40.7 s against 43.9).
	maxOriginFetches = 4
	headBytes        = 1 << 20
	// originLead: a player's piece due this soon goes to the origin; peers
	// have the rest of the read-ahead window to deliver it.
	originLead = 2 * time.Second
	// paceProbe: a new reader reads as fast as it is served while the
	// player's buffer and the loopback socket's (megabytes, autotuned)
	// fill; the pace meter (paceWindow) tells a player a second or two
	// later. Until then it gets a player's window, not the whole file.
	// After it, a reader still without a pace is a download only if it
	// read faster than maxBitrate on average: viewers 2 s apart are served
	// barely faster than their bitrate and showed no pace for about 30 s
	// in the fleet bench, while a crowd's downloads are served at several
	// MB/s within seconds. 10 s, not 5: viewers joining a swarm of 20
	// are fed fast at first and were taken for downloads before their
	// pace showed (3.6 viewers' worth of origin at 5 s, 2.5 at 10 s);
	// meanwhile a crowd's download takes the window's pieces it owns.
	paceProbe = 10 * time.Second
	// maxBitrate (bytes per second) is the fastest stream taken for a
	// player's: 8 Mbit/s, an HD video's.
	maxBitrate = 1e6
	// peerStall: connected peers that completed no piece for this long do
	// not count as delivering.
	peerStall = 2 * time.Second
	// scheduleTick re-plans for time passing (deadlines, graces); readers,
	// origin runs and peers' pieces wake the scheduler sooner.
	scheduleTick = 100 * time.Millisecond
	originRetry  = 500 * time.Millisecond
)

// swarmPriority maps the planner's priorities to the swarm's.
var swarmPriority = [...]swarm.Priority{
	plan.None:      swarm.PriorityNone,
	plan.Normal:    swarm.PriorityNormal,
	plan.Readahead: swarm.PriorityReadahead,
	plan.Now:       swarm.PriorityNow,
}

func newFile(s *Server, info *fileinfo.Info, entry *cache.Entry, t *swarm.Torrent, stats *fileStats) *file {
	n := info.NumPieces()
	ctx, cancel := context.WithCancelCause(s.ctx)
	served := make([]bool, n)
	for i := range served {
		served[i] = entry.Have(i) // held before this run: cache
	}
	return &file{
		s: s, info: info, entry: entry, torrent: t, stats: stats,
		ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1),
		sched: scheduler{
			cfg: plan.Config{
				UrgentPieces:   urgentPieces,
				ReadaheadBytes: s.cfg.Readahead,
				HeadBytes:      headBytes,
				MaxRuns:        maxOriginFetches,
				MaxRunBytes:    maxRunBytes,
				FillRunBytes:   fillRunBytes,
				Lead:           originLead,
				FirstGrace:     s.cfg.PeerGrace,
				PeerStall:      peerStall,
				PaceProbe:      paceProbe,
				MaxBitrate:     maxBitrate,
				OriginCopies:   s.cfg.OriginCopies,
				OriginUplinks:  max(0, s.cfg.OriginUplinks),
			},
			st: plan.State{
				Size: info.Size, PieceLength: info.PieceLength,
				Have: make([]bool, n), Avail: make([]int, n),
				Seed: rand.Uint64(),
			},
			asked: make([]plan.Priority, n),
		},
		readers:       map[*streamReader]plan.Reader{},
		partial:       map[int]*partialPiece{},
		progress:      make(chan struct{}),
		fromOrigin:    make([]bool, n),
		served:        served,
		originAtStart: stats.originFetched.Load(),
	}
}

// run schedules until the file is dropped.
func (f *file) run() {
	tick := time.NewTicker(scheduleTick)
	defer tick.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.wake:
		case <-tick.C:
		}
		f.schedule()
	}
}

func (f *file) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// fail drops the file: every waiting reader gets err, and the next request
// starts again from the tracker.
func (f *file) fail(err error) {
	f.stats.setErr(err)
	f.cancel(err)
}

// schedule feeds the planner what the file, its readers, its origin runs
// and the swarm look like now, and carries out its decision. A file nobody
// reads, with nothing asked of anyone, costs nothing.
func (f *file) schedule() {
	sc := &f.sched
	st := &sc.st
	f.mu.Lock()
	idle := len(f.readers) == 0 && len(f.runs) == 0
	f.mu.Unlock()
	if idle && !slices.ContainsFunc(sc.asked, func(p plan.Priority) bool { return p != plan.None }) {
		return
	}
	now := time.Now()
	peers, rank := f.torrent.Availability(st.Avail)
	if good := f.torrent.Stats().GoodPieces; good != sc.good || (peers > 0 && st.Peers == 0) {
		sc.good, st.LastPeerData = good, now
	}
	st.Now, st.Peers, st.Rank, st.Swarm = now, peers, rank, f.torrent.SwarmSize()
	st.Connecting = peers == 0 && now.Before(f.peersUntil)
	for i := range st.Have {
		st.Have[i] = f.entry.Have(i)
	}

	f.mu.Lock()
	st.Readers = st.Readers[:0]
	for _, r := range f.readers {
		st.Readers = append(st.Readers, r)
	}
	st.Runs = st.Runs[:0]
	for _, r := range f.runs {
		st.Runs = append(st.Runs, plan.Run{Next: r.next, End: r.end, Urgent: r.urgent})
	}
	// Every byte the origin sent counts, those of pieces peers completed
	// first included (fetched from this file's start, not the path's).
	st.OriginPieces = int((f.stats.originFetched.Load() - f.originAtStart + f.info.PieceLength - 1) / f.info.PieceLength)
	st.RetryAt = f.retryAt
	d := &sc.d
	plan.Plan(&sc.cfg, st, d)
	for _, c := range d.Cut {
		r := f.runs[c.Run]
		if c.End <= r.next {
			r.cancel() // the swarm completed the piece arriving
		} else {
			r.end = c.End
		}
	}
	for _, s := range d.Start {
		ctx, cancel := context.WithCancel(f.ctx)
		r := &originRun{first: s.First, next: s.First, end: s.End, start: s.Offset, urgent: s.Urgent, cancel: cancel}
		f.runs = append(f.runs, r)
		f.s.wg.Go(func() { f.fetchRun(ctx, r) })
	}
	f.mu.Unlock()

	// Peers are asked for what the planner wants from them; a piece the
	// origin supplies is withdrawn (None): the library then cancels its
	// requests for it, as it does for a piece sealed from the origin.
	for i, p := range d.Priority {
		if sc.asked[i] != p {
			f.torrent.SetPriority(i, swarmPriority[p])
			sc.asked[i] = p
		}
	}
}

// claim returns whom the bytes of verified piece i count for: its supplier
// the first time they are served, the cache after that.
func (f *file) claim(i int) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.served[i]:
		return metrics.SourceCache
	case f.fromOrigin[i]:
		f.served[i] = true
		return metrics.SourceOrigin
	default:
		f.served[i] = true
		return metrics.SourcePeer
	}
}

// markServed records that piece i's bytes already reached a player (the
// staged bytes of a file streamed before it was registered).
func (f *file) markServed(i int) {
	f.mu.Lock()
	f.served[i] = true
	f.mu.Unlock()
}
