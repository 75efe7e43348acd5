package proxy

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"time"

	"github.com/p2sp/p2sp/internal/cache"
	"github.com/p2sp/p2sp/internal/plan"
	"github.com/p2sp/p2sp/metrics"
)

// streamReader reads [off, end) of the file for one response, waiting for
// each piece to be verified, and moves the file's playhead as it goes.
type streamReader struct {
	f        *file
	ctx      context.Context
	off, end int64
	head     int
	src      string // whom the current piece's bytes count for
	// start and since are where and when the playhead started; waited is
	// the time spent waiting for pieces since. The share of recent time
	// spent waiting tells a player reading at its bitrate from a download
	// that reads as fast as it is served.
	start  int64
	since  time.Time
	waited time.Duration
	// due, if set, is when a live segment must be held (plan.Reader.Due).
	due   time.Time
	meter paceMeter
	peak  float64 // plan.Reader.Peak
	// direct streams the rest from the origin once the cache has failed.
	direct io.ReadCloser
	// early are the origin bytes passed on before their piece verified,
	// to check against the piece once it has (settle).
	early []earlyBytes
}

// earlyBytes is a run of origin bytes a reader passed on before their
// piece verified: where they start in the file, how many, their CRC.
type earlyBytes struct {
	piece  int
	off, n int64
	crc    uint32
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

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
		// Unverified from here on, like the bytes passed early, which the
		// failed cache can no longer check.
		r.early = nil
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
	return f.readerDue(ctx, off, n, time.Time{})
}

// readerDue is newReader for a range wanted whole by due, a live
// segment's (zero: no deadline but the reader's pace).
func (f *file) readerDue(ctx context.Context, off, n int64, due time.Time) *streamReader {
	r := &streamReader{f: f, ctx: ctx, off: off, end: off + n, head: -1, start: off, since: time.Now(), due: due}
	r.moveHead(int(off / f.info.PieceLength))
	return r
}

// paceMeter estimates a reader's pace: moving averages (time constant
// paceWindow) of its read rate and of the share of time it waited for
// pieces. A reader that waited less than half of the recent time consumes
// at its own pace; the estimate made then stays while it starves, so a
// player that starts to stall keeps its deadlines instead of passing for a
// download. (A new reader waits while the player's and the sockets'
// buffers fill: the moving average forgets that within seconds.)
type paceMeter struct {
	at           time.Time
	off          int64
	waited       time.Duration
	busy, rate   float64
	pace         float64
	started, set bool
}

const (
	paceWindow = 2 * time.Second
	paceSample = 250 * time.Millisecond
)

// update takes the reader's offset and total wait at now; it returns the
// pace, 0 while none is known.
func (m *paceMeter) update(now time.Time, off int64, waited time.Duration) float64 {
	if !m.started {
		m.at, m.off, m.waited, m.busy, m.started = now, off, waited, 1, true
		return 0
	}
	dt := now.Sub(m.at)
	if dt < paceSample {
		return m.pace
	}
	w := 1 - math.Exp(-dt.Seconds()/paceWindow.Seconds())
	share := float64(waited-m.waited) / float64(dt)
	m.busy += w * (share - m.busy)
	// Only a step spent mostly reading tells its pace: one spent waiting
	// measures its sources (the buffers filling at first), which would
	// have the pace too high and the origin asked too early.
	if rate := float64(off-m.off) / dt.Seconds(); share < 0.5 {
		if !m.set {
			m.rate, m.set = rate, true
		}
		m.rate += w * (rate - m.rate)
	}
	m.at, m.off, m.waited = now, off, waited
	if m.busy < 0.5 {
		m.pace = m.rate
	}
	return m.pace
}

func (r *streamReader) moveHead(i int) {
	if i == r.head {
		return
	}
	r.head = i
	now := time.Now()
	pace := r.meter.update(now, r.off, r.waited)
	if age := now.Sub(r.since); age >= paceProbe {
		r.peak = max(r.peak, float64(r.off-r.start)/age.Seconds())
	}
	pr := plan.Reader{Pos: r.off, Start: r.start, Since: r.since, Pace: pace, Peak: r.peak, End: r.end, Due: r.due}
	r.f.mu.Lock()
	r.f.readers[r] = pr
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
		if r.direct == nil {
			if err := r.settle(false); err != nil {
				return 0, err
			}
		}
		r.moveHead(i)
		r.src = ""
	}
	pOff, pLen := f.info.PieceBounds(i)
	n := min(int64(len(p)), pOff+pLen-r.off, r.end-r.off)
	if r.direct != nil {
		return r.readDirect(p)
	}
	// Origin bytes may pass before their piece verifies (peer bytes never
	// do), all but the response's last byte: that one waits until every
	// byte passed early has matched its verified piece (settle). A file
	// changed in place on the origin mid-body sends bytes of two versions
	// under one ETag; the player then sees a body cut short of its
	// Content-Length, never a whole one mixed.
	last := r.off+n == r.end
	early := n
	if last {
		early--
	}
	for r.src == "" && !f.entry.Have(i) {
		if early > 0 {
			if m := f.readArriving(p[:early], i, r.off-pOff); m > 0 {
				r.owe(i, r.off, p[:m])
				r.off += int64(m)
				f.s.served(f.stats, metrics.SourceOrigin, int64(m))
				return m, nil
			}
		}
		t0 := time.Now()
		err := r.wait(i, r.off-pOff, early > 0)
		r.waited += time.Since(t0)
		if err != nil {
			if errors.Is(err, errCacheWrite) {
				return r.readDirect(p)
			}
			return 0, err
		}
	}
	if last {
		if err := r.settle(true); err != nil {
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

// owe records that b, the bytes of piece i at off in the file, were
// passed on before the piece verified.
func (r *streamReader) owe(i int, off int64, b []byte) {
	if k := len(r.early) - 1; k >= 0 && r.early[k].piece == i && r.early[k].off+r.early[k].n == off {
		r.early[k].crc = crc32.Update(r.early[k].crc, castagnoli, b)
		r.early[k].n += int64(len(b))
		return
	}
	r.early = append(r.early, earlyBytes{piece: i, off: off, n: int64(len(b)), crc: crc32.Checksum(b, castagnoli)})
}

// settle checks the bytes passed early against their pieces once these
// verified: every one of them, waiting for their pieces, when all is set,
// else those whose pieces verified already. An error says a piece failed
// (the file was dropped) or its verified bytes are not the ones passed:
// the origin sent another version's bytes than the registered one's,
// and a peer supplied the piece first.
func (r *streamReader) settle(all bool) error {
	f := r.f
	kept := r.early[:0]
	var buf []byte
	for _, e := range r.early {
		if !f.entry.Have(e.piece) {
			if !all {
				kept = append(kept, e)
				continue
			}
			r.want(e.piece)
			t0 := time.Now()
			err := r.wait(e.piece, 0, false)
			r.waited += time.Since(t0)
			if err != nil {
				return err
			}
		}
		if buf == nil {
			buf = make([]byte, min(e.n, 64<<10))
		}
		crc := uint32(0)
		for off := e.off; off < e.off+e.n; {
			k, err := f.entry.ReadAt(buf[:min(int64(len(buf)), e.off+e.n-off)], off)
			crc = crc32.Update(crc, castagnoli, buf[:k])
			off += int64(k)
			if err != nil && off < e.off+e.n {
				return fmt.Errorf("check piece %d of %s: %w", e.piece, f.info.Path, err)
			}
		}
		if crc != e.crc {
			err := fmt.Errorf("%s: the origin bytes passed on at %d (%d bytes) are not those of verified piece %d: the file changed on the origin", f.info.Path, e.off, e.n, e.piece)
			f.s.log.Warn("origin sent bytes of another version", "path", f.info.Path, "piece", e.piece, "err", err)
			return err
		}
	}
	r.early = kept
	return nil
}

// want has the planner fetch piece i, behind the reader, for settle: the
// reader is past it, and the origin run that passed its bytes may have
// ended before the piece was whole (a run that starts inside a piece
// fetches its head last, and the planner cuts a run nobody needs), so
// nothing else would. The reader stands as a new playhead on that piece
// alone until its next read publishes its own position again.
func (r *streamReader) want(i int) {
	off, n := r.f.info.PieceBounds(i)
	r.head = -1
	r.f.mu.Lock()
	r.f.readers[r] = plan.Reader{Pos: off, Start: off, Since: time.Now(), End: off + n, Due: r.due}
	r.f.mu.Unlock()
	r.f.poke()
}

// wait blocks until piece i is verified or, if arriving is set, the
// origin has delivered it past offset off; until the request ends, the
// file is dropped, or nothing arrives for StallTimeout.
func (r *streamReader) wait(i int, off int64, arriving bool) error {
	f := r.f
	stall := time.NewTimer(f.s.cfg.StallTimeout)
	defer stall.Stop()
	for {
		changed := f.entry.Changed()
		f.mu.Lock()
		progress := f.progress
		pp := f.partial[i]
		arrived := arriving && pp != nil && int64(pp.lo) <= off && off < int64(pp.n)
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
	delete(r.f.readers, r)
	r.f.mu.Unlock()
	r.f.poke()
	return nil
}
