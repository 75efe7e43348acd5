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

// coldSpan is the range a cold request asks the origin for at once: the
// whole range the player asked for (to the file's end when it is open),
// in one request, so that no byte of it waits on a second round trip.
// Once the tracker has answered, the file's scheduler takes over (see
// coldReader). ok is false for what cannot be placed without the size (a
// suffix range) or is not one range.
func coldSpan(r *http.Request) (off, n int64, ok bool) {
	ranges, err := byterange.Parse(r.Header.Get("Range"), math.MaxInt64)
	switch {
	case err != nil || len(ranges) > 1:
		return 0, 0, false
	case len(ranges) == 0:
		return 0, math.MaxInt64, true
	case ranges[0].Start > math.MaxInt64/2: // bytes=-N
		return 0, 0, false
	}
	return ranges[0].Start, ranges[0].Length, true
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
// the player's whole range goes to the origin at once, beside the tracker
// lookup, and the origin's bytes pass to the player as they arrive (the
// origin is the source of truth). They are staged meanwhile and enter the
// cache and the swarm once the info has come and their pieces verify. Once
// the file is open (info in hand), the file's scheduler takes over at the
// next piece boundary (see coldReader): the origin body goes on as one of
// its runs, or stops there when the tracker named peers. A file the
// tracker does not know is streamed from the origin alone.
func (s *Server) serveCold(c *gin.Context, p string, off, n int64) error {
	ctx := c.Request.Context()
	l := s.lookUp(p)
	// The body may outlive the response: handed to the file's scheduler,
	// it is that run's to end.
	bodyCtx, cancelBody := context.WithCancel(s.ctx)
	detach := context.AfterFunc(ctx, cancelBody)
	var staged *preparedFile
	if !s.cacheBroken() {
		staged = s.staging.prepare()
	}
	meta, body, err := s.origin.Get(bodyCtx, p, off, n)
	if err != nil || body == nil || manifest.ByType(meta.ContentType) {
		staged.discard()
	}
	switch {
	case errors.Is(err, fetch.ErrNotFound):
		cancelBody()
		return httpapi.Errorf(http.StatusNotFound, "%s: no such file", p)
	case err != nil && ctx.Err() == nil:
		cancelBody()
		// The origin is away or odd: peers may still have the file.
		s.log.Warn("origin request failed, waiting for the tracker", "path", p, "err", err)
		info, lerr := l.wait(ctx)
		if lerr != nil {
			return httpapi.Errorf(http.StatusBadGateway, "%w", errors.Join(err, lerr))
		}
		return s.serveInfo(c, info)
	case err != nil:
		cancelBody()
		return nil // the player went away
	case manifest.ByType(meta.ContentType):
		cancelBody()
		// A manifest by its type, whatever its name: never the cache's.
		if body != nil {
			body.Close()
		}
		return s.serveManifest(c, p)
	}
	cr := &coldRequest{s: s, p: p, meta: meta, l: l, stats: s.statsFor(p),
		cancelBody: cancelBody, detach: detach,
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
		if !cr.isHanded() {
			cancelBody()
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
	// cancelBody ends the cold origin request; detach stops the response's
	// end from ending it, once the body is handed to the file's scheduler.
	cancelBody context.CancelFunc
	detach     func() bool // once the body is the file's run

	// started is closed once the player's first bytes are out: opening the
	// file (cache entry, torrent: milliseconds of work) waits for them.
	started chan struct{}
	// opened is closed once settle has opened the file for the tracker's
	// answer: f, or nil when there is none to use.
	opened chan struct{}
	f      *file
	// handed is closed when the response's origin body has been handed to
	// the file's scheduler: nothing more is staged for this request.
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

// isHanded reports whether the origin body went to the file's scheduler.
func (cr *coldRequest) isHanded() bool { return isClosed(cr.handed) }

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
// already sending, passed straight on, then, once settle has opened the
// file, from the file (its scheduler) from the next piece boundary on. At
// that boundary the origin body goes on as one of the file's runs, so the
// planner asks nobody else for its pieces: for a window of at most
// maxRunBytes (past which the planner decides, as for any reader), and not
// at all when the tracker named peers (they may hold the rest). A range
// whose rest fits in that window is passed on to its end without a
// hand-off: one request, one round trip.
type coldReader struct {
	cr       *coldRequest
	ctx      context.Context
	first    *originBody // the cold origin body; nil once read, handed or broken
	firstEnd int64       // where the reader stops passing first on
	decided  bool        // firstEnd is final
	handTo   *file       // at firstEnd the file takes over
	run      int         // ... and first goes on as its run for pieces [firstEnd's, run)
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
		}
		if n > 0 || err != nil {
			return n, err
		}
		return r.Read(p)
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
		r.decided = true // unknown, unreachable or refused: the origin alone
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
	if f == nil || next >= r.firstEnd {
		return
	}
	peers := len(info.Peers) > 0
	if !peers && r.firstEnd-next <= maxRunBytes {
		return
	}
	r.firstEnd, r.handTo = next, f
	r.run = int(next / info.PieceLength)
	if !peers {
		// Whole pieces of the body only, at most the planner's own run.
		last := info.NumPieces()
		if r.end < info.Size {
			last = int(r.end / info.PieceLength)
		}
		r.run = min(last, r.run+max(1, int(maxRunBytes/info.PieceLength)))
	}
}

// handOff ends the pass-through at firstEnd: the response ends (another
// version), or the file takes over, the origin body going on as its run.
func (r *coldReader) handOff() error {
	cr, f := r.cr, r.handTo
	if r.refuse {
		r.first.Close()
		r.first = nil
		return cr.errOtherVersion()
	}
	body := r.first
	r.first = nil
	if first := int(r.off / f.info.PieceLength); r.run > first {
		cr.detach()
		f.adoptRun(body.ReadCloser, cr.cancelBody, first, r.run)
	} else {
		body.Close()
		cr.cancelBody()
	}
	close(cr.handed)
	r.rest = f.newReader(r.ctx, r.off, r.end-r.off)
	return nil
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
