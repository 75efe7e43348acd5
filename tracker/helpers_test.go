package tracker

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

const testToken = "s3cret-token-of-the-tests"

// testTracker is a tracker serving on a loopback port.
type testTracker struct {
	*Server
	URL string
	// Passkey is issued at start; the announce helpers use it.
	Passkey string
	stop    func()
}

// startTracker runs a tracker on 127.0.0.1:0 until the test ends (or
// stop is called). cfg.Token and cfg.DataDir get test values when empty.
func startTracker(t *testing.T, cfg Config) *testTracker {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	ctx, cancel := context.WithCancel(t.Context())
	s, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	t.Cleanup(stop)
	tr := &testTracker{Server: s, URL: "http://" + ln.Addr().String(), stop: stop}
	if tr.Passkey, err = IssuePasskey(t.Context(), http.DefaultClient, tr.URL, cfg.Token, "test"); err != nil {
		t.Fatal(err)
	}
	return tr
}

// testFile writes size random bytes to a temporary file and computes its
// info as the origin would, under registry path p.
func testFile(t testing.TB, p string, size int64) (*fileinfo.Info, []byte) {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	fn := filepath.Join(t.TempDir(), filepath.Base(p))
	if err := os.WriteFile(fn, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(fn)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := fileinfo.Compute(t.Context(), p, f, size)
	if err != nil {
		t.Fatal(err)
	}
	fi.ETag = `"v1"`
	fi.ModTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	fi.Origins = []string{"http://origin-a.test:8080", "http://origin-b.test:8080/"}
	return fi, data
}

// do sends a request and returns the status and body.
func do(t *testing.T, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		r = bytes.NewReader(b)
	case string:
		r = bytes.NewReader([]byte(b))
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

// mustRegister registers fi and fails the test unless it is accepted.
func mustRegister(t *testing.T, tr *testTracker, fi *fileinfo.Info) {
	t.Helper()
	if st, b := do(t, "POST", tr.URL+"/v1/files", testToken, fi); st/100 != 2 {
		t.Fatalf("register %s: %d %s", fi.Path, st, b)
	}
}
