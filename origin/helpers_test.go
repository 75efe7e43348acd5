package origin

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/metrics"
)

const testToken = "test-token-of-the-origin-tests"

// testOrigin is a real origin serving on 127.0.0.1:0.
type testOrigin struct {
	url   string
	addr  string
	media string
	reg   *prometheus.Registry
}

// startOrigin starts an origin for cfg, filling in a media directory, a
// token, a short scan interval, a registry and a logger where cfg has none, and
// waits until it is ready. It stops when the test ends.
func startOrigin(t *testing.T, cfg Config) *testOrigin {
	t.Helper()
	if cfg.Media == "" {
		cfg.Media = t.TempDir()
	}
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	if cfg.ScanInterval == 0 {
		cfg.ScanInterval = 50 * time.Millisecond
	}
	if cfg.Registry == nil {
		cfg.Registry = metrics.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		s.Close()
	})
	o := &testOrigin{url: "http://" + ln.Addr().String(), addr: ln.Addr().String(), media: cfg.Media, reg: cfg.Registry}
	eventually(t, "origin ready", func() bool {
		resp, err := http.Get(o.url + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return o
}

// eventually polls cond for up to five seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// randomBytes returns n reproducible bytes.
func randomBytes(n int, seed uint64) []byte {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	b := make([]byte, n)
	rand.NewChaCha8(key).Read(b)
	return b
}

// writeFile writes data at rel below dir, creating directories.
func writeFile(t *testing.T, dir, rel string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// get does a request with headers and returns the response with its body
// read.
func get(t *testing.T, method, url string, header map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, body
}

// rawGet sends target as the request line's target verbatim, so that no
// client cleans or re-escapes it.
func rawGet(t *testing.T, addr, target string) (int, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", target, addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

// metricValue is the value of the series name{labels} in reg, 0 if absent.
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metric
				}
			}
			switch {
			case m.Counter != nil:
				return m.GetCounter().GetValue()
			case m.Gauge != nil:
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

// fakeTracker records what an origin POSTs to /v1/files, standing in for
// the tracker's HTTP interface.
type fakeTracker struct {
	url string
	// failNext makes the next n registrations fail with 503.
	failNext atomic.Int32

	mu    sync.Mutex
	infos []fileinfo.Info
	auth  []string
}

func newFakeTracker(t *testing.T) *fakeTracker {
	ft := &fakeTracker{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/files" {
			http.NotFound(w, r)
			return
		}
		if ft.failNext.Add(-1) >= 0 {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var fi fileinfo.Info
		if err := json.NewDecoder(r.Body).Decode(&fi); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		ft.mu.Lock()
		ft.infos = append(ft.infos, fi)
		ft.auth = append(ft.auth, r.Header.Get("Authorization"))
		ft.mu.Unlock()
		w.WriteHeader(http.StatusCreated)
	}))
	t.Cleanup(srv.Close)
	ft.url = srv.URL
	return ft
}

// registrations returns every Info registered for path, oldest first.
func (ft *fakeTracker) registrations(path string) []fileinfo.Info {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var out []fileinfo.Info
	for _, fi := range ft.infos {
		if fi.Path == path {
			out = append(out, fi)
		}
	}
	return out
}

// last returns the latest Info registered for path.
func (ft *fakeTracker) last(path string) (fileinfo.Info, bool) {
	r := ft.registrations(path)
	if len(r) == 0 {
		return fileinfo.Info{}, false
	}
	return r[len(r)-1], true
}

func (ft *fakeTracker) authHeaders() []string {
	ft.mu.Lock()
	defer ft.mu.Unlock()
	return append([]string(nil), ft.auth...)
}

// catalog fetches the origin's catalog.
func (o *testOrigin) catalog(t *testing.T) []CatalogEntry {
	t.Helper()
	resp, body := get(t, http.MethodGet, o.url+"/v1/catalog", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("catalog: %d %s", resp.StatusCode, body)
	}
	var out []CatalogEntry
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("catalog: %v", err)
	}
	return out
}

// logRecorder keeps the records of a JSON slog handler writing to it.
type logRecorder struct {
	mu      sync.Mutex
	records []map[string]any
}

func (l *logRecorder) Write(p []byte) (int, error) {
	var rec map[string]any
	if err := json.Unmarshal(p, &rec); err != nil {
		return 0, err
	}
	l.mu.Lock()
	l.records = append(l.records, rec)
	l.mu.Unlock()
	return len(p), nil
}

// logger returns a logger that records everything from debug up.
func (l *logRecorder) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// count returns how many records match.
func (l *logRecorder) count(match func(rec map[string]any) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, rec := range l.records {
		if match(rec) {
			n++
		}
	}
	return n
}
