package proxy

import (
	"context"
	"errors"
	"io"
	"os"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/metrics"
)

// startKey is the gin context key of a stream request's arrival time.
const startKey = "p2sp.start"

// startClock notes when a stream request arrived, before the tracker
// lookup and the torrent's start, which are part of what a player waits
// for its first byte.
func (s *Server) startClock(c *gin.Context) {
	c.Set(startKey, time.Now())
}

// timed wraps a byterange.Content's Open so that the response's first body
// byte is observed as time to first byte and, after it, every read that
// waits longer than metrics.StallThreshold as a stall. Readers of files on
// disk (the cache's, sendfiled) are returned unwrapped: their bytes are
// there, so the first byte is ready when Open returns, and wrapping them
// would lose sendfile.
func (s *Server) timed(c *gin.Context, open opener) opener {
	start := c.GetTime(startKey)
	if start.IsZero() {
		start = time.Now()
	}
	clock := &firstByteClock{m: s.metrics, start: start}
	return func(ctx context.Context, off, n int64) (io.Reader, error) {
		r, err := open(ctx, off, n)
		if err != nil {
			return r, err
		}
		switch r.(type) {
		case *os.File, *io.LimitedReader:
			clock.firstByte()
			return r, nil
		}
		return &timedReader{r: r, clock: clock}, nil
	}
}

// firstByteClock is one response's timing. byterange reads a response's
// parts one after another, so it needs no lock.
type firstByteClock struct {
	m     *metrics.Proxy
	start time.Time
	seen  bool
}

func (c *firstByteClock) firstByte() {
	if !c.seen {
		c.seen = true
		c.m.TimeToFirstByte.Observe(time.Since(c.start).Seconds())
	}
}

// timedReader times the reads of a body that may wait for its bytes (the
// swarm's, the origin's).
type timedReader struct {
	r     io.Reader
	clock *firstByteClock
}

var _ io.ReadCloser = (*timedReader)(nil)

func (t *timedReader) Read(p []byte) (int, error) {
	t0 := time.Now()
	n, err := t.r.Read(p)
	switch {
	case t.clock.seen:
		t.clock.m.ObserveWait(time.Since(t0))
	case n > 0:
		t.clock.firstByte()
	}
	return n, err
}

// Close closes the wrapped reader, which byterange would have closed.
func (t *timedReader) Close() error {
	if c, ok := t.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// metricsState is the proxy's state for one scrape: the swarm's totals
// come from the whole BitTorrent client, so torrents left since keep
// counting and the counters never go back.
func (s *Server) metricsState() metrics.ProxyState {
	sw := s.swarm.Stats()
	cs := s.cache.Stats()
	return metrics.ProxyState{
		Peers:                    sw.Peers,
		BannedPeers:              len(s.swarm.BannedIPs()),
		CacheBytes:               cs.Bytes,
		CacheCapacity:            cs.Capacity,
		CacheEntries:             cs.Entries,
		CacheEvictions:           cs.Evictions,
		UploadedBytes:            sw.UploadedBytes,
		PeerPiecesVerified:       sw.GoodPieces,
		PeerVerificationFailures: sw.BadPieces,
		Streams:                  s.liveStates(),
	}
}

// ready is the proxy's readiness: New returns only once the cache is
// loaded (and re-verified) and the BitTorrent client listens, so what
// remains to check is that neither has since been closed.
func (s *Server) ready() error {
	if s.ctx.Err() != nil {
		return errors.New("proxy closed")
	}
	if s.swarm.Port() == 0 {
		return errors.New("BitTorrent port not listening")
	}
	return nil
}
