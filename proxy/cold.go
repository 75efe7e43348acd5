package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"path"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/byterange"
	"github.com/p2sp/p2sp/internal/cache"
	"github.com/p2sp/p2sp/internal/fetch"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/internal/manifest"
	"github.com/p2sp/p2sp/metrics"
)

// coldBytes bounds the origin request a cold request starts with. It is
// what the player waits on before peers could answer at all: enough to
// cover the tracker's round trip at any origin speed (256 KiB is 21 ms at
// 100 Mbit/s), and no more, since every byte of it comes from the origin
// even when the tracker then names peers that hold the file (at 1 MiB, a
// second proxy took a quarter of a 4 MiB file from the origin). Past it,
// the file's scheduler decides who supplies the rest.
const coldBytes = 256 << 10

// coldSpan is the range a cold request asks the origin for at once: from
// the player's first byte, at most coldBytes. ok is false for what cannot
// be placed without the size (a suffix range) or is not one range.
func coldSpan(r *http.Request) (off, n int64, ok bool) {
	ranges, err := byterange.Parse(r.Header.Get("Range"), math.MaxInt64)
	switch {
	case err != nil || len(ranges) > 1:
		return 0, 0, false
	case len(ranges) == 0:
		return 0, coldBytes, true
	case ranges[0].Start > math.MaxInt64/2: // bytes=-N
		return 0, 0, false
	}
	return ranges[0].Start, min(ranges[0].Length, coldBytes), true
}

// lookup is a tracker lookup under way.
type lookup struct {
	done chan struct{}
	info *fileinfo.Info
	err  error
}

// lookUp asks the tracker for p's info in the background; the answer
// outlives the request, since what the request streamed enters the cache
// once the info is there.
func (s *Server) lookUp(p string) *lookup {
	l := &lookup{done: make(chan struct{})}
	s.wg.Go(func() {
		defer close(l.done)
		l.info, l.err = s.lookup(s.ctx, p)
	})
	return l
}

// wait returns the lookup's answer, or ctx's error.
func (l *lookup) wait(ctx context.Context) (*fileinfo.Info, error) {
	select {
	case <-l.done:
		return l.info, l.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ready reports whether the answer has come.
func (l *lookup) ready() bool {
	select {
	case <-l.done:
		return true
	default:
		return false
	}
}

// serveCold answers a file the proxy holds nothing of in one round trip:
// the player's range goes to the origin at once, beside the tracker lookup,
// and the origin's bytes pass to the player as they arrive (the origin is
// the source of truth). They are staged meanwhile and enter the cache and
// the swarm once the info has come and their pieces verify. What the
// player asked for past the first coldBytes comes from the file's
// scheduler (peers and origin) as soon as the info is there, or from the
// origin alone for a file the tracker does not know.
func (s *Server) serveCold(c *gin.Context, p string, off, n int64) error {
	ctx := c.Request.Context()
	l := s.lookUp(p)
	meta, body, err := s.origin.Get(ctx, p, off, n)
	switch {
	case errors.Is(err, fetch.ErrNotFound):
		return httpapi.Errorf(http.StatusNotFound, "%s: no such file", p)
	case err != nil && ctx.Err() == nil:
		// The origin is away or odd: peers may still have the file.
		s.log.Warn("origin request failed, waiting for the tracker", "path", p, "err", err)
		info, lerr := l.wait(ctx)
		if lerr != nil {
			// On the path's status too: an origin whose certificate does
			// not verify fails every request, and the status says why.
			return s.streamError(c, p, errors.Join(err, lerr))
		}
		return s.serveInfo(c, info)
	case err != nil:
		return nil // the player went away
	case manifest.ByType(meta.ContentType):
		// A manifest by its type, whatever its name: never the cache's.
		if body != nil {
			body.Close()
		}
		return s.serveManifest(c, p)
	}
	cr := &coldRequest{s: s, p: p, meta: meta, l: l, stats: s.statsFor(p), done: make(chan struct{})}
	firstEnd := min(off+n, meta.Size)
	var first *originBody
	if body != nil {
		// Only a request that gets bytes stages them and joins the file:
		// a probe past the end (the origin's 416) leaves the cache alone.
		if !s.cacheBroken() {
			cr.keep = s.staging.file(p, meta)
		}
		s.wg.Go(func() { cr.settle(firstEnd) })
		first = cr.originBody(body, off)
	}
	defer func() {
		if first != nil {
			first.Close()
		}
		cr.release()
	}()
	err = byterange.Serve(c.Writer, c.Request, &byterange.Content{
		Size: meta.Size, ModTime: meta.ModTime, ETag: meta.ETag,
		ContentType: meta.ContentType, Name: path.Base(p),
		Open: s.timed(c, func(ctx context.Context, o, k int64) (io.Reader, error) {
			if first != nil && o == off {
				r := &coldReader{cr: cr, ctx: ctx, first: first, firstEnd: firstEnd, off: o, end: o + k}
				first = nil
				return r, nil
			}
			return cr.open(ctx, o, k)
		}),
	})
	return s.streamError(c, p, err)
}

// coldRequest is one cold request's view of its file: the origin's
// version, the tracker's answer when it comes, the staged copy.
type coldRequest struct {
	s     *Server
	p     string
	meta  fetch.Meta
	l     *lookup
	keep  *stagedFile
	stats *fileStats

	done chan struct{} // closed when the response has ended

	mu       sync.Mutex
	entries  []*cache.Entry // to release when the request ends
	released bool
}

// originBody passes origin bytes from off to the player, staging them.
func (cr *coldRequest) originBody(body io.ReadCloser, off int64) *originBody {
	return &originBody{ReadCloser: body, off: off, keep: cr.keep, count: func(k int64) {
		cr.s.served(cr.stats, metrics.SourceOrigin, k)
		cr.s.metrics.OriginFetchedBytes.Add(float64(k))
	}}
}

// matches reports whether the tracker's info describes the version the
// origin answered with: only then may the scheduler and the cache serve it.
func (cr *coldRequest) matches(info *fileinfo.Info) bool {
	return info.Size == cr.meta.Size && info.ETag == cr.meta.ETag
}

// open returns a reader of [off, off+n): the file's, once the tracker
// has answered with the origin's version, or the origin's alone.
func (cr *coldRequest) open(ctx context.Context, off, n int64) (io.Reader, error) {
	info, err := cr.l.wait(ctx)
	if err != nil && ctx.Err() != nil {
		return nil, err
	}
	if err == nil && !cr.matches(info) {
		// Under the registered hashes these bytes would not verify, and
		// other sources hold the registered version: rather than mix, the
		// response ends here, and the origin is told to rehash.
		cr.mismatch()
		return nil, fmt.Errorf("%s: the origin serves another version than the one registered", cr.p)
	}
	if f := cr.file(info, err); f != nil {
		return f.newReader(ctx, off, n), nil
	}
	body, err := cr.s.origin.Range(ctx, cr.p, off, n, cr.meta.Size, cr.meta.ETag)
	if err != nil {
		if errors.Is(err, fetch.ErrChanged) {
			cr.s.reports.send(fileinfo.Report{Kind: fileinfo.ReportHashMismatch, Path: cr.p, Detail: err.Error()})
		}
		return nil, err
	}
	return cr.originBody(body, off), nil
}

func (cr *coldRequest) mismatch() {
	cr.s.reports.send(fileinfo.Report{Kind: fileinfo.ReportHashMismatch, Path: cr.p,
		Detail: fmt.Sprintf("origin serves size %d, ETag %s, unlike the registered version", cr.meta.Size, cr.meta.ETag)})
}

// file returns the open file for the tracker's answer, nil when there is
// none to use (unknown, unreachable, another version, no room, a broken
// cache): the origin alone serves then.
func (cr *coldRequest) file(info *fileinfo.Info, err error) *file {
	s := cr.s
	if err != nil || !cr.matches(info) || s.cacheBroken() {
		return nil
	}
	entry, err := s.cache.Create(info)
	if err != nil {
		if !errors.Is(err, cache.ErrNoSpace) {
			s.cacheFailed(err)
		}
		return nil
	}
	f, err := s.activate(info, entry)
	if err != nil {
		entry.Release()
		s.log.Warn("cannot join the swarm", "path", cr.p, "err", err)
		return nil
	}
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.released {
		entry.Release() // joined after the response: the file lives on in the cache
	} else {
		cr.entries = append(cr.entries, entry)
	}
	return f
}

// release ends the response's hold on the entries it opened.
func (cr *coldRequest) release() {
	cr.mu.Lock()
	defer cr.mu.Unlock()
	for _, e := range cr.entries {
		e.Release()
	}
	cr.entries, cr.released = nil, true
	close(cr.done)
}

// settle joins the file's torrent as soon as the tracker answers, beside
// the response; once the response has ended, what it staged enters the
// cache (verified piece by piece) and the swarm. For a file the tracker
// does not know yet it waits for the registration instead.
//
// Meanwhile, when the tracker named peers, the file gets a playhead where
// the origin request ends, where the player reads next: the peers are
// asked for what follows while the response lasts and for most of a peer
// grace period after, short of the point where the scheduler would turn
// to the origin for it. With no peers to ask it would only fetch from the
// origin what nobody asked for yet.
func (cr *coldRequest) settle(next int64) {
	s := cr.s
	info, err := cr.l.wait(s.ctx)
	f := cr.file(info, err)
	linger := f != nil && len(info.Peers) > 0 && next < info.Size
	if linger {
		r := f.newReader(s.ctx, next, info.Size-next)
		defer r.Close()
	}
	select {
	case <-cr.done:
	case <-s.ctx.Done():
		return
	}
	if linger {
		select {
		case <-time.After(s.cfg.PeerGrace * 3 / 4):
		case <-s.ctx.Done():
			return
		}
	}
	switch {
	case errors.Is(err, errUnknownFile):
		s.adoptLater(cr.p)
		return
	case cr.keep == nil:
		return
	case f == nil:
		if err == nil && !cr.matches(info) {
			cr.mismatch()
		}
		s.staging.drop(cr.p, cr.keep)
		return
	}
	if err := s.adoptInfo(info, cr.keep); err != nil {
		s.log.Warn("caching streamed bytes failed", "path", cr.p, "err", err)
	}
	s.staging.drop(cr.p, cr.keep)
}

// coldReader reads [off, end) for a cold request: first what the origin
// is already sending, then the rest from cr.open, which it prepares as
// soon as the tracker answers so that the scheduler fetches ahead while
// the first bytes still stream.
type coldReader struct {
	cr       *coldRequest
	ctx      context.Context
	first    *originBody // nil once read to firstEnd
	firstEnd int64
	rest     io.Reader
	off, end int64
}

var _ io.ReadCloser = (*coldReader)(nil)

func (r *coldReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	if r.first != nil && r.rest == nil && r.firstEnd < r.end {
		if r.cr.l.ready() {
			if err := r.openRest(); err != nil {
				return 0, err
			}
		}
	}
	if r.first != nil {
		n, err := r.first.Read(p[:min(int64(len(p)), r.firstEnd-r.off)])
		r.off += int64(n)
		switch {
		case err == io.EOF || r.off == r.firstEnd:
			r.first.Close()
			r.first, err = nil, nil
		case err != nil && r.ctx.Err() == nil:
			// The first origin body broke off (cut short, stalled): the
			// rest comes through cr.open from here, whose sources retry.
			r.cr.s.log.Warn("origin body of a cold request broke off, going on from the file's sources", "path", r.cr.p, "at", r.off, "err", err)
			r.first.Close()
			r.first, err = nil, nil
			if c, ok := r.rest.(io.Closer); ok {
				c.Close() // it starts at the old end of the first body
			}
			r.rest = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
		return r.Read(p)
	}
	if r.rest == nil {
		if err := r.openRest(); err != nil {
			return 0, err
		}
	}
	n, err := r.rest.Read(p)
	r.off += int64(n)
	return n, err
}

// openRest opens what follows the first origin body.
func (r *coldReader) openRest() error {
	start := r.off
	if r.first != nil {
		start = r.firstEnd
	}
	rest, err := r.cr.open(r.ctx, start, r.end-start)
	r.rest = rest
	return err
}

func (r *coldReader) Close() error {
	if r.first != nil {
		r.first.Close()
	}
	if c, ok := r.rest.(io.Closer); ok {
		c.Close()
	}
	return nil
}
