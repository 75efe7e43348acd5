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

// coldWindow bounds the origin request a cold request starts with: the
// planner's own run for a reader that waits (maxRunBytes), so that a
// player's first MiB costs one request, one round trip. No more: the
// origin pushes what was asked into the sockets' buffers whether or not
// the proxy keeps it, and when the tracker names peers the request stops
// at the next piece boundary (whole-file requests cost a flash crowd of
// five 1.5 copies of the file more).
const coldWindow = maxRunBytes

// coldSpan is the range a cold request asks the origin for at once: from
// the player's first byte, at most coldWindow. Once the tracker has
// answered, the file's scheduler takes over (see coldReader). ok is false
// for what cannot be placed without the size (a suffix range) or is not
// one range.
func coldSpan(r *http.Request) (off, n int64, ok bool) {
	ranges, err := byterange.Parse(r.Header.Get("Range"), math.MaxInt64)
	switch {
	case err != nil || len(ranges) > 1:
		return 0, 0, false
	case len(ranges) == 0:
		return 0, coldWindow, true
	case ranges[0].Start > math.MaxInt64/2: // bytes=-N
		return 0, 0, false
	}
	return ranges[0].Start, min(ranges[0].Length, coldWindow), true
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
func (l *lookup) ready() bool { return isClosed(l.done) }

// serveCold answers a file the proxy holds nothing of in one round trip:
// the player's range (its first coldWindow) goes to the origin at once,
// beside the tracker lookup, and the origin's bytes pass to the player as
// they arrive (the origin is the source of truth). They are staged
// meanwhile and enter the cache and the swarm once the info has come and
// their pieces verify. Once the file is open (info in hand), the file's
// scheduler takes over (see coldReader): at the next piece boundary when
// the tracker named peers, else where the origin request ends, the
// scheduler fetching ahead from there meanwhile. A file the tracker does
// not know is streamed from the origin alone.
func (s *Server) serveCold(c *gin.Context, p string, off, n int64) error {
	ctx := c.Request.Context()
	l := s.lookUp(p)
	var staged *preparedFile
	if !s.cacheBroken() {
		staged = s.staging.prepare()
	}
	meta, body, err := s.origin.Get(ctx, p, off, n)
	if err != nil || body == nil || manifest.ByType(meta.ContentType) {
		staged.discard()
	}
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
	cr := &coldRequest{s: s, p: p, meta: meta, l: l, stats: s.statsFor(p),
		started: make(chan struct{}), opened: make(chan struct{}), handed: make(chan struct{}), done: make(chan struct{})}
	firstEnd := min(off+n, meta.Size)
	var first *originBody
	if body != nil {
		// Only a request that gets bytes stages them and joins the file:
		// a probe past the end (the origin's 416) leaves the cache alone.
		if staged != nil {
			cr.keep = s.staging.fileFrom(p, meta, staged)
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
	// started is closed once the player's first bytes are out: opening the
	// file (cache entry, torrent: milliseconds of work) waits for them.
	started chan struct{}
	// opened is closed once settle has opened the file for the tracker's
	// answer: f, or nil when there is none to use.
	opened chan struct{}
	f      *file
	// handed is closed when the file's scheduler took over before the
	// origin body's end: nothing more is staged for this request.
	handed chan struct{}
	done   chan struct{} // closed when the response has ended

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

// errOtherVersion ends a response whose origin version is not the one the
// tracker registered: under the registered hashes its bytes would not
// verify, and other sources hold the registered version, so rather than
// mix the response ends (and the origin is told to rehash).
func (cr *coldRequest) errOtherVersion() error {
	return fmt.Errorf("%s: the origin serves another version than the one registered", cr.p)
}

// open returns a reader of [off, off+n): the file's, once the tracker
// has answered with the origin's version, or the origin's alone.
func (cr *coldRequest) open(ctx context.Context, off, n int64) (io.Reader, error) {
	info, err := cr.l.wait(ctx)
	if err != nil && ctx.Err() != nil {
		return nil, err
	}
	if err == nil && !cr.matches(info) {
		cr.mismatch()
		return nil, cr.errOtherVersion()
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

// isStarted reports whether the player's first bytes are out.
func (cr *coldRequest) isStarted() bool { return isClosed(cr.started) }

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// openedFile returns settle's file and true once it has opened it (or
// found none to use); it never waits.
func (cr *coldRequest) openedFile() (*file, bool) {
	if !isClosed(cr.opened) {
		return nil, false
	}
	return cr.f, true
}

// settle opens the file as soon as the tracker answers, beside the
// response (so that the player's bytes never wait on it); once the origin
// body has gone to the file's scheduler or the response has ended, what
// it staged enters the cache (verified piece by piece) and the swarm. For
// a file the tracker does not know yet it waits for the registration
// instead.
//
// Meanwhile, when the tracker named peers, the file gets a playhead where
// the response ends, where the player reads next: the peers are asked for
// what follows while the response lasts and for most of a peer grace
// period after, short of the point where the scheduler would turn to the
// origin for it. With no peers to ask it would only fetch from the origin
// what nobody asked for yet.
func (cr *coldRequest) settle(next int64) {
	s := cr.s
	info, err := cr.l.wait(s.ctx)
	select {
	case <-cr.started:
	case <-cr.done:
	case <-s.ctx.Done():
		return
	}
	f := cr.file(info, err)
	cr.f = f
	close(cr.opened)
	linger := f != nil && len(info.Peers) > 0 && next < info.Size
	if linger {
		r := f.newReader(s.ctx, next, info.Size-next)
		defer r.Close()
	}
	select {
	case <-cr.done:
	case <-cr.handed:
	case <-s.ctx.Done():
		return
	}
	switch {
	case errors.Is(err, errUnknownFile):
		s.adoptLater(cr.p)
	case cr.keep == nil:
	case f == nil:
		if err == nil && !cr.matches(info) {
			cr.mismatch()
		}
		s.staging.drop(cr.p, cr.keep)
	default:
		if err := s.adoptInfo(info, cr.keep); err != nil {
			s.log.Warn("caching streamed bytes failed", "path", cr.p, "err", err)
		}
		s.staging.drop(cr.p, cr.keep)
	}
	if !linger {
		return
	}
	select {
	case <-cr.done:
	case <-s.ctx.Done():
		return
	}
	select {
	case <-time.After(s.cfg.PeerGrace * 3 / 4):
	case <-s.ctx.Done():
	}
}

// coldReader reads [off, end) for a cold request: first what the origin is
// already sending, passed straight on, then from the file (its scheduler)
// once settle has opened it. When the tracker named peers (they may hold
// the rest) the file takes over at the next piece boundary and the origin
// request stops there; else the origin body is passed on to its end while
// the file's reader of what follows is open already, so the scheduler
// fetches ahead meanwhile.
type coldReader struct {
	cr       *coldRequest
	ctx      context.Context
	first    *originBody // the cold origin body; nil once read, handed or broken
	firstEnd int64       // where the reader stops passing first on
	decided  bool        // firstEnd is final
	handTo   *file       // at firstEnd the file takes over
	next     *laterBody  // at firstEnd the origin's next body goes on
	refuse   bool        // at firstEnd the response ends: another version
	rest     io.Reader
	off, end int64
	read     bool // some bytes were read
}

var _ io.ReadCloser = (*coldReader)(nil)

func (r *coldReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	if r.read && !r.cr.isStarted() {
		// The first bytes were written (and flushed, being short): the
		// file may be opened now.
		close(r.cr.started)
	}
	if r.first != nil {
		if !r.decided {
			r.decide()
		}
		if r.off == r.firstEnd {
			if err := r.handOff(); err != nil {
				return 0, err
			}
			return r.Read(p)
		}
		n, err := r.first.Read(p[:min(int64(len(p)), r.firstEnd-r.off)])
		r.read = r.read || n > 0
		r.off += int64(n)
		switch {
		case err == io.EOF || r.off == r.firstEnd && r.handTo == nil && !r.refuse:
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
			r.next.Close()
			r.next = nil
		}
		if n > 0 || err != nil {
			return n, err
		}
		return r.Read(p)
	}
	if r.rest == nil && r.next != nil {
		rest, err := r.next.wait(r.ctx)
		r.next = nil
		if err != nil {
			return 0, err
		}
		r.rest = rest
	}
	if r.rest == nil {
		rest, err := r.cr.open(r.ctx, r.off, r.end-r.off)
		if err != nil {
			return 0, err
		}
		r.rest = rest
	}
	n, err := r.rest.Read(p)
	r.off += int64(n)
	return n, err
}

// decide sets, once settle has opened the file (it never waits for it),
// where the origin body stops being passed on and what follows it.
func (r *coldReader) decide() {
	cr := r.cr
	if !cr.l.ready() {
		return
	}
	info, err := cr.l.info, cr.l.err
	if err != nil {
		// Unknown, unreachable or refused: the origin alone, asked for
		// what follows its body at once (a new file's ETag changes once
		// the origin has hashed it, and the request names the old one).
		r.decided = true
		if r.firstEnd < r.end {
			r.next = cr.s.originLater(r.ctx, cr, r.firstEnd, r.end-r.firstEnd)
		}
		return
	}
	// The next piece boundary: the bytes up to it pass straight on.
	next := (r.off/info.PieceLength + 1) * info.PieceLength
	if !cr.matches(info) {
		r.decided, r.refuse = true, true
		r.firstEnd = min(r.firstEnd, next)
		return
	}
	f, ok := cr.openedFile()
	if !ok {
		return
	}
	r.decided = true
	switch {
	case f == nil:
	case len(info.Peers) > 0 && next < r.firstEnd:
		r.firstEnd, r.handTo = next, f
	case r.firstEnd < r.end:
		// The scheduler fetches what follows the origin body meanwhile.
		r.rest = f.newReader(r.ctx, r.firstEnd, r.end-r.firstEnd)
	}
}

// handOff ends the origin body at firstEnd: the response ends there
// (another version), or the file takes over.
func (r *coldReader) handOff() error {
	r.first.Close()
	r.first = nil
	if r.refuse {
		return r.cr.errOtherVersion()
	}
	close(r.cr.handed)
	r.rest = r.handTo.newReader(r.ctx, r.off, r.end-r.off)
	return nil
}

func (r *coldReader) Close() error {
	if r.first != nil {
		r.first.Close()
	}
	r.next.Close()
	if c, ok := r.rest.(io.Closer); ok {
		c.Close()
	}
	return nil
}

// laterBody is an origin request for bytes a response reads later, made
// now.
type laterBody struct {
	s    *Server
	done chan struct{}
	body io.ReadCloser
	err  error
}

// originLater asks the origin for [off, off+n) of cr's version in the
// background.
func (s *Server) originLater(ctx context.Context, cr *coldRequest, off, n int64) *laterBody {
	lb := &laterBody{s: s, done: make(chan struct{})}
	s.wg.Go(func() {
		defer close(lb.done)
		body, err := s.origin.Range(ctx, cr.p, off, n, cr.meta.Size, cr.meta.ETag)
		if errors.Is(err, fetch.ErrChanged) {
			s.reports.send(fileinfo.Report{Kind: fileinfo.ReportHashMismatch, Path: cr.p, Detail: err.Error()})
		}
		lb.err = err
		if err == nil {
			lb.body = cr.originBody(body, off)
		}
	})
	return lb
}

// wait returns the body, once the origin has answered.
func (lb *laterBody) wait(ctx context.Context) (io.ReadCloser, error) {
	select {
	case <-lb.done:
		return lb.body, lb.err
	case <-ctx.Done():
		lb.Close()
		return nil, ctx.Err()
	}
}

// Close closes the body unread, once it has come; a nil lb is nothing.
func (lb *laterBody) Close() {
	if lb == nil {
		return
	}
	lb.s.wg.Go(func() {
		<-lb.done
		if lb.body != nil {
			lb.body.Close()
		}
	})
}
