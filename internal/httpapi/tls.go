package httpapi

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"
)

// ServerTLS loads a server's certificate chain and private key (PEM
// files, as certbot or openssl write them); both "" is plain HTTP, a nil
// configuration. The files are read again at the first handshake after
// either changes (a renewal), so a server never needs a restart for a new
// certificate; new files that do not load leave the last good pair in use
// and are logged. It serves HTTP/1.1 only, as plain HTTP does: the
// proxy's parallel range requests each get their own connection, and the
// write deadlines of Timeouts apply per connection.
func ServerTLS(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate and a key file")
	}
	kp := &keyPair{certFile: certFile, keyFile: keyFile}
	if err := kp.load(); err != nil {
		return nil, err
	}
	return &tls.Config{
		GetCertificate: kp.get,
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
	}, nil
}

// keyPair is a certificate and key kept in step with their files.
type keyPair struct {
	certFile, keyFile string

	mu   sync.Mutex
	cert *tls.Certificate
	// mod is the files' modification times and sizes when cert was read.
	mod [2]fileStamp
}

type fileStamp struct {
	mtime time.Time
	size  int64
}

func (kp *keyPair) stamps() [2]fileStamp {
	var st [2]fileStamp
	for i, f := range []string{kp.certFile, kp.keyFile} {
		if fi, err := os.Stat(f); err == nil {
			st[i] = fileStamp{fi.ModTime(), fi.Size()}
		}
	}
	return st
}

// load reads the pair; the caller holds mu or is alone.
func (kp *keyPair) load() error {
	st := kp.stamps()
	cert, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		return fmt.Errorf("TLS certificate %s, key %s: %w", kp.certFile, kp.keyFile, err)
	}
	kp.cert, kp.mod = &cert, st
	return nil
}

// get is the configuration's GetCertificate: two stats a handshake, a
// small cost beside the handshake's own.
func (kp *keyPair) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	if st := kp.stamps(); st != kp.mod {
		if err := kp.load(); err != nil {
			// Not again until the files change once more.
			kp.mod = st
			slog.Error("TLS certificate files changed but do not load; serving the last good one", "err", err)
		}
	}
	return kp.cert, nil
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
