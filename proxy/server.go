package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/cache"
	"github.com/p2sp/p2sp/internal/failover"
	"github.com/p2sp/p2sp/internal/fetch"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/internal/manifest"
	"github.com/p2sp/p2sp/internal/swarm"
	"github.com/p2sp/p2sp/metrics"
)

// Server is a running proxy: its cache, its BitTorrent client and the
// files it holds open.
type Server struct {
	cfg     Config
	log     *slog.Logger
	cache   *cache.Cache
	swarm   *swarm.Swarm
	tracker *trackerClient
	origin  *fetch.Pool
	reports *reporter
	staging *staging
	// manifests are the copies of HLS and DASH manifests (manifest.go).
	manifests *manifests
	metrics   *metrics.Proxy
	health    httpapi.Health
	// tls is what Serve speaks to players; nil: plain HTTP.
	tls *tls.Config

	// ctx is the owner of every background goroutine; Close cancels it and
	// waits for wg.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	announceNow chan struct{} // wakes the announce loop
	announced   chan struct{} // closed when the announce loop has ended
	// cacheBrokenUntil (unix nanoseconds): after a disk error the proxy
	// streams from the origin without caching for a while.
	cacheBrokenUntil atomic.Int64

	// bind orders the binding of files to cache entries and torrents:
	// activate, and the retiring of files (evicted, drop).
	bind sync.Mutex

	mu          sync.Mutex
	revalidated map[string]time.Time   // by path: the last check of a complete entry
	files       map[string]*file       // by infohash
	stats       map[string]*fileStats  // by path, kept across versions
	prefetching map[string]bool        // by path: segments being prefetched
	live        map[string]*liveStream // by directory: live streams followed
}

// upstreamBackoff is how long an origin or tracker that failed is passed
// over: a second, doubling to at most 30 s while it keeps failing.
var upstreamBackoff = failover.Backoff{Base: time.Second, Max: 30 * time.Second}

// New opens the cache (re-verifying what it holds) and starts the
// BitTorrent client.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tc, err := httpapi.ServerTLS(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		tls: tc,
		cfg: cfg, log: cfg.Logger.With("component", "proxy"),
		tracker: &trackerClient{bases: cfg.Trackers, health: failover.New(len(cfg.Trackers), false, upstreamBackoff), passkey: cfg.Passkey, client: cfg.HTTPClient},
		metrics: metrics.NewProxy(cfg.Registry),
		ctx:     ctx, cancel: cancel,
		files:       map[string]*file{},
		revalidated: map[string]time.Time{},
		announceNow: make(chan struct{}, 1),
		announced:   make(chan struct{}),
		stats:       map[string]*fileStats{},
		manifests:   newManifests(),
		prefetching: map[string]bool{},
		live:        map[string]*liveStream{},
	}
	origins := make([]*fetch.Origin, len(cfg.Origins))
	for i, base := range cfg.Origins {
		// An origin silent mid-body for a third of the stall timeout is
		// given up on and asked again (another one, if there are
		// others), before the waiting player's own stall timeout.
		origins[i] = &fetch.Origin{Base: base, Client: cfg.HTTPClient, IdleTimeout: cfg.StallTimeout / 3}
	}
	s.origin = fetch.NewPool(origins, fetch.PoolOptions{Backoff: upstreamBackoff, Log: s.log, OnFailover: func(midBody bool) {
		at := metrics.FailoverRequest
		if midBody {
			at = metrics.FailoverBody
		}
		s.metrics.OriginFailovers.WithLabelValues(at).Inc()
	}})
	s.reports = &reporter{
		targets: slices.Concat(cfg.Trackers, cfg.Origins), client: cfg.HTTPClient,
		origins: cfg.Origins, user: cfg.User, token: cfg.UserToken,
		log: s.log, wg: &s.wg, ctx: ctx, last: map[[2]string]time.Time{},
	}
	s.cache, err = cache.Open(ctx, cache.Config{
		Dir:      filepath.Join(cfg.CacheDir, "files"),
		Capacity: cfg.CacheSize,
		OnEvict:  s.evicted,
		Logger:   s.log.With("component", "cache"),
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("open cache: %w", err)
	}
	if s.tracker.trust, err = newTrust(cfg.OriginKeys, cfg.Origins, cfg.CacheDir, cfg.HTTPClient, s.log); err != nil {
		cancel()
		s.cache.Close()
		return nil, err
	}
	s.staging, err = newStaging(filepath.Join(cfg.CacheDir, "staging"), cfg.CacheSize, s.wg.Go)
	if err != nil {
		cancel()
		s.cache.Close()
		return nil, err
	}
	s.swarm, err = swarm.New(swarm.Config{
		Listen:     cfg.BTListen,
		Storage:    s.cache,
		DataDir:    filepath.Join(cfg.CacheDir, "bt"),
		Logger:     s.log.With("component", "bittorrent"),
		HTTPClient: cfg.HTTPClient,
	})
	if err != nil {
		cancel()
		s.cache.Close()
		return nil, err
	}
	s.wg.Go(func() {
		defer close(s.announced)
		s.announceLoop()
	})
	s.wg.Go(s.warmUp)
	// Seed what the cache already holds.
	for _, e := range s.cache.Entries() {
		if e.HaveCount() == 0 {
			continue
		}
		if _, err := s.activate(e.Info(), e); err != nil {
			s.log.Warn("cannot seed cached file", "path", e.Info().Path, "err", err)
		}
	}
	s.metrics.SetState(s.metricsState)
	s.health.SetReady(s.ready)
	return s, nil
}

// warmUp opens a connection to every origin and tracker before any
// player asks, so that the first cold request finds them in the client's
// idle pool: a proxy that has talked to them costs no handshake.
func (s *Server) warmUp() {
	ctx, cancel := context.WithTimeout(s.ctx, 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, base := range slices.Concat(s.cfg.Origins, s.cfg.Trackers) {
		wg.Go(func() {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/healthz", nil)
			if err != nil {
				return
			}
			resp, err := s.cfg.HTTPClient.Do(req)
			if err != nil {
				s.log.Debug("warm-up", "to", base, "err", err)
				return
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
		})
	}
	wg.Wait()
}

// Close stops the background work, the swarm and the cache.
func (s *Server) Close() error {
	s.cancel()
	<-s.announced // the stopped announces need the swarm
	errs := []error{s.swarm.Close()}
	s.wg.Wait()
	errs = append(errs, s.cache.Close())
	return errors.Join(errs...)
}

// BTPort is the port peers connect to.
func (s *Server) BTPort() int { return s.swarm.Port() }

// Handler routes the proxy's HTTP API.
func (s *Server) Handler() http.Handler {
	e := httpapi.NewEngine()
	e.Use(s.checkHost)
	s.health.Register(e)
	e.GET("/metrics", gin.WrapH(metrics.Handler(s.cfg.Registry)))
	e.GET("/v1/status", httpapi.Handle(s.handleStatus))
	e.GET("/stream/*path", s.startClock, httpapi.Handle(s.handleStream))
	e.HEAD("/stream/*path", httpapi.Handle(s.handleStream))
	s.pageRoutes(e)
	return e
}

// statsFor returns the counters of a path.
func (s *Server) statsFor(path string) *fileStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.statsLocked(path)
}

// addBySource adds n to the counter of source.
func addBySource(source string, n int64, cache, peer, origin *atomic.Int64) {
	switch source {
	case metrics.SourceCache:
		cache.Add(n)
	case metrics.SourcePeer:
		peer.Add(n)
	case metrics.SourceOrigin:
		origin.Add(n)
	}
}

// served counts bytes sent to a player.
func (s *Server) served(st *fileStats, source string, n int64) {
	if n <= 0 {
		return
	}
	addBySource(source, n, &st.cacheBytes, &st.peerBytes, &st.originBytes)
	s.metrics.BytesServed.WithLabelValues(source).Add(float64(n))
	if ls := st.live.Load(); ls != nil {
		ls.count(st, source, n)
	}
}

// activate returns the open file for info bound to entry, joining its
// torrent and starting its scheduler the first time. A file still open on
// an earlier entry of the same version (removed, its eviction callback
// still on its way), or one already closing, is retired first: its
// torrent reads that entry's files, not entry's.
func (s *Server) activate(info *fileinfo.Info, entry *cache.Entry) (*file, error) {
	s.bind.Lock()
	defer s.bind.Unlock()
	s.mu.Lock()
	f := s.files[info.InfoHash]
	s.mu.Unlock()
	if f != nil && f.entry == entry && f.ctx.Err() == nil && !f.torrent.Closed() {
		return f, nil
	}
	if removed(entry) {
		return nil, fmt.Errorf("activate %s: %w", info.Path, cache.ErrRemoved)
	}
	if f != nil {
		s.retire(info.InfoHash, f, errors.New("its cache entry was replaced"))
	}
	t, err := s.swarm.Open(info, info.Peers)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	f = newFile(s, info, entry, t, s.statsLocked(info.Path))
	if len(info.Peers) > 0 {
		f.peersUntil = time.Now().Add(time.Second)
	}
	s.files[info.InfoHash] = f
	s.mu.Unlock()
	s.wg.Go(f.run)
	select {
	case s.announceNow <- struct{}{}:
	default:
	}
	return f, nil
}

// removed reports whether e has left the cache.
func removed(e *cache.Entry) bool {
	select {
	case <-e.Removed():
		return true
	default:
		return false
	}
}

// maxStatPaths bounds the paths whose counters the proxy keeps (and those
// it remembers revalidating). Open files keep theirs; the others go least
// recently used first.
const maxStatPaths = 1024

func (s *Server) statsLocked(p string) *fileStats {
	st, ok := s.stats[p]
	if !ok {
		if len(s.stats) >= maxStatPaths {
			s.pruneStatsLocked()
		}
		st = &fileStats{}
		s.stats[p] = st
	}
	st.used = time.Now()
	if !manifest.ByName(p) {
		st.live.Store(s.live[path.Dir(p)])
	}
	return st
}

// pruneStatsLocked forgets the counters of the least recently used paths
// that no open file counts into, down to three quarters of maxStatPaths.
func (s *Server) pruneStatsLocked() {
	open := map[string]bool{}
	for _, f := range s.files {
		open[f.info.Path] = true
	}
	var idle []string
	for p := range s.stats {
		if !open[p] {
			idle = append(idle, p)
		}
	}
	slices.SortFunc(idle, func(a, b string) int { return s.stats[a].used.Compare(s.stats[b].used) })
	for _, p := range idle[:max(0, min(len(idle), len(s.stats)-maxStatPaths*3/4))] {
		delete(s.stats, p)
	}
}

// drop closes a file version for good: readers get err, the torrent is
// left and the cache entry removed, so the next request asks the tracker
// again. What was staged for the path goes first, so that no adoption
// brings the version back (see adoptInfo).
func (s *Server) drop(f *file, err error) {
	s.log.Warn("dropping file", "path", f.info.Path, "infohash", f.info.InfoHash, "err", err)
	f.fail(err)
	s.staging.forget(f.info.Path)
	s.bind.Lock()
	s.retire(f.info.InfoHash, f, err)
	s.bind.Unlock()
	s.cache.Remove(f.info.InfoHash)
}

// evicted is the cache's callback: the entry is gone, so is its torrent;
// unless the file open for the infohash is bound to a newer entry, which
// the callback is not about.
func (s *Server) evicted(infohash string) {
	s.bind.Lock()
	defer s.bind.Unlock()
	s.mu.Lock()
	f := s.files[infohash]
	s.mu.Unlock()
	if f != nil && !removed(f.entry) {
		return
	}
	s.retire(infohash, f, errors.New("evicted from the cache"))
}

// retire closes f (if not nil) with err and leaves the torrent. s.bind is
// held.
func (s *Server) retire(infohash string, f *file, err error) {
	if f != nil {
		f.cancel(err)
		s.mu.Lock()
		if s.files[infohash] == f {
			delete(s.files, infohash)
		}
		s.mu.Unlock()
	}
	s.swarm.Drop(infohash)
}

// checkHost refuses requests whose Host is not this proxy: a web page can
// point a name of its own at 127.0.0.1 (DNS rebinding) and would otherwise
// read the user's streams and lists and act as the user. Loopback names,
// and the address the proxy was told to listen on, are this proxy.
func (s *Server) checkHost(c *gin.Context) {
	host := c.Request.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	listen, _, _ := net.SplitHostPort(s.cfg.Listen)
	ip, _ := netip.ParseAddr(host)
	lip, _ := netip.ParseAddr(listen)
	switch {
	case strings.EqualFold(host, "localhost"), ip.IsLoopback(), host == listen && host != "":
	case listen == "" || lip.IsUnspecified():
		// Listening on every address was asked for explicitly.
	default:
		c.AbortWithStatusJSON(http.StatusMisdirectedRequest, gin.H{"error": fmt.Sprintf("Host %q is not this proxy", c.Request.Host)})
	}
}

// cacheRetry is how long a failed cache is left alone.
const cacheRetry = time.Minute

// cacheFailed records a disk error: streams go to the origin without the
// cache for cacheRetry.
func (s *Server) cacheFailed(err error) {
	s.log.Error("cache write failed: streaming from the origin without caching", "for", cacheRetry, "err", err)
	s.cacheBrokenUntil.Store(time.Now().Add(cacheRetry).UnixNano())
}

func (s *Server) cacheBroken() bool {
	return time.Now().UnixNano() < s.cacheBrokenUntil.Load()
}

// lookup asks the tracker for p's info, noting on p's status whether the
// answer was refused (and why) or verified.
func (s *Server) lookup(ctx context.Context, p string) (*fileinfo.Info, error) {
	info, err := s.tracker.fileInfo(ctx, p)
	switch {
	case errors.Is(err, errUntrusted):
		s.log.Warn("refused file info from the tracker", "path", p, "err", err)
		s.statsFor(p).setRefused(err)
	case err == nil:
		s.statsFor(p).refused.Store(nil)
	}
	return info, err
}

// revalidateEvery bounds how often a complete entry is checked against the
// tracker.
const revalidateEvery = 30 * time.Second

// revalidate asks the tracker, in the background, whether a cache entry
// is still the file's current version, and hands its peers to the open
// torrent. A cache hit, complete or not, is served at once with no round
// trip; if the origin has registered new bytes since, the old version
// leaves the cache, and the next request fetches the new one.
func (s *Server) revalidate(info *fileinfo.Info) {
	s.mu.Lock()
	if time.Since(s.revalidated[info.Path]) < revalidateEvery {
		s.mu.Unlock()
		return
	}
	if len(s.revalidated) >= maxStatPaths {
		// What is left are the complete entries played in the last
		// revalidateEvery.
		forgetOlder(s.revalidated, revalidateEvery)
	}
	s.revalidated[info.Path] = time.Now()
	s.mu.Unlock()
	s.wg.Go(func() {
		cur, err := s.lookup(s.ctx, info.Path)
		if err != nil {
			return // unknown, refused or unreachable: keep what verified
		}
		s.mu.Lock()
		f := s.files[info.InfoHash]
		s.mu.Unlock()
		if cur.InfoHash == info.InfoHash {
			if f != nil {
				f.torrent.AddPeers(cur.Peers)
			}
			return
		}
		s.log.Info("cached version superseded on the origin", "path", info.Path, "old", info.InfoHash, "new", cur.InfoHash)
		if f != nil {
			s.drop(f, fmt.Errorf("%s was superseded by a new version", info.Path))
		} else {
			s.cache.Remove(info.InfoHash)
		}
	})
}
