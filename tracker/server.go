package tracker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/metrics"
)

// Rate limits per remote address (per /64 for IPv6). A client announces
// every AnnounceInterval per torrent, so 20/s leaves room for a proxy with
// many files starting at once; reports come only when something is wrong.
const (
	announceRate   = 20
	announceBurst  = 40
	reportRate     = 5
	reportBurst    = 20
	maxLimitedAddr = 10000
)

// Server is a running tracker: the registry, the swarms, the reports and
// their HTTP handler.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics.Tracker

	store        Store
	limits       *httpapi.IPLimiter // announce and scrape
	reportLimits *httpapi.IPLimiter
	authGuard    *httpapi.AuthGuard
	reports      reportLog
	streams      *streams

	health  httpapi.Health
	handler http.Handler
	// tls is what Serve speaks on its listener; nil: plain HTTP.
	tls *tls.Config

	stop      context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New opens the store cfg names (the registry in cfg.DataDir by default)
// and starts the tracker's peer sweeper, which runs until ctx ends or
// Close is called.
func New(ctx context.Context, cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tc, err := httpapi.ServerTLS(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("tracker: %w", err)
	}
	m := metrics.NewTracker(cfg.Registry)
	s := &Server{
		cfg:          cfg,
		log:          cfg.Logger,
		metrics:      m,
		store:        store,
		limits:       httpapi.NewIPLimiter(announceRate, announceBurst, maxLimitedAddr),
		reportLimits: httpapi.NewIPLimiter(reportRate, reportBurst, maxLimitedAddr),
		authGuard:    httpapi.NewAuthGuard(),
		streams:      newStreams(),
		done:         make(chan struct{}),
		tls:          tc,
	}
	st, err := s.sweep(ctx)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("tracker: %w", err), store.Close())
	}
	s.health.SetReady(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		return s.store.Ping(ctx)
	})
	s.handler = s.routes()

	ctx, s.stop = context.WithCancel(ctx)
	go s.sweepLoop(ctx)
	s.log.Info("tracker ready", "data_dir", cfg.DataDir, "store", storeName(cfg.Store), "files", st.files)
	return s, nil
}

// Handler is the tracker's HTTP API.
func (s *Server) Handler() http.Handler { return s.handler }

// Close stops the sweeper and closes the registry. Call it after the
// HTTP server has stopped.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.stop()
		<-s.done
		s.closeErr = s.store.Close()
	})
	return s.closeErr
}

func (s *Server) routes() http.Handler {
	e := httpapi.NewEngine()
	s.health.Register(e)
	e.GET("/metrics", gin.WrapH(metrics.Handler(s.cfg.Registry)))
	auth := httpapi.Handle(s.requireToken)

	e.POST("/v1/files", auth, httpapi.Handle(s.postFile))
	// The whole list only for the origin's token: it tells anyone what
	// there is to watch (the origin's catalog stays public).
	e.GET("/v1/files", auth, httpapi.Handle(s.listFiles))
	e.GET("/v1/files/*path", httpapi.Handle(s.getFile))
	e.GET("/v1/torrents/*path", httpapi.Handle(s.getTorrent))
	e.GET("/v1/streams/*dir", httpapi.Handle(s.getStream))

	e.GET("/announce", s.announce)
	e.GET("/announce/:passkey", s.announce)
	e.GET("/scrape", s.scrape)

	e.POST("/v1/passkeys", auth, httpapi.Handle(s.postPasskey))
	e.GET("/v1/passkeys", auth, httpapi.Handle(s.listPasskeys))
	e.DELETE("/v1/passkeys/:name", auth, httpapi.Handle(s.revokePasskey))

	e.POST("/v1/reports", httpapi.Handle(s.postReport))
	e.GET("/v1/reports", auth, httpapi.Handle(s.getReports))
	return e
}

// sweepLoop expires silent peers and idle rate-limit buckets until ctx
// ends.
func (s *Server) sweepLoop(ctx context.Context) {
	defer close(s.done)
	// At most 5 s, since the gauges come from the sweep.
	t := time.NewTicker(min(max(s.cfg.PeerTTL/4, 10*time.Millisecond), 5*time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := s.sweep(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("sweep peers", "err", err)
			}
			s.limits.Prune()
			s.reportLimits.Prune()
			s.authGuard.Prune()
		}
	}
}

// sweep expires silent peers and sets the gauges to the store's totals.
func (s *Server) sweep(ctx context.Context) (storeStats, error) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	st, err := s.store.Sweep(ctx)
	if err != nil {
		return st, err
	}
	s.metrics.Torrents.Set(float64(st.files))
	s.metrics.Peers.Set(float64(st.peers))
	return st, nil
}

// requireToken refuses a request without "Authorization: Bearer <Token>",
// and any request from an address that failed too often (429). Both sides
// are hashed first so that the comparison takes the same time whatever the
// length of the guess.
func (s *Server) requireToken(c *gin.Context) error {
	if err := s.authGuard.Refused(c.Writer, c.Request); err != nil {
		return err
	}
	got := sha256.Sum256([]byte(c.GetHeader("Authorization")))
	want := sha256.Sum256([]byte("Bearer " + s.cfg.Token))
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		if c.GetHeader("Authorization") != "" { // no token is no guess
			s.authGuard.Failed(c.Request)
		}
		c.Header("WWW-Authenticate", `Bearer realm="p2sp-tracker"`)
		return httpapi.Errorf(http.StatusUnauthorized, "missing or wrong bearer token")
	}
	return nil
}

// readJSON decodes a JSON body of at most limit bytes into v.
func readJSON(c *gin.Context, limit int64, v any) error {
	b, err := httpapi.ReadBody(c, limit)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "decode body: %w", err)
	}
	return nil
}
