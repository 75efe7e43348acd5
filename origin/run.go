package origin

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/p2sp/p2sp/internal/httpapi"
)

// Run serves an origin for cfg on cfg.Listen until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	s, err := New(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := httpapi.Listen(ctx, s.cfg.Listen)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}

// Serve serves the origin on ln until ctx ends, and runs the media scanner
// and the hashing worker meanwhile; it returns once all of them stopped.
// It speaks HTTPS on ln if the Config names a certificate. Without a
// PublicURL, registrations name "http://" (or "https://") + ln's address.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.serving.CompareAndSwap(false, true) {
		ln.Close()
		return errors.New("origin: Serve called twice")
	}
	ln = httpapi.TLSListener(ln, s.tls)
	s.publicURL = s.cfg.PublicURL
	if s.publicURL == "" {
		s.publicURL = httpapi.URL(ln)
		if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP.IsUnspecified() {
			s.log.Warn("no public URL set: registrations name an unspecified address that peers cannot reach", "url", s.publicURL)
		}
	}
	s.log.Info("origin serving", "addr", ln.Addr().String(), "media", s.media.String(),
		"public_url", s.publicURL, "tracker", s.cfg.TrackerURL, "rate_limit", s.cfg.RateLimit)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { s.scanLoop(ctx) })
	if s.local != nil {
		// Object storage tells of no change: the scan lists it.
		wg.Go(func() { s.watchLoop(ctx) })
	}
	wg.Go(func() { s.hashLoop(ctx) })
	err := s.cfg.Timeouts.Serve(ctx, ln, s.Handler())
	cancel()
	wg.Wait()
	return err
}
