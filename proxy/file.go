package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2sp/p2sp/internal/cache"
	"github.com/p2sp/p2sp/internal/fetch"
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
	inflight   []bool        // pieces in origin requests under way
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
}

func (st *fileStats) setErr(err error) {
	msg := err.Error()
	st.lastErr.Store(&msg)
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
		inflight:    make([]bool, n),
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
		if f.inflight[i] || f.entry.Have(i) {
			continue
		}
		// Extend to a contiguous run of wanted, missing pieces.
		end := i + 1
		for end < n && int64(end-i)*f.info.PieceLength < maxRunBytes && !f.inflight[end] &&
			!f.entry.Have(end) && want[end] >= swarm.PriorityReadahead {
			end++
		}
		for j := i; j < end; j++ {
			f.inflight[j] = true
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

// originRun is one range request to the origin, for pieces [first, end).
type originRun struct {
	first, end int
	start      int64 // first byte requested: first's offset, or a player's inside it
	urgent     bool
	cancel     context.CancelFunc
	// stop ends the run after the piece it is receiving: bytes of that
	// piece may already have reached a player, and the piece should reach
	// the cache.
	stop atomic.Bool
}

// fetchRun fetches a run's pieces in one range request, verifying and
// sealing each piece as it arrives. A run that starts at a player's offset
// inside its first piece fetches that piece's head last, so the player's
// first byte is the first byte on the wire.
func (f *file) fetchRun(ctx context.Context, r *originRun) {
	defer func() {
		r.cancel()
		f.mu.Lock()
		for j := r.first; j < r.end; j++ {
			f.inflight[j] = false
			delete(f.partial, j)
		}
		delete(f.runs, r)
		f.mu.Unlock()
		f.poke()
	}()
	firstOff, _ := f.info.PieceBounds(r.first)
	lastOff, lastN := f.info.PieceBounds(r.end - 1)
	body, err := f.s.origin.Range(ctx, f.info.Path, r.start, lastOff+lastN-r.start, f.info.Size, f.info.ETag)
	if err != nil {
		f.originError(ctx, err)
		return
	}
	defer body.Close()
	var headless *partialPiece
	for i := r.first; i < r.end && !r.stop.Load(); i++ {
		pOff, n := f.info.PieceBounds(i)
		pp, err := f.receive(body, i, max(r.start, pOff)-pOff, n)
		if err != nil {
			f.originError(ctx, fmt.Errorf("piece %d from origin: %w", i, err))
			return
		}
		if pp.lo > 0 {
			headless = pp
			continue
		}
		if !f.store(ctx, i, pp.buf) {
			return
		}
	}
	if headless != nil {
		head, err := f.s.origin.Range(ctx, f.info.Path, firstOff, int64(headless.lo), f.info.Size, f.info.ETag)
		if err == nil {
			_, err = io.ReadFull(head, headless.buf[:headless.lo])
			head.Close()
		}
		if err != nil {
			f.originError(ctx, fmt.Errorf("head of piece %d from origin: %w", r.first, err))
			return
		}
		f.stats.originFetched.Add(int64(headless.lo))
		f.s.metrics.OriginFetchedBytes.Add(float64(headless.lo))
		f.store(ctx, r.first, headless.buf)
	}
}

// store verifies an origin piece into the cache and tells the swarm; false
// when the run must end.
func (f *file) store(ctx context.Context, i int, buf []byte) bool {
	defer func() {
		f.mu.Lock()
		delete(f.partial, i)
		f.mu.Unlock()
	}()
	if f.entry.Have(i) { // peers were faster
		return true
	}
	// Marked before the write: a reader woken by the seal must count the
	// piece for the origin.
	f.setFromOrigin(i, true)
	err := f.entry.WritePiece(i, buf)
	if err != nil {
		f.setFromOrigin(i, false)
	}
	switch {
	case errors.Is(err, cache.ErrHashMismatch):
		f.s.metrics.VerificationFailures.WithLabelValues(metrics.SourceOrigin).Inc()
		f.stats.verifyFailures.Add(1)
		f.s.reports.send(fileinfo.Report{Kind: fileinfo.ReportVerificationFailed, Path: f.info.Path, InfoHash: f.info.InfoHash, Piece: &i,
			Detail: "origin bytes do not match the registered piece hash"})
		f.s.drop(f, fmt.Errorf("piece %d of %s from the origin failed verification: the file changed since it was registered", i, f.info.Path))
		return false
	case err != nil && (f.ctx.Err() != nil || errors.Is(err, cache.ErrRemoved)):
		return false // dropped or evicted meanwhile
	case err != nil:
		// The disk failed (full, read-only, broken): the players still
		// get their bytes, from the origin directly (streamReader.Read).
		f.s.cacheFailed(err)
		f.s.drop(f, fmt.Errorf("store piece %d of %s: %w: %w", i, f.info.Path, errCacheWrite, err))
		return false
	}
	f.s.metrics.PiecesVerified.WithLabelValues(metrics.SourceOrigin).Inc()
	f.torrent.Sealed(i)
	return true
}

func (f *file) setFromOrigin(i int, v bool) {
	f.mu.Lock()
	f.fromOrigin[i] = v
	f.mu.Unlock()
}

// partialPiece is a piece arriving from the origin: buf[lo:n] has arrived.
type partialPiece struct {
	buf   []byte
	lo, n int
}

// receiveChunk is how often a piece in flight tells waiting readers.
const receiveChunk = 16 << 10

// receive reads bytes [lo, n) of piece i from the origin, publishing what
// has arrived so that readers can pass it on before the piece verifies.
// The piece stays published until store or the run's end removes it.
func (f *file) receive(body io.Reader, i int, lo, n int64) (*partialPiece, error) {
	pp := &partialPiece{buf: make([]byte, n), lo: int(lo), n: int(lo)}
	f.mu.Lock()
	f.partial[i] = pp
	f.mu.Unlock()
	for got := pp.lo; got < len(pp.buf); {
		k, err := body.Read(pp.buf[got:min(got+receiveChunk, len(pp.buf))])
		got += k
		if k > 0 {
			f.stats.originFetched.Add(int64(k))
			f.s.metrics.OriginFetchedBytes.Add(float64(k))
			f.mu.Lock()
			pp.n = got
			close(f.progress)
			f.progress = make(chan struct{})
			f.mu.Unlock()
		}
		if err != nil && (err != io.EOF || got < len(pp.buf)) {
			return nil, err
		}
	}
	return pp, nil
}

// readArriving copies bytes of piece i from offset off within it, if the
// origin has delivered them already; 0 if not.
func (f *file) readArriving(p []byte, i int, off int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	pp := f.partial[i]
	if pp == nil || off < int64(pp.lo) || int64(pp.n) <= off {
		return 0
	}
	return copy(p, pp.buf[off:pp.n])
}

// originError handles a failed origin fetch: a changed file drops this
// version; anything else is retried after a pause (peers may still come).
func (f *file) originError(ctx context.Context, err error) {
	if ctx.Err() != nil { // dropped, or no longer wanted
		return
	}
	if errors.Is(err, fetch.ErrChanged) || errors.Is(err, fetch.ErrNotFound) {
		f.s.reports.send(fileinfo.Report{Kind: fileinfo.ReportHashMismatch, Path: f.info.Path, InfoHash: f.info.InfoHash, Detail: err.Error()})
		f.s.drop(f, fmt.Errorf("%s changed on the origin since it was registered: %w", f.info.Path, err))
		return
	}
	f.s.log.Warn("origin fetch failed", "path", f.info.Path, "err", err)
	f.stats.setErr(err)
	f.mu.Lock()
	f.retryAt = time.Now().Add(originRetry)
	f.mu.Unlock()
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

// streamReader reads [off, end) of the file for one response, waiting for
// each piece to be verified, and moves the file's playhead as it goes.
type streamReader struct {
	f        *file
	ctx      context.Context
	off, end int64
	head     int
	src      string // whom the current piece's bytes count for
	// direct streams the rest from the origin once the cache has failed.
	direct io.ReadCloser
}

// errCacheWrite marks a file dropped because the cache could not store it.
var errCacheWrite = errors.New("cache write failed")

// readDirect passes the rest of the range straight from the origin, after
// the cache failed under this reader.
func (r *streamReader) readDirect(p []byte) (int, error) {
	f := r.f
	if r.direct == nil {
		body, err := f.s.origin.Range(r.ctx, f.info.Path, r.off, r.end-r.off, f.info.Size, f.info.ETag)
		if err != nil {
			return 0, fmt.Errorf("after a cache failure: %w", err)
		}
		r.direct = body
	}
	n, err := r.direct.Read(p[:min(int64(len(p)), r.end-r.off)])
	r.off += int64(n)
	f.s.served(f.stats, metrics.SourceOrigin, int64(n))
	f.s.metrics.OriginFetchedBytes.Add(float64(n))
	if err == io.EOF && r.off < r.end {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

var _ io.ReadCloser = (*streamReader)(nil)

func (f *file) newReader(ctx context.Context, off, n int64) *streamReader {
	r := &streamReader{f: f, ctx: ctx, off: off, end: off + n, head: -1}
	r.moveHead(int(off / f.info.PieceLength))
	return r
}

func (r *streamReader) moveHead(i int) {
	if i == r.head {
		return
	}
	r.head = i
	r.f.mu.Lock()
	r.f.heads[r] = r.off
	r.f.mu.Unlock()
	r.f.poke()
}

func (r *streamReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	f := r.f
	i := int(r.off / f.info.PieceLength)
	if i != r.head {
		r.moveHead(i)
		r.src = ""
	}
	pOff, pLen := f.info.PieceBounds(i)
	n := min(int64(len(p)), pOff+pLen-r.off, r.end-r.off)
	if r.direct != nil {
		return r.readDirect(p)
	}
	for r.src == "" && !f.entry.Have(i) {
		// Origin bytes may pass before their piece verifies; peer bytes
		// never do.
		if m := f.readArriving(p[:n], i, r.off-pOff); m > 0 {
			r.off += int64(m)
			f.s.served(f.stats, metrics.SourceOrigin, int64(m))
			return m, nil
		}
		if err := r.wait(i, r.off-pOff); err != nil {
			if errors.Is(err, errCacheWrite) {
				return r.readDirect(p)
			}
			return 0, err
		}
	}
	if r.src == "" {
		r.src = f.claim(i)
	}
	m, err := f.entry.ReadAt(p[:n], r.off)
	r.off += int64(m)
	f.s.served(f.stats, r.src, int64(m))
	if err == io.EOF && r.off == r.end {
		err = nil
	}
	return m, err
}

// wait blocks until piece i is verified or the origin has delivered it
// past offset off, the request ends, the file is dropped, or nothing
// arrives for StallTimeout.
func (r *streamReader) wait(i int, off int64) error {
	f := r.f
	stall := time.NewTimer(f.s.cfg.StallTimeout)
	defer stall.Stop()
	for {
		changed := f.entry.Changed()
		f.mu.Lock()
		progress := f.progress
		pp := f.partial[i]
		arrived := pp != nil && int64(pp.lo) <= off && off < int64(pp.n)
		f.mu.Unlock()
		if arrived || f.entry.Have(i) {
			return nil
		}
		select {
		case <-changed:
		case <-progress:
		case <-r.ctx.Done():
			return r.ctx.Err()
		case <-f.ctx.Done():
			return context.Cause(f.ctx)
		case <-f.entry.Removed():
			if cause := context.Cause(f.ctx); cause != nil {
				return cause // dropped: say why
			}
			return cache.ErrRemoved
		case <-stall.C:
			return fmt.Errorf("no source delivered piece %d of %s within %s", i, f.info.Path, f.s.cfg.StallTimeout)
		}
	}
}

func (r *streamReader) Close() error {
	if r.direct != nil {
		r.direct.Close()
	}
	r.f.mu.Lock()
	delete(r.f.heads, r)
	r.f.mu.Unlock()
	r.f.poke()
	return nil
}
