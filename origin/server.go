package origin

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/gin-gonic/gin"
	"golang.org/x/sync/singleflight"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/metrics"
)

// Server is an origin: its HTTP handler, its catalog of media files and,
// once Serve runs, the scanner and the hashing worker that keep the catalog
// and the tracker up to date.
type Server struct {
	cfg   Config
	log   *slog.Logger
	media media
	// local is media when it is a local directory, which the watcher
	// watches; nil on object storage, which only the scan lists.
	local       *localMedia
	m           *metrics.Origin
	egress      *egress
	cat         *catalog
	reportLimit *httpapi.IPLimiter
	reportBook  *reportBook
	authGuard   *httpapi.AuthGuard
	health      httpapi.Health
	engine      *gin.Engine
	// tls is what Serve speaks on its listener; nil: plain HTTP.
	tls *tls.Config
	// key signs every file info the origin registers.
	key ed25519.PrivateKey
	// users holds the users' lists; nil without a data directory.
	users     *userStore
	durations durationCache

	// hashing joins the requests that hash a file at once (hashNow).
	hashing singleflight.Group

	// publicURL is written by Serve before it starts the worker and the
	// HTTP server, its only readers.
	publicURL string
	serving   atomic.Bool
	// ready is set once the first scan of the media finished.
	ready atomic.Bool
	// trackerDown suspends registrations until the next scan.
	trackerDown atomic.Bool
}

// New returns an origin for cfg. Close releases the media.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	tc, err := httpapi.ServerTLS(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("origin: %w", err)
	}
	log := cfg.Logger.With("role", "origin")
	var med media
	var local *localMedia
	if strings.HasPrefix(cfg.Media, s3Scheme) {
		med, err = openS3Media(cfg.Media, cfg.S3)
	} else {
		local, err = openLocalMedia(cfg.Media, log)
		med = local
	}
	if err != nil {
		return nil, err
	}
	m := metrics.NewOrigin(cfg.Registry)
	s := &Server{
		cfg:         cfg,
		log:         log,
		media:       med,
		local:       local,
		m:           m,
		egress:      newEgress(cfg.RateLimit),
		cat:         newCatalog(m, cfg.TrackerURL != "", cfg.ScanInterval),
		reportLimit: httpapi.NewIPLimiter(reportRate, reportBurst, maxReportAddrs),
		reportBook:  newReportBook(reportWindow, wholeFileVoters, maxReportAddrs),
		authGuard:   httpapi.NewAuthGuard(),
		tls:         tc,
	}
	if cfg.KeyFile != "" {
		s.key, err = LoadOrCreateKey(cfg.KeyFile)
	} else {
		s.log.Warn("no --data-dir or --key-file: signing with a key of this run only")
		_, s.key, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		med.Close()
		return nil, err
	}
	if cfg.DataDir != "" {
		if s.users, err = newUserStore(cfg.DataDir); err != nil {
			med.Close()
			return nil, err
		}
	}
	s.health.SetReady(func() error {
		if !s.ready.Load() {
			return errors.New("first scan of the media not finished")
		}
		return nil
	})
	s.engine = s.routes()
	return s, nil
}

// Close releases the media. Call it after Serve returned.
func (s *Server) Close() error {
	return s.media.Close()
}

// Handler returns the origin's HTTP handler.
func (s *Server) Handler() http.Handler { return s.engine }

func (s *Server) routes() *gin.Engine {
	e := httpapi.NewEngine()
	s.health.Register(e)
	e.GET("/metrics", gin.WrapH(metrics.Handler(s.cfg.Registry)))
	files := httpapi.Handle(s.serveFile)
	e.GET("/files/*path", s.countRequest, files)
	e.HEAD("/files/*path", s.countRequest, files)
	e.GET("/v1/catalog", httpapi.Handle(s.getCatalog))
	e.GET("/v1/key", httpapi.Handle(s.getKey))
	e.GET("/v1/files-info/*path", httpapi.Handle(s.getFileInfo))
	e.POST("/v1/reports", httpapi.Handle(s.postReport))
	s.userRoutes(e)
	return e
}

// countRequest counts a /files request by the status it was answered with,
// and every body byte written, error answers included.
func (s *Server) countRequest(c *gin.Context) {
	c.Writer = &countingWriter{ResponseWriter: c.Writer, sent: s.m.SentBytes}
	c.Next()
	s.m.ObserveRequest(c.Writer.Status())
}

// getFileInfo answers GET /v1/files-info/*path with the origin's own hash
// of the file's current version.
func (s *Server) getFileInfo(c *gin.Context) error {
	p, err := fileinfo.CleanPath(c.Param("path"))
	if err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "bad path: %w", err)
	}
	info := s.cat.info(p)
	if info == nil {
		return httpapi.Errorf(http.StatusNotFound, "%s is not hashed (yet)", p)
	}
	c.JSON(http.StatusOK, info)
	return nil
}
