package httpclient

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// TLSConfig is the configuration servers' certificates are verified with:
// the CA certificates in the PEM file caFile, or the system's roots when
// caFile is "".
func TLSConfig(caFile string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return c, nil
	}
	b, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA file %s: no PEM certificate in it", caFile)
	}
	c.RootCAs = pool
	return c, nil
}

// NewTransport is a keep-alive transport that verifies servers with tc (a
// TLSConfig; nil: the system's roots) and bounds connecting, the TLS
// handshake and the wait for an answer's headers, never the body. Callers
// adjust the pool sizes and the proxy setting to their purpose. It speaks
// HTTP/1.1 over TLS too, as it does in the clear: the proxy's parallel
// range requests to the origin each get their own connection either way.
func NewTransport(tc *tls.Config) *http.Transport {
	return &http.Transport{
		// A black-holed host fails in seconds, not after the kernel's two
		// minutes of SYN retries.
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tc,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 10 * time.Second,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
	}
}

// ErrTooLarge is an answer longer than its reader's limit.
var ErrTooLarge = errors.New("answer too large")

// ReadAll reads resp's body, at most limit bytes: a longer one, by its
// Content-Length or by what arrives, is ErrTooLarge and the rest of it is
// not read (closing the body then drops the connection, cheaper than
// draining it).
func ReadAll(resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%w: %d bytes, more than %d", ErrTooLarge, resp.ContentLength, limit)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, limit)
	}
	return b, nil
}

// DecodeJSON decodes resp's JSON body of at most limit bytes into v. The
// size bounds the nesting too: encoding/json allows 10000 levels, and each
// costs at least a byte of the answer.
func DecodeJSON(resp *http.Response, limit int64, v any) error {
	b, err := ReadAll(resp, limit)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	return nil
}
