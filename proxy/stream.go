package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path"
	"syscall"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/byterange"
	"github.com/p2sp/p2sp/internal/cache"
	"github.com/p2sp/p2sp/internal/fetch"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/internal/manifest"
	"github.com/p2sp/p2sp/metrics"
)

// handleStream serves /stream/{path}: a complete cache entry from disk with
// no network; a file whose info the cache holds from its torrent, fed by
// peers and the origin, with no round trip first; a file the proxy holds
// nothing of from the origin at once, beside the tracker lookup (see
// serveCold).
func (s *Server) handleStream(c *gin.Context) error {
	p, err := fileinfo.CleanPath(c.Param("path"))
	if err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "bad path: %w", err)
	}
	if manifest.ByName(p) {
		return s.serveManifest(c, p)
	}
	// A HEAD is a probe: it does not make the file recently used.
	lookup := s.cache.Lookup
	if c.Request.Method == http.MethodHead {
		lookup = s.cache.Peek
	}
	cached, hit := lookup(p)
	if hit {
		defer cached.Release()
		// The tracker is asked in the background whether this is still the
		// file's current version (and for fresh peers).
		s.revalidate(cached.Info())
		if cached.Complete() {
			return s.serveCached(c, cached)
		}
		return s.serveInfo(c, cached.Info())
	}
	// A conditional request may need no body at all (304, 412): it asks
	// the tracker first, so that it creates nothing unless it gets bytes.
	// So does a segment of a live stream the tracker said is registered:
	// its audience's proxies take it from the one that fetches it (see
	// playerDue), not each from the origin.
	if off, n, ok := coldSpan(c.Request); ok && c.Request.Method == http.MethodGet && !conditional(c.Request) && s.playerDue(p).IsZero() {
		return s.serveCold(c, p, off, n)
	}
	return s.serveLookedUp(c, p)
}

// serveLookedUp asks the tracker first: for a HEAD, and for ranges whose
// offset needs the file's size.
func (s *Server) serveLookedUp(c *gin.Context, p string) error {
	info, err := s.lookup(c.Request.Context(), p)
	switch {
	case errors.Is(err, errUnknownFile):
		return s.passThrough(c, p)
	case errors.Is(err, errUntrusted):
		// Info the origin did not sign says nothing about the bytes; the
		// origin alone still plays (and /v1/status says why).
		return s.serveOrigin(c, p, nil)
	case err != nil:
		// No tracker and nothing cached: the origin alone still plays.
		s.log.Warn("tracker lookup failed, streaming from the origin alone", "path", p, "err", err)
		return s.serveOrigin(c, p, nil)
	}
	return s.serveInfo(c, info)
}

// serveInfo serves a file whose info is known through its torrent. The
// cache entry and the torrent are made for the first body the request
// needs, so that a probe (a HEAD, or a request answered 304, 412 or 416)
// reserves nothing and evicts nothing.
func (s *Server) serveInfo(c *gin.Context, info *fileinfo.Info) error {
	var open opener
	release := func() {}
	defer func() { release() }()
	return s.serve(c, info, func(ctx context.Context, off, n int64) (io.Reader, error) {
		if open == nil {
			o, r, err := s.source(info)
			if err != nil {
				return nil, err
			}
			open, release = o, r
		}
		return open(ctx, off, n)
	}, nil)
}

// opener returns a reader of exactly the bytes [off, off+n) of a file.
type opener func(ctx context.Context, off, n int64) (io.Reader, error)

// source returns how a request reads info's bytes and what to release
// after it: the file's cache entry and torrent, or the origin alone when
// the cache cannot take the file.
func (s *Server) source(info *fileinfo.Info) (opener, func(), error) {
	direct := s.originOpener(info.Path, fetch.Meta{Size: info.Size, ETag: info.ETag}, nil)
	if s.cacheBroken() {
		return direct, func() {}, nil
	}
	entry, err := s.cache.Create(info)
	if errors.Is(err, cache.ErrNoSpace) {
		s.log.Warn("no room in the cache, streaming from the origin", "path", info.Path, "size", info.Size)
		return direct, func() {}, nil
	}
	if err != nil {
		s.cacheFailed(err)
		return direct, func() {}, nil
	}
	f, err := s.activate(info, entry)
	if err != nil {
		entry.Release()
		return nil, nil, httpapi.Errorf(http.StatusInternalServerError, "%w", err)
	}
	due := s.playerDue(info.Path)
	return func(ctx context.Context, off, n int64) (io.Reader, error) {
		return f.readerDue(ctx, off, n, due), nil
	}, entry.Release, nil
}

// serveCached answers from a complete, verified entry: a file of its own
// for each range, so the kernel sends it (sendfile) without copying.
func (s *Server) serveCached(c *gin.Context, e *cache.Entry) error {
	st := s.statsFor(e.Info().Path)
	return s.serve(c, e.Info(), func(_ context.Context, off, _ int64) (io.Reader, error) {
		return e.OpenAt(off)
	}, func(n int64) { s.served(st, metrics.SourceCache, n) })
}

// serve answers with the project's one range implementation. sent, if not
// nil, counts the bytes sent (readers that count for themselves leave it
// nil).
func (s *Server) serve(c *gin.Context, info *fileinfo.Info, open opener, sent func(int64)) error {
	err := byterange.Serve(c.Writer, c.Request, &byterange.Content{
		Size:    info.Size,
		ModTime: info.ModTime,
		ETag:    info.ETag,
		Name:    path.Base(info.Path),
		Open:    s.timed(c, open),
		Sent:    sent,
	})
	return s.streamError(c, info.Path, err)
}

// serveOrigin streams a file from the origin alone, range by range,
// keeping what passes in st (when not nil) for later adoption.
func (s *Server) serveOrigin(c *gin.Context, p string, st *staging) error {
	ctx := c.Request.Context()
	meta, err := s.origin.Head(ctx, p)
	if errors.Is(err, fetch.ErrNotFound) {
		return httpapi.Errorf(http.StatusNotFound, "%s: no such file", p)
	}
	if err != nil {
		return s.streamError(c, p, err)
	}
	if manifest.ByType(meta.ContentType) {
		// A manifest by its type, whatever its name.
		return s.serveManifest(c, p)
	}
	err = byterange.Serve(c.Writer, c.Request, &byterange.Content{
		Size: meta.Size, ModTime: meta.ModTime, ETag: meta.ETag,
		ContentType: meta.ContentType, Name: path.Base(p),
		Open: s.timed(c, s.originOpener(p, meta, st)),
	})
	return s.streamError(c, p, err)
}

// originOpener reads ranges of p's version meta from the origin alone,
// counting them for the player and keeping a copy in st (when not nil;
// staged on the first body, so that a probe stages nothing).
func (s *Server) originOpener(p string, meta fetch.Meta, st *staging) opener {
	return func(ctx context.Context, off, n int64) (io.Reader, error) {
		body, err := s.origin.Range(ctx, p, off, n, meta.Size, meta.ETag)
		if err != nil {
			if errors.Is(err, fetch.ErrChanged) {
				s.reports.send(fileinfo.Report{Kind: fileinfo.ReportHashMismatch, Path: p, Detail: err.Error()})
			}
			return nil, err
		}
		var keep *stagedFile
		if st != nil {
			keep = st.file(p, meta)
		}
		stats := s.statsFor(p)
		return &originBody{ReadCloser: body, off: off, keep: keep, count: func(k int64) {
			s.served(stats, metrics.SourceOrigin, k)
			s.metrics.OriginFetchedBytes.Add(float64(k))
		}}, nil
	}
}

// streamError records a failed stream on the path's status, unless the
// player merely went away (a seek closes the old connection), and clears
// it when a stream of the path succeeds.
func (s *Server) streamError(c *gin.Context, p string, err error) error {
	if err == nil {
		// The path plays again: an earlier failure is history.
		s.statsFor(p).lastErr.Store(nil)
		return nil
	}
	if c.Request.Context().Err() != nil || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	s.statsFor(p).setErr(err)
	s.log.Warn("stream failed", "path", p, "err", err)
	return httpapi.Errorf(http.StatusBadGateway, "%w", err)
}

// originBody passes origin bytes to the player, counting them and keeping
// a copy in a staged file.
type originBody struct {
	io.ReadCloser
	off   int64
	keep  *stagedFile
	count func(int64)
}

func (b *originBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.count(int64(n))
		b.keep.write(p[:n], b.off)
		b.off += int64(n)
	}
	return n, err
}

// conditional reports whether r carries a precondition that can answer it
// without a body.
func conditional(r *http.Request) bool {
	for _, h := range []string{"If-Match", "If-None-Match", "If-Modified-Since", "If-Unmodified-Since"} {
		if r.Header.Get(h) != "" {
			return true
		}
	}
	return false
}
