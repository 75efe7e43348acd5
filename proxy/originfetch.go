package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/p2sp/p2sp/internal/cache"
	"github.com/p2sp/p2sp/internal/fetch"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/metrics"
)

// originRun is one range request to the origin, for pieces [first, end).
// The planner cuts it short by lowering end (it stops before that piece)
// or, when the swarm completed the piece arriving, by cancelling it.
type originRun struct {
	first  int
	start  int64 // first byte requested: first's offset, or a player's inside it
	urgent bool
	cancel context.CancelFunc
	// next is the piece arriving; next and end are guarded by file.mu.
	next, end int
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
			delete(f.partial, j)
		}
		f.runs = slices.DeleteFunc(f.runs, func(x *originRun) bool { return x == r })
		f.mu.Unlock()
		f.poke()
	}()
	f.mu.Lock()
	end := r.end
	f.mu.Unlock()
	firstOff, _ := f.info.PieceBounds(r.first)
	lastOff, lastN := f.info.PieceBounds(end - 1)
	body, err := f.s.origin.Range(ctx, f.info.Path, r.start, lastOff+lastN-r.start, f.info.Size, f.info.ETag)
	if err != nil {
		f.originError(ctx, err)
		return
	}
	defer body.Close()
	var headless *partialPiece
	for i := r.first; f.advance(r, i); i++ {
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
		f.advance(r, r.first)
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

// advance records that piece i of run r arrives next; false when the
// planner ended the run before it.
func (f *file) advance(r *originRun, i int) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i >= r.end {
		return false
	}
	r.next = i
	return true
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
