package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2sp/p2sp/internal/cache"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/swarm"
	"github.com/p2sp/p2sp/metrics"
)

// file is one file version (infohash) the proxy holds open: its cache
// entry, its torrent, and the scheduler that decides, piece by piece, who
// supplies what the players wait for. It lives until the cache evicts the
// entry, seeding in the meantime.
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
	// announce is owned by the server's announce loop.
	announce announceState
	// peersUntil: the tracker named peers, so until then a lack of
	// connected peers means "still connecting", not "none".
	peersUntil time.Time

	mu          sync.Mutex
	heads       map[*streamReader]int64 // each reader's playhead, in bytes
	wantedSince map[int]time.Time
	prio        map[int]swarm.Priority
	runs        map[*originRun]struct{}
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
}

func (st *fileStats) setErr(err error) {
	msg := err.Error()
	st.lastErr.Store(&msg)
}

func (st *fileStats) setRefused(err error) {
	msg := err.Error()
	st.refused.Store(&msg)
}

// Scheduling constants. A piece is "urgent" while it is among the first
// urgentPieces at or after a playhead.
const (
	urgentPieces     = 2
	maxRunBytes      = 1 << 20 // one origin request covers at most this
	maxOriginFetches = 2       // concurrent origin requests per file
	headBytes        = 1 << 20 // the file's head, wanted from peers
	scheduleTick     = 50 * time.Millisecond
	originRetry      = 500 * time.Millisecond
)

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
		wake:        make(chan struct{}, 1),
		heads:       map[*streamReader]int64{},
		wantedSince: map[int]time.Time{},
		prio:        map[int]swarm.Priority{},
		runs:        map[*originRun]struct{}{},
		partial:     map[int]*partialPiece{},
		progress:    make(chan struct{}),
		fromOrigin:  make([]bool, n),
		served:      served,
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

// schedule sets the swarm's priorities around every playhead and hands the
// origin what peers cannot supply in time.
func (f *file) schedule() {
	now := time.Now()
	n := f.info.NumPieces()
	raPieces := int(max(1, f.s.cfg.Readahead/f.info.PieceLength))
	peers := f.torrent.Stats().Peers > 0 || now.Before(f.peersUntil)

	f.mu.Lock()
	defer f.mu.Unlock()
	want := map[int]swarm.Priority{}
	var urgent, ahead []int
	for _, off := range f.heads {
		h := int(off / f.info.PieceLength)
		for i := h; i < min(n, h+urgentPieces+raPieces); i++ {
			if f.entry.Have(i) {
				continue
			}
			p := swarm.PriorityReadahead
			if i < h+urgentPieces {
				p = swarm.PriorityNow
				urgent = append(urgent, i)
			} else {
				ahead = append(ahead, i)
			}
			want[i] = max(want[i], p)
		}
	}
	// Then the file's head, where players look for the container's index:
	// from peers only, at the lowest priority.
	if len(f.heads) > 0 {
		for i := range min(n, int(max(1, headBytes/f.info.PieceLength))) {
			if _, ok := want[i]; !ok && !f.entry.Have(i) {
				want[i] = swarm.PriorityNormal
			}
		}
	}
	// Priorities: raise what is wanted, drop read-ahead around old playheads.
	for i, p := range want {
		if f.prio[i] != p {
			f.torrent.SetPriority(i, p)
		}
		if _, ok := f.wantedSince[i]; !ok {
			f.wantedSince[i] = now
		}
	}
	for i := range f.prio {
		if _, ok := want[i]; !ok {
			f.torrent.SetPriority(i, swarm.PriorityNone)
			delete(f.wantedSince, i)
		}
	}
	f.prio = want

	// Origin requests no playhead wants any more give their bandwidth back
	// (after the piece under way).
	urgentBusy := false
	for r := range f.runs {
		wanted := false
		for i := r.first; i < r.end && !wanted; i++ {
			wanted = want[i] >= swarm.PriorityReadahead
		}
		if !wanted {
			r.stop.Store(true)
			continue
		}
		urgentBusy = urgentBusy || r.urgent
	}

	// The origin fills what peers cannot: urgent pieces at once when no peer
	// is connected, or when peers have not delivered them within the grace
	// period; read-ahead likewise (four grace periods), but only while no
	// urgent request is under way, since origin bandwidth is shared and the
	// player waits on the urgent one.
	if now.Before(f.retryAt) {
		return
	}
	var todo []int
	for _, i := range urgent {
		if !peers || now.Sub(f.wantedSince[i]) >= f.s.cfg.PeerGrace {
			todo = append(todo, i)
		}
	}
	nUrgent := len(todo)
	if !urgentBusy {
		for _, i := range ahead {
			if !peers || now.Sub(f.wantedSince[i]) >= 4*f.s.cfg.PeerGrace {
				todo = append(todo, i)
			}
		}
	}
	for k, i := range todo {
		if len(f.runs) >= maxOriginFetches || (k >= nUrgent && urgentBusy) {
			break
		}
		if f.fetching(i) || f.entry.Have(i) {
			continue
		}
		// Extend to a contiguous run of wanted, missing pieces.
		end := i + 1
		for end < n && int64(end-i)*f.info.PieceLength < maxRunBytes && !f.fetching(end) &&
			!f.entry.Have(end) && want[end] >= swarm.PriorityReadahead {
			end++
		}
		ctx, cancel := context.WithCancel(f.ctx)
		r := &originRun{first: i, end: end, cancel: cancel, urgent: k < nUrgent}
		r.start, _ = f.info.PieceBounds(i)
		if f.partial[i] == nil {
			for _, off := range f.heads {
				if int(off/f.info.PieceLength) == i && off > r.start {
					r.start = off
				}
			}
		}
		f.runs[r] = struct{}{}
		urgentBusy = urgentBusy || r.urgent
		f.s.wg.Go(func() { f.fetchRun(ctx, r) })
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
