package proxy

import (
	"context"
	"errors"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/manifest"
)

// A live playlist names the segments its viewers ask for next. The proxy
// that serves it joins those segments' swarms at once and fetches them
// (peers first; the origin for what peers do not give in time, by the
// file's scheduler's usual rules), so that a viewer's request is a cache
// hit, and the proxies of one audience, reading the same playlist within
// a second, supply each other.
const (
	// prefetchSegments is how many of a live playlist's newest segments
	// are fetched ahead: a player starts about three from the edge.
	prefetchSegments = 3
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
	for _, seg := range manifest.Next(p, body, prefetchSegments) {
		seg, err := fileinfo.CleanPath(seg)
		if err != nil {
			continue
		}
		s.mu.Lock()
		busy := s.prefetching[seg]
		s.prefetching[seg] = true
		s.mu.Unlock()
		if busy {
			continue
		}
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.prefetching, seg)
				s.mu.Unlock()
			}()
			s.prefetchFile(seg)
		})
	}
}

// prefetchFile brings segment p into the cache, unless it is there or a
// player's request is streaming it from the origin already (its bytes are
// staged, and enter the cache from there: fetching them again would double
// the origin's cost).
func (s *Server) prefetchFile(p string) {
	if s.staging.has(p) {
		return
	}
	if e, ok := s.cache.Lookup(p); ok {
		complete := e.Complete()
		e.Release()
		if complete {
			return
		}
	}
	ctx, cancel := context.WithTimeout(s.ctx, prefetchTimeout)
	defer cancel()
	info, err := s.registered(ctx, p)
	if err != nil || s.cacheBroken() || s.staging.has(p) {
		s.log.Debug("segment not prefetched", "path", p, "err", err)
		return
	}
	entry, err := s.cache.Create(info)
	if err != nil {
		return
	}
	defer entry.Release()
	f, err := s.activate(info, entry)
	if err != nil {
		return
	}
	// A reader that reads nothing: its head at 0 makes the scheduler fetch
	// the segment, and no byte is counted as served.
	r := f.newReader(ctx, 0, info.Size)
	defer r.Close()
	for {
		changed := entry.Changed()
		if entry.Complete() {
			return
		}
		select {
		case <-changed:
		case <-entry.Removed():
			return
		case <-ctx.Done():
			return
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
