package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/manifest"
)

// A live playlist names the segments its viewers ask for next, and the
// tracker tells the proxies following the stream of each new one (live.go).
// The proxy joins those segments' swarms at once and fetches them, peers
// first: the first proxy of the swarm takes a segment from the origin, the
// others wait for it until the segment is due (plan.Reader.Due), so that a
// viewer's request is a cache hit and the audience's proxies supply each
// other.
const (
	// prefetchSegments is how many of a live playlist's newest segments
	// are fetched ahead: a player starts about three from the edge.
	prefetchSegments = 1
	// prefetchTimeout bounds one segment's prefetch.
	prefetchTimeout = 15 * time.Second
	// registerWait is how long a named segment may stay unknown to the
	// tracker: the origin registers a new file within a fraction of a
	// second (origin/watch.go), and the playlist names it just after.
	registerWait = 3 * time.Second
	registerPoll = 100 * time.Millisecond
)

// prefetch starts fetching the newest segments of the live playlist p.
func (s *Server) prefetch(p string, body []byte) {
	ls := s.liveStreamOf(p)
	for _, seg := range manifest.Next(p, body, prefetchSegments) {
		if seg, err := fileinfo.CleanPath(seg); err == nil {
			s.startPrefetch(seg, ls)
		}
	}
}

// startPrefetch fetches segment p in the background, unless that is under
// way; ls, if not nil, is its stream.
func (s *Server) startPrefetch(p string, ls *liveStream) {
	s.mu.Lock()
	busy := s.prefetching[p]
	s.prefetching[p] = true
	s.mu.Unlock()
	if busy {
		return
	}
	heard := time.Now()
	s.wg.Go(func() {
		defer func() {
			s.mu.Lock()
			delete(s.prefetching, p)
			s.mu.Unlock()
		}()
		if s.prefetchFile(p, ls, heard) && ls != nil {
			ls.edgeDelay.Store(int64(time.Since(heard)))
		}
	})
}

// prefetchFile brings segment p, heard of at heard, into the cache,
// unless it is there or a player's request is streaming it from the
// origin already (its bytes are staged, and enter the cache from there:
// fetching them again would double the origin's cost). It reports whether
// it brought the segment in.
func (s *Server) prefetchFile(p string, ls *liveStream, heard time.Time) bool {
	if s.staging.has(p) {
		return false
	}
	if e, ok := s.cache.Lookup(p); ok {
		complete := e.Complete()
		e.Release()
		if complete {
			return false
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, prefetchTimeout)
	defer cancel()
	info, err := s.registered(ctx, p)
	if err != nil || s.cacheBroken() || s.staging.has(p) {
		s.log.Debug("segment not prefetched", "path", p, "err", err)
		return false
	}
	entry, err := s.cache.Create(info)
	if err != nil {
		return false
	}
	defer entry.Release()
	f, err := s.activate(info, entry)
	if err != nil {
		return false
	}
	// A reader that reads nothing: it makes the scheduler fetch the
	// segment by its due time, from the proxies of the swarm first, and
	// no byte is counted as served.
	r := f.readerDue(ctx, 0, info.Size, ls.due(p, heard))
	defer r.Close()
	for {
		changed := entry.Changed()
		if entry.Complete() {
			return true
		}
		select {
		case <-changed:
		case <-entry.Removed():
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// registered waits up to registerWait for the tracker to know p.
func (s *Server) registered(ctx context.Context, p string) (*fileinfo.Info, error) {
	deadline := time.Now().Add(registerWait)
	for {
		info, err := s.lookup(ctx, p)
		if !errors.Is(err, errUnknownFile) || time.Now().After(deadline) {
			return info, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(registerPoll):
		}
	}
}
