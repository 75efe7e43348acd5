package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"time"
)

// handshakeRelay charges every new TCP connection one round trip before
// its first byte goes on, as a real network's handshake (SYN, SYN-ACK)
// does before a client can send. toxiproxy delays data only, so behind it
// alone a new connection costs nothing, and what a warm, reused one saves
// (the point of the second cold file) could not show. Data on a
// connection once open passes unchanged; the latency is toxiproxy's.
type handshakeRelay struct {
	ln  net.Listener
	rtt time.Duration
	to  string // upstream host:port

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// startHandshakeRelay listens on a free loopback port in front of
// upstream (a base URL) and returns the relay and its base URL.
func startHandshakeRelay(ctx context.Context, upstream string, rtt time.Duration) (*handshakeRelay, string, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, "", fmt.Errorf("handshake relay to %q: %w", upstream, err)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", fmt.Errorf("handshake relay to %s: %w", u.Host, err)
	}
	h := &handshakeRelay{ln: ln, rtt: rtt, to: u.Host, conns: map[net.Conn]struct{}{}}
	h.ctx, h.cancel = context.WithCancel(ctx)
	h.wg.Add(1)
	go h.accept()
	return h, u.Scheme + "://" + ln.Addr().String(), nil
}

func (h *handshakeRelay) accept() {
	defer h.wg.Done()
	for {
		c, err := h.ln.Accept()
		if err != nil {
			return
		}
		if !h.track(c) {
			c.Close()
			return
		}
		h.wg.Add(1)
		go h.relay(c)
	}
}

// track records c so that stop can close it; false once stopped.
func (h *handshakeRelay) track(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.conns == nil {
		return false
	}
	h.conns[c] = struct{}{}
	return true
}

func (h *handshakeRelay) untrack(c net.Conn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.conns, c)
	c.Close()
}

func (h *handshakeRelay) relay(down net.Conn) {
	defer h.wg.Done()
	defer h.untrack(down)
	select {
	case <-time.After(h.rtt):
	case <-h.ctx.Done():
		return
	}
	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.DialContext(h.ctx, "tcp", h.to)
	if err != nil {
		return
	}
	if !h.track(up) {
		up.Close()
		return
	}
	defer h.untrack(up)
	// Each direction half-closes the other end when its source ends, so
	// that an HTTP response's end and a closed request pass through.
	var both sync.WaitGroup
	both.Add(2)
	pipe := func(dst, src net.Conn) {
		defer both.Done()
		_, err := io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok && (err == nil || errors.Is(err, net.ErrClosed)) {
			tc.CloseWrite()
			return
		}
		dst.Close()
	}
	go pipe(up, down)
	go pipe(down, up)
	both.Wait()
}

// stop closes the listener and every connection, and waits for their
// goroutines.
func (h *handshakeRelay) stop() {
	h.cancel()
	h.ln.Close()
	h.mu.Lock()
	for c := range h.conns {
		c.Close()
	}
	h.conns = nil
	h.mu.Unlock()
	h.wg.Wait()
}
