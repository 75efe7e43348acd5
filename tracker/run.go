package tracker

import (
	"context"
	"errors"
	"net"

	"github.com/p2sp/p2sp/internal/httpapi"
)

// Run runs a tracker on cfg.Listen until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	s, err := New(ctx, cfg)
	if err != nil {
		return err
	}
	ln, err := httpapi.Listen(ctx, cfg.Listen)
	if err != nil {
		return errors.Join(err, s.Close())
	}
	return errors.Join(s.Serve(ctx, ln), s.Close())
}

// Serve serves the tracker's API on ln until ctx ends, over HTTPS if the
// Config names a certificate. It does not close the Server: the caller
// does, after Serve returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	ln = httpapi.TLSListener(ln, s.tls)
	s.log.Info("tracker listening", "addr", ln.Addr().String(), "url", httpapi.URL(ln))
	return s.cfg.Timeouts.Serve(ctx, ln, s.Handler())
}
