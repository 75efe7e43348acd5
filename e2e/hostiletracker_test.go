package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
)

// hostileAnnounces is a relay in front of the real tracker that passes
// everything on but answers every announce itself, with body.
type hostileAnnounces struct {
	URL     string
	answers atomic.Int64
}

func startHostileAnnounces(t *testing.T, trackerURL string, body func(w io.Writer)) *hostileAnnounces {
	t.Helper()
	target, err := url.Parse(trackerURL)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostileAnnounces{}
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/announce" {
			rp.ServeHTTP(w, r)
			return
		}
		h.answers.Add(1)
		w.Header().Set("Content-Type", "text/plain")
		body(w) // ends with an error once the proxy hangs up
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

// repeatWriter writes n copies of b to w in large chunks, generated, not
// held in memory whole.
func repeatWriter(w io.Writer, b byte, n int64) error {
	chunk := bytes.Repeat([]byte{b}, 64<<10)
	for n > 0 {
		k := min(n, int64(len(chunk)))
		if _, err := w.Write(chunk[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// procStatusKB reads a field of /proc/PID/status, in kB.
func procStatusKB(t *testing.T, pid int, field string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %v", pid, field, err)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, field)
	return 0
}

// TestHostileAnnounceAnswers: whoever answers the proxy's announces (a
// fake tracker, anyone on a plain-HTTP path) cannot kill it or make it
// balloon. Answers of 40 MB nested 20 million levels deep (which overflowed
// the stack of the library's decoder) and of 512 MiB (1.9 GiB RSS with it)
// are refused after a few MiB; the proxy, a child process here so that
// its death and its memory are its own, stays up within 200 MB of growth
// and keeps streaming the exact bytes from the origin.
func TestHostileAnnounceAnswers(t *testing.T) {
	const size = 3 << 20
	bin := buildP2SP(t)
	c := start(t, demo.Config{ScanInterval: 200 * time.Millisecond})
	files := map[string][]byte{}
	for _, p := range []string{"hostile/a.mp4", "hostile/b.mp4", "hostile/c.mp4", "hostile/d.mp4"} {
		files[p] = writeMedia(t, c, p, size)
		waitInfo(t, c, p, "")
	}
	for _, tc := range []struct {
		name  string
		paths [2]string
		body  func(w io.Writer)
	}{
		{"40 MB nested 20 million deep", [2]string{"hostile/a.mp4", "hostile/b.mp4"}, func(w io.Writer) {
			_ = repeatWriter(w, 'l', 20_000_000)
			_ = repeatWriter(w, 'e', 20_000_000)
		}},
		{"512 MiB", [2]string{"hostile/c.mp4", "hostile/d.mp4"}, func(w io.Writer) {
			io.WriteString(w, "d8:intervali1e5:peers536870912:")
			_ = repeatWriter(w, 'x', 512<<20)
			io.WriteString(w, "e")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			relay := startHostileAnnounces(t, c.Tracker.URL, tc.body)
			p := startProxyProc(t, bin, loopbackAddr(t), "--tracker", relay.URL, "--origin", c.Origin.URL,
				"--cache-dir", t.TempDir(), "--bt-listen", "127.0.0.1:0", "--log-level", "warn")
			pid := p.cmd.Process.Pid
			baseKB := procStatusKB(t, pid, "VmRSS")

			// Opening a file makes the proxy announce it; every answer is
			// the attack, retried every 2 s.
			play := func(path string) {
				t.Helper()
				resp, body, err := get(t, p.URL+"/stream/"+fileinfo.EscapePath(path), "")
				if err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %v %v", path, resp, err)
				}
				if !bytes.Equal(body, files[path]) {
					t.Fatalf("GET %s: bytes differ", path)
				}
			}
			play(tc.paths[0])
			deadline := time.Now().Add(30 * time.Second)
			for relay.answers.Load() < 3 {
				select {
				case <-p.done:
					t.Fatalf("the proxy died after %d hostile answers: %v", relay.answers.Load(), p.err)
				case <-time.After(50 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("only %d announces in 30 s", relay.answers.Load())
				}
			}
			// Still up, and a file it never saw comes from the origin.
			play(tc.paths[1])
			select {
			case <-p.done:
				t.Fatalf("the proxy died: %v", p.err)
			default:
			}
			f := fileStatusAt(t, p.URL, tc.paths[1])
			if f.OriginBytes != size {
				t.Errorf("%s: %d bytes from the origin, want %d", tc.paths[1], f.OriginBytes, size)
			}
			peakKB := procStatusKB(t, pid, "VmHWM")
			growth := float64(peakKB-baseKB) * 1024
			t.Logf("%s: %d hostile answers; proxy RSS %.1f MB at start, peak %.1f MB (growth %.1f MB)",
				tc.name, relay.answers.Load(), float64(baseKB)*1024/1e6, float64(peakKB)*1024/1e6, growth/1e6)
			if growth > 200e6 {
				t.Errorf("RSS grew by %.1f MB under hostile announce answers, want < 200 MB", growth/1e6)
			}
		})
	}
}
