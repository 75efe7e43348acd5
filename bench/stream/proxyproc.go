package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proxyProc is one proxy running as a child process of the benchmark.
type proxyProc struct {
	name string
	url  string
	cmd  *exec.Cmd
	// done is closed once the process has exited and waitErr is set.
	done    chan struct{}
	waitErr error
}

// proxyConfig says which cluster a proxy joins.
type proxyConfig struct {
	bin        string
	name       string
	trackerURL string
	originURL  string
	cacheDir   string
	// originKey is the origin's public key: given, not fetched on first
	// use, so that a proxy verifies its peers' file info with the origin
	// stopped.
	originKey string
	// passkey is the proxy's credential on the tracker.
	passkey string
	log     io.Writer
}

// startProxy runs `p2sp proxy` on a free loopback port and waits until it
// answers /readyz. The process ends when ctx does, or with stop.
func startProxy(ctx context.Context, cfg proxyConfig) (*proxyProc, error) {
	port, err := freePort(ctx)
	if err != nil {
		return nil, err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.CommandContext(ctx, cfg.bin, "proxy",
		"--listen", listen,
		"--tracker", cfg.trackerURL,
		"--origin", cfg.originURL,
		"--cache-dir", cfg.cacheDir,
		"--cache-size", "4GiB",
		"--bt-listen", "127.0.0.1:0",
		"--log-level", "warn",
		"--origin-key", cfg.originKey,
	)
	// A cancelled benchmark asks the proxy to shut down gracefully, and
	// kills it if it has not within WaitDelay.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Env = append(os.Environ(), "P2SP_PASSKEY="+cfg.passkey)
	out := &prefixWriter{w: cfg.log, prefix: "[" + cfg.name + "] "}
	cmd.Stdout, cmd.Stderr = out, out
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cfg.name, err)
	}
	p := &proxyProc{name: cfg.name, url: "http://" + listen, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		out.Flush()
		close(p.done)
	}()
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// waitReady polls /readyz until it answers 200.
func (p *proxyProc) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s exited before it was ready: %v", p.name, p.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %s: %w", p.name, timeout, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, waits up to ten seconds for the proxy to exit, then
// kills it. It may be called more than once.
func (p *proxyProc) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within 10s of SIGTERM; killed", p.name)
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) && ee.Exited() {
		return fmt.Errorf("%s: %w", p.name, p.waitErr)
	}
	return nil
}

// exited reports whether the process has already ended, and how.
func (p *proxyProc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.waitErr
	default:
		return false, nil
	}
}

// procMem is a process's memory counters from /proc/PID/status, in bytes.
type procMem struct {
	RSS, HWM, Anon, File int64
}

// mem reads the proxy's memory counters.
func (p *proxyProc) mem() (procMem, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		return procMem{}, fmt.Errorf("%s memory: %w", p.name, err)
	}
	var m procMem
	fields := map[string]*int64{"VmRSS:": &m.RSS, "VmHWM:": &m.HWM, "RssAnon:": &m.Anon, "RssFile:": &m.File}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		if dst, ok := fields[f[0]]; ok {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				return procMem{}, fmt.Errorf("%s memory: %q: %w", p.name, sc.Text(), err)
			}
			*dst = kb << 10
		}
	}
	if m.HWM == 0 {
		return procMem{}, fmt.Errorf("%s memory: no VmHWM in /proc status", p.name)
	}
	return m, nil
}

// proxyFileStatus is the part of a file's line in /v1/status the
// benchmark reads.
type proxyFileStatus struct {
	Path        string `json:"path"`
	Complete    bool   `json:"complete"`
	PiecesHeld  int    `json:"pieces_held"`
	PiecesTotal int    `json:"pieces_total"`
	Peers       int    `json:"peers"`
	PeerBytes   int64  `json:"peer_bytes"`
	OriginBytes int64  `json:"origin_bytes"`
	CacheBytes  int64  `json:"cache_bytes"`
	// OriginFetched counts what the proxy took from the origin, read-ahead
	// included, not only what it served.
	OriginFetched int64  `json:"origin_fetched_bytes"`
	Uploaded      int64  `json:"uploaded_bytes"`
	Error         string `json:"error"`
}

// fileStatus reads path's line from the proxy's /v1/status.
func (p *proxyProc) fileStatus(ctx context.Context, path string) (proxyFileStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/v1/status", nil)
	if err != nil {
		return proxyFileStatus{}, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return proxyFileStatus{}, fmt.Errorf("%s status: %w", p.name, err)
	}
	defer resp.Body.Close()
	var st struct {
		Files []proxyFileStatus `json:"files"`
	}
	if resp.StatusCode != http.StatusOK {
		return proxyFileStatus{}, fmt.Errorf("%s status: %s", p.name, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return proxyFileStatus{}, fmt.Errorf("%s status: %w", p.name, err)
	}
	for _, f := range st.Files {
		if f.Path == path {
			return f, nil
		}
	}
	return proxyFileStatus{Path: path}, nil
}

// freePort asks the kernel for a free loopback port. Another process could
// take it before the proxy listens; on loopback in a benchmark that is a
// risk worth taking.
func freePort(ctx context.Context) (int, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// prefixWriter writes whole lines to w, each with a prefix, so that the
// proxies' logs can be told apart on the benchmark's stderr.
type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix string
	buf    []byte
}

func (pw *prefixWriter) Write(b []byte) (int, error) {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	pw.buf = append(pw.buf, b...)
	for {
		i := bytes.IndexByte(pw.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		if _, err := fmt.Fprintf(pw.w, "%s%s\n", pw.prefix, pw.buf[:i]); err != nil {
			return len(b), err
		}
		pw.buf = pw.buf[i+1:]
	}
}

// Flush writes a last line that has no newline.
func (pw *prefixWriter) Flush() {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if len(pw.buf) > 0 {
		fmt.Fprintf(pw.w, "%s%s\n", pw.prefix, pw.buf)
		pw.buf = nil
	}
}
