package proxy

import (
	"context"
	"net"

	"github.com/p2sp/p2sp/internal/httpapi"
)

// Run starts a proxy on cfg.Listen and serves until ctx ends.
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
	ln = httpapi.TLSListener(ln, s.tls)
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsLoopback() {
		s.log.Warn("the proxy listens beyond loopback: anyone who can reach this address can use it", "addr", a.String())
	}
	s.log.Info("proxy listening", "url", httpapi.URL(ln), "bt_port", s.BTPort(), "cache", s.cfg.CacheDir, "cache_size", s.cfg.CacheSize)
	return s.Serve(ctx, ln)
}

// Serve answers players on ln until ctx ends, over HTTPS if the Config
// names a certificate. The caller closes the Server afterwards.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return httpapi.Serve(ctx, httpapi.TLSListener(ln, s.tls), s.Handler())
}
