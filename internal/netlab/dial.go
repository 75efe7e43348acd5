package netlab

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// DialContext connects from inside n's namespace. A socket belongs to the
// namespace of the thread that creates it, so a goroutine of its own,
// locked to its thread, moves into n, dials, and moves back; if it cannot
// move back it ends still locked, and the runtime retires the thread
// rather than run other goroutines in n. Addresses must be literal IPs (no
// resolver runs in n).
func (n Node) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		conn, err := n.dialLocked(ctx, network, address)
		ch <- result{conn, err}
	}()
	r := <-ch
	if r.err != nil {
		return nil, fmt.Errorf("netlab: dial %s in %s: %w", address, n.Name, r.err)
	}
	return r.conn, nil
}

func (n Node) dialLocked(ctx context.Context, network, address string) (net.Conn, error) {
	target, err := os.Open(filepath.Join(netnsDir, n.Name))
	if err != nil {
		return nil, err
	}
	defer target.Close()
	runtime.LockOSThread()
	home, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer home.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("setns: %w", err)
	}
	var d net.Dialer
	conn, dialErr := d.DialContext(ctx, network, address)
	if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, fmt.Errorf("setns back: %w", err) // the thread stays locked and dies with this goroutine
	}
	runtime.UnlockOSThread()
	return conn, dialErr
}

// HTTPClient is a client whose connections start inside n, with a timeout
// on every request.
func (n Node) HTTPClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{DialContext: n.DialContext, DisableKeepAlives: true},
	}
}
