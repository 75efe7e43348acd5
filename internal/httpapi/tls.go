package httpapi

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
)

// ServerTLS loads a server's certificate chain and private key (PEM
// files, as certbot or openssl write them); both "" is plain HTTP, a nil
// configuration. It serves HTTP/1.1 only, as plain HTTP does: the proxy's
// parallel range requests each get their own connection, and the write
// deadlines of Timeouts apply per connection.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate and a key file")
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s, key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// tlsListener is a listener that speaks TLS, so that URL names it https.
type tlsListener struct{ net.Listener }

// TLSListener is ln speaking TLS with cfg (from ServerTLS); a nil cfg, or
// a listener that speaks TLS already, is ln as it is.
func TLSListener(ln net.Listener, cfg *tls.Config) net.Listener {
	if _, ok := ln.(tlsListener); ok || cfg == nil {
		return ln
	}
	return tlsListener{tls.NewListener(ln, cfg)}
}

// URL is the base URL of a listener: https:// for a TLSListener's,
// http:// otherwise.
func URL(ln net.Listener) string {
	if _, ok := ln.(tlsListener); ok {
		return "https://" + ln.Addr().String()
	}
	return "http://" + ln.Addr().String()
}
