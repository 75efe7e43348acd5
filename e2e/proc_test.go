package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/proxy"
	"github.com/p2sp/p2sp/tracker"
)

// buildP2SP builds the p2sp binary into the test's temporary directory,
// from the module root, as a user would run it.
func buildP2SP(t *testing.T) string { return buildCommand(t, "./cmd/p2sp") }

// buildCommand builds the main package pkg (relative to the module root)
// into the test's temporary directory and returns the binary's path.
func buildCommand(t *testing.T, pkg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// proc is one p2sp command running as a child process of the test.
type proc struct {
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

// startProxyProc runs `p2sp proxy --listen listen args...` and waits until
// it is ready. The test's cleanup kills it if it still runs.
func startProxyProc(t *testing.T, bin, listen string, args ...string) *proc {
	t.Helper()
	return startProc(t, bin, "proxy", listen, nil, args...)
}

// passkeyArgs has the tracker at trackerURL issue a passkey named name
// (with its token) and returns the flags that give it to a proxy process.
func passkeyArgs(t *testing.T, trackerURL, token, name string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	pk, err := tracker.IssuePasskey(ctx, http.DefaultClient, trackerURL, token, name)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "passkey")
	if err := os.WriteFile(f, []byte(pk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--passkey-file", f}
}

// startProc runs `p2sp role --listen listen args...` with env added to the
// test's environment and waits until its /readyz answers 200. The test's
// cleanup kills it if it still runs.
func startProc(t *testing.T, bin, role, listen string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, append([]string{role, "--listen", listen}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out := &lineWriter{t: t, prefix: "[" + role + " process] "}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start p2sp %s: %v", role, err)
	}
	p := &proc{URL: "http://" + listen, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() { p.kill() })
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err := client.Get(p.URL + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("p2sp %s exited before it was ready: %v", role, p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("p2sp %s not ready after 30s", role)
		}
	}
}

// kill sends SIGKILL (no shutdown, no deferred flush) and waits for the
// process to be gone.
func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// lineWriter logs a child's output line by line.
type lineWriter struct {
	t      *testing.T
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(b), nil
		}
		w.t.Log(w.prefix + string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

// loopbackAddr returns a loopback address whose port was free a moment
// ago.
func loopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// testProxy is a proxy the test configures itself (another origin URL, a
// short stall timeout), served on a loopback port until the test ends.
type testProxy struct {
	*proxy.Server
	URL string
	// Stop stops the proxy before the test ends (its cleanup then does
	// nothing); it returns how the proxy closed.
	Stop func() error
}

// startTestProxy runs proxy.New(cfg) with the cluster's tracker, origin and
// origin key unless cfg names others (a non-nil, empty OriginKeys: the
// origin's key on first use), a cache in a temporary directory, BitTorrent
// on loopback and the test's log.
func startTestProxy(t *testing.T, c *demo.Cluster, cfg proxy.Config) *testProxy {
	t.Helper()
	if len(cfg.Trackers) == 0 {
		cfg.Trackers = []string{c.Tracker.URL}
	}
	if len(cfg.Origins) == 0 {
		cfg.Origins = []string{c.Origin.URL}
	}
	if cfg.OriginKeys == nil {
		cfg.OriginKeys = []ed25519.PublicKey{c.OriginKey}
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = t.TempDir()
	}
	if cfg.BTListen == "" {
		cfg.BTListen = "127.0.0.1:0"
	}
	if cfg.Passkey == "" {
		var err error
		if cfg.Passkey, err = c.IssuePasskey(t.Context(), "test-proxy"); err != nil {
			t.Fatal(err)
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	s, err := proxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := httpapi.Listen(t.Context(), "127.0.0.1:0")
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	stop := sync.OnceValue(func() error {
		cancel()
		return errors.Join(<-done, s.Close())
	})
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Logf("stop test proxy: %v", err)
		}
	})
	return &testProxy{Server: s, URL: httpapi.URL(ln), Stop: stop}
}
