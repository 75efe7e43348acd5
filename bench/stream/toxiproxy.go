package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// toxiproxy is a toxiproxy server the benchmark started: TCP relays with
// a latency toxic in front of the origin and the tracker, since this
// kernel has no netem. Its relays delay data, not the TCP handshake.
type toxiproxy struct {
	api  string
	cmd  *exec.Cmd
	done chan struct{}
}

// relayPrefix names everything the benchmark creates in toxiproxy.
const relayPrefix = "p2sp-bench-"

// startToxiproxy runs bin (toxiproxy's server) on a free loopback port.
func startToxiproxy(ctx context.Context, bin string) (*toxiproxy, error) {
	port, err := freePort(ctx)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, "-host", "127.0.0.1", "-port", strconv.Itoa(port))
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	setDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start toxiproxy %s: %w", bin, err)
	}
	tp := &toxiproxy{api: "http://127.0.0.1:" + strconv.Itoa(port), cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(tp.done)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := tp.call(ctx, http.MethodGet, "/version", nil); err == nil {
			return tp, nil
		} else if time.Now().After(deadline) {
			tp.stop()
			return nil, fmt.Errorf("toxiproxy not answering: %w", err)
		}
		select {
		case <-tp.done:
			return nil, fmt.Errorf("toxiproxy %s exited at start", bin)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// relay creates a relay to upstream (a base URL) that delays data by
// oneWay in each direction, and returns the relay's base URL.
func (tp *toxiproxy) relay(ctx context.Context, name, upstream string, oneWay time.Duration) (string, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return "", err
	}
	port, err := freePort(ctx)
	if err != nil {
		return "", err
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	name = relayPrefix + name
	if err := tp.call(ctx, http.MethodPost, "/proxies", map[string]any{
		"name": name, "listen": listen, "upstream": u.Host, "enabled": true,
	}); err != nil {
		return "", err
	}
	for _, stream := range []string{"upstream", "downstream"} {
		if err := tp.call(ctx, http.MethodPost, "/proxies/"+name+"/toxics", map[string]any{
			"name": "latency_" + stream, "type": "latency", "stream": stream, "toxicity": 1.0,
			"attributes": map[string]any{"latency": oneWay.Milliseconds(), "jitter": 0},
		}); err != nil {
			return "", err
		}
	}
	return u.Scheme + "://" + listen, nil
}

func (tp *toxiproxy) call(ctx context.Context, method, path string, body any) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, tp.api+path, rd)
	if err != nil {
		return err
	}
	resp, err := newClient().Do(req)
	if err != nil {
		return fmt.Errorf("toxiproxy %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("toxiproxy %s %s: %s: %s", method, path, resp.Status, msg)
	}
	return nil
}

// stop ends the server, and with it every relay it made.
func (tp *toxiproxy) stop() {
	_ = tp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-tp.done:
	case <-time.After(5 * time.Second):
		_ = tp.cmd.Process.Kill()
		<-tp.done
	}
}
