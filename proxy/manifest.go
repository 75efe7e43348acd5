package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"path"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/byterange"
	"github.com/p2sp/p2sp/internal/fetch"
	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/internal/manifest"
	"github.com/p2sp/p2sp/metrics"
)

// Manifests do not take the cache and the swarm: they are small, and a
// live one changes every segment, faster than a version could be hashed,
// registered and spread. The proxy keeps its last copy of each in memory
// and asks the origin conditionally (If-None-Match), so an unchanged
// playlist costs a 304 and a changed one is never answered stale.
const (
	// manifestTimeout bounds one origin request for a manifest: a player
	// asks again every segment duration.
	manifestTimeout = 5 * time.Second
	// manifestMemory bounds the copies kept, all paths together.
	manifestMemory = 16 << 20
)

// manifests holds the proxy's copies of manifests, by path.
type manifests struct {
	mu     sync.Mutex
	bytes  int64
	byPath map[string]*manifestSlot
}

// manifestSlot is one path's copy; sem (capacity 1) serialises the
// revalidations of the path, so that players asking together share one
// origin request.
type manifestSlot struct {
	sem  chan struct{}
	copy *manifestCopy // guarded by sem
	used time.Time     // guarded by manifests.mu
}

// manifestCopy is one version of a manifest as the origin sent it.
type manifestCopy struct {
	meta fetch.Meta
	body []byte
	kind manifest.Kind
	// checked is when the request that last validated it was sent.
	checked time.Time
}

func newManifests() *manifests { return &manifests{byPath: map[string]*manifestSlot{}} }

// slot returns p's slot, creating it.
func (m *manifests) slot(p string) *manifestSlot {
	m.mu.Lock()
	defer m.mu.Unlock()
	sl := m.byPath[p]
	if sl == nil {
		sl = &manifestSlot{sem: make(chan struct{}, 1)}
		m.byPath[p] = sl
	}
	sl.used = time.Now()
	return sl
}

// keep stores cp as p's copy (nil forgets it) and evicts the least
// recently used other copies over manifestMemory. The caller holds sl.sem.
func (m *manifests) keep(p string, sl *manifestSlot, cp *manifestCopy) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if sl.copy != nil {
		m.bytes -= int64(len(sl.copy.body))
	}
	sl.copy = cp
	if cp == nil {
		if m.byPath[p] == sl {
			delete(m.byPath, p)
		}
		return
	}
	m.bytes += int64(len(cp.body))
	for m.bytes > manifestMemory {
		var oldest string
		for q, o := range m.byPath {
			if o != sl && o.copy != nil && (oldest == "" || o.used.Before(m.byPath[oldest].used)) {
				oldest = q
			}
		}
		if oldest == "" {
			return
		}
		// A reader holding the evicted slot still serves its copy; the
		// next request of that path starts afresh.
		m.bytes -= int64(len(m.byPath[oldest].copy.body))
		delete(m.byPath, oldest)
	}
}

// serveManifest answers a manifest: from the copy when manifest.Fresh
// allows it, otherwise after asking the origin.
func (s *Server) serveManifest(c *gin.Context, p string) error {
	arrived := time.Now()
	ctx := c.Request.Context()
	sl := s.manifests.slot(p)
	select {
	case sl.sem <- struct{}{}:
	case <-ctx.Done():
		return nil // the player went away
	}
	cp, source, err := s.validManifest(ctx, p, sl, arrived)
	<-sl.sem
	if err != nil {
		return err
	}
	if cp.kind == manifest.Live {
		// Nor may the player's HTTP stack keep it.
		c.Header("Cache-Control", "no-cache")
		s.watchLive(p, cp.body, c.Request.RemoteAddr)
	}
	ctype := cp.meta.ContentType
	if ctype == "" {
		ctype = byterange.TypeByName(p)
	}
	st := s.statsFor(p)
	err = byterange.Serve(c.Writer, c.Request, &byterange.Content{
		Size: int64(len(cp.body)), ModTime: cp.meta.ModTime, ETag: cp.meta.ETag,
		ContentType: ctype, Name: path.Base(p),
		Open: s.timed(c, func(_ context.Context, off, n int64) (io.Reader, error) {
			return bytes.NewReader(cp.body[off : off+n]), nil
		}),
		Sent: func(n int64) { s.served(st, source, n) },
	})
	return s.streamError(c, p, err)
}

// validManifest returns p's copy, revalidated with the origin unless it
// is fresh, and whether its bytes came from the origin or the copy. The
// caller holds sl.sem.
func (s *Server) validManifest(ctx context.Context, p string, sl *manifestSlot, arrived time.Time) (*manifestCopy, string, error) {
	cp := sl.copy
	if cp != nil && manifest.Fresh(cp.kind, cp.checked, arrived, time.Now()) {
		return cp, metrics.SourceCache, nil
	}
	var etag string
	if cp != nil {
		etag = cp.meta.ETag
	}
	checked := time.Now()
	octx, cancel := context.WithTimeout(ctx, manifestTimeout)
	meta, body, err := s.origin.Whole(octx, p, etag, manifest.MaxSize)
	cancel()
	switch {
	case err == nil:
		s.metrics.OriginFetchedBytes.Add(float64(len(body)))
		cp = &manifestCopy{meta: meta, body: body, kind: manifest.Classify(body), checked: checked}
		if cp.kind == manifest.Live {
			if ls := s.liveStreamOf(p); ls != nil && !ls.awaitRegistered(ctx, p, body) {
				s.log.Debug("live playlist answered before its newest segment's registration", "path", p)
			}
		}
		s.manifests.keep(p, sl, cp)
		if cp.kind == manifest.Live {
			s.prefetch(p, body)
		}
		return cp, metrics.SourceOrigin, nil
	case errors.Is(err, fetch.ErrNotModified) && cp != nil:
		again := *cp
		again.checked = checked
		s.manifests.keep(p, sl, &again)
		return &again, metrics.SourceCache, nil
	case errors.Is(err, fetch.ErrNotFound):
		s.manifests.keep(p, sl, nil)
		return nil, "", httpapi.Errorf(http.StatusNotFound, "%s: no such file", p)
	case ctx.Err() != nil:
		return nil, "", ctx.Err()
	case cp != nil && manifest.ServeOnOriginError(cp.kind):
		s.log.Warn("origin unreachable, serving the on-demand manifest it sent before", "path", p, "err", err)
		return cp, metrics.SourceCache, nil
	}
	s.statsFor(p).setErr(err)
	return nil, "", httpapi.Errorf(http.StatusBadGateway, "manifest %s: %w", p, err)
}
