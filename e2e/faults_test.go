package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/proxy"
)

// TestFaultBadPeer: a proxy whose cached copy rots on disk keeps seeding
// it; the proxies that download from it reject every bad piece, ban it,
// and still play the exact bytes. Restarted, the rotten proxy re-verifies
// its cache and plays the exact bytes too.
func TestFaultBadPeer(t *testing.T) {
	const (
		path = "bad/peer.bin"
		size = 8<<20 + 4321
	)
	c := start(t, demo.Config{Proxies: 2, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, path, size)
	fi := waitInfo(t, c, path, "")
	p1, p2 := c.Proxies[0], c.Proxies[1]
	if got := mustGet(t, streamURL(p1, path), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("proxy1: bytes differ")
	}
	waitComplete(t, p1, path)
	// proxy1 is in the swarm the tracker tells the next proxies of.
	waitAnnounced(t, c.Tracker.URL, c.Token, path, p1.Proxy.BTPort(), 10*time.Second)

	// Rot: flip bytes in place in several pieces of proxy1's data file,
	// behind its back.
	corrupt := []int{0, 1, 2, 3, 5, 8, 13, 40, 77, 120, fi.NumPieces() - 1}
	dataFile := filepath.Join(c.Dir, p1.Name, "files", strings.ToLower(fi.InfoHash), "data")
	flipBytes(t, dataFile, fi, corrupt)

	for _, p := range []*demo.Service{p2, nil} {
		if p == nil { // a proxy that joins later, with no ban list yet
			var err error
			p, err = c.AddProxy(t.Context(), 0, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
			if err != nil {
				t.Fatal(err)
			}
		}
		if got := mustGet(t, streamURL(p, path), "", http.StatusOK); !bytes.Equal(got, data) {
			t.Fatalf("%s: bytes differ from the origin's", p.Name)
		}
		f := fileStatusOf(t, p, path)
		banned := bannedPeers(t, p)
		t.Logf("%s: %d verification failures, banned %v; peer %s, origin %s", p.Name, f.VerifyFailures, banned,
			mib(float64(f.PeerBytes)), mib(float64(f.OriginBytes)))
		if p != p2 {
			continue
		}
		// proxy2 surely met the bad pieces: proxy1 was its only peer.
		if f.VerifyFailures == 0 || len(banned) == 0 {
			t.Errorf("%s took pieces from a corrupted peer: want verification_failures > 0 and a ban in /v1/status, got %d and %v",
				p.Name, f.VerifyFailures, banned)
		}
		if n := counter(t, p, "p2sp_proxy_verification_failures_total"); n == 0 {
			t.Errorf("%s: p2sp_proxy_verification_failures_total is 0", p.Name)
		}
		if n := counter(t, p, "p2sp_proxy_banned_peers"); n == 0 {
			t.Errorf("%s: p2sp_proxy_banned_peers is 0", p.Name)
		}
	}

	// Restarted on the same cache, proxy1 re-verifies what it holds: the
	// rotten pieces are gone, and its player gets the exact bytes.
	if err := p1.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := p1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	pieces := pieceMap(t, p1, path)
	for _, i := range corrupt {
		if pieces[i] != '0' {
			t.Errorf("after the restart proxy1 still claims corrupted piece %d: %s", i, pieces)
		}
	}
	t.Logf("proxy1 after the restart holds %d of %d pieces", strings.Count(pieces, "1"), len(pieces))
	if got := mustGet(t, streamURL(p1, path), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("proxy1 after the restart: its player got bytes that differ from the origin's")
	}
	if got := mustGet(t, streamURL(p1, path), "bytes=60000-200000", http.StatusPartialContent); !bytes.Equal(got, data[60000:200001]) {
		t.Fatal("proxy1 after the restart: a range across a rotten piece differs")
	}
}

// flipBytes inverts a few bytes in each listed piece of a data file.
func flipBytes(t *testing.T, name string, fi *fileinfo.Info, pieces []int) {
	t.Helper()
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, i := range pieces {
		off, n := fi.PieceBounds(i)
		for _, at := range []int64{off, off + n/2, off + n - 1} {
			b := make([]byte, 1)
			if _, err := f.ReadAt(b, at); err != nil {
				t.Fatal(err)
			}
			b[0] ^= 0xff
			if _, err := f.WriteAt(b, at); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func fileStatusOf(t *testing.T, p *demo.Service, path string) statusFile {
	t.Helper()
	return fileStatusAt(t, p.URL, path)
}

// fileStatusAt reads path's line from the /v1/status of the proxy at base
// (a zero line if it has none).
func fileStatusAt(t *testing.T, base, path string) statusFile {
	t.Helper()
	var st struct {
		Files []statusFile `json:"files"`
	}
	if err := json.Unmarshal(mustGet(t, base+"/v1/status", "", http.StatusOK), &st); err != nil {
		t.Fatal(err)
	}
	for _, f := range st.Files {
		if f.Path == path {
			return f
		}
	}
	return statusFile{Path: path}
}

func bannedPeers(t *testing.T, p *demo.Service) []string {
	t.Helper()
	var st struct {
		BannedPeers []string `json:"banned_peers"`
	}
	if err := json.Unmarshal(mustGet(t, p.URL+"/v1/status", "", http.StatusOK), &st); err != nil {
		t.Fatal(err)
	}
	return st.BannedPeers
}

// TestCrashMidDownload: a proxy killed (SIGKILL) halfway through a large
// file from a rate-limited origin resumes, on restart, from the pieces it
// had verified: the player gets the exact file and the origin sends little
// more than one copy in all.
func TestCrashMidDownload(t *testing.T) {
	const (
		path = "crash/big.bin"
		size = 24 << 20
		half = 12 << 20
	)
	bin := buildP2SP(t)
	c := start(t, demo.Config{RateLimit: 4_000_000, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, path, size)
	waitInfo(t, c, path, "")

	listen := loopbackAddr(t)
	args := []string{"--tracker", c.Tracker.URL, "--origin", c.Origin.URL, "--cache-dir", t.TempDir(),
		"--cache-size", "1GiB", "--bt-listen", "127.0.0.1:0", "--log-level", "warn"}
	p := startProxyProc(t, bin, listen, args...)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.URL+"/stream/"+fileinfo.EscapePath(path), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make([]byte, half)
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatalf("first half: %v", err)
	}
	if !bytes.Equal(got, data[:half]) {
		t.Fatal("first half: bytes differ")
	}
	p.kill()
	rest, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("the stream ended cleanly after the proxy was killed (%d more bytes)", len(rest))
	}
	if !bytes.Equal(rest, data[half:half+len(rest)]) {
		t.Fatal("bytes after the first half, before the kill took effect, differ")
	}
	sentAtKill := counter(t, c.Origin, "p2sp_origin_sent_bytes_total")

	p = startProxyProc(t, bin, listen, args...)
	f := fileStatusAt(t, p.URL, path)
	t.Logf("restarted with %d of %d pieces verified (%s); the player had read %s when the proxy was killed; origin had sent %s",
		f.PiecesHeld, f.PiecesTotal, mib(float64(int64(f.PiecesHeld)*fileinfo.PieceLengthFor(size))), mib(float64(half+len(rest))), mib(sentAtKill))
	if f.PiecesHeld == 0 {
		t.Error("the restarted proxy holds no piece of what it had downloaded")
	}
	t0 := time.Now()
	if got := mustGet(t, p.URL+"/stream/"+fileinfo.EscapePath(path), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("after the restart: bytes differ")
	}
	sent := counter(t, c.Origin, "p2sp_origin_sent_bytes_total")
	t.Logf("after the restart: whole file in %s; origin sent %s in all for one %s file (%.3f copies)",
		time.Since(t0).Round(time.Millisecond), mib(sent), mib(size), sent/size)
	if sent > 1.25*size {
		t.Errorf("origin sent %.0f bytes for a %d-byte file across the crash; want at most 1.25 copies", sent, size)
	}
}

// TestOriginAwayMidStream: with a peer holding the file, a stream that
// loses the origin halfway completes from the peer. With neither origin
// nor peers, the player gets a failed response within a bounded time.
func TestOriginAwayMidStream(t *testing.T) {
	const (
		held   = "away/held.bin"
		nobody = "away/nobody.bin"
		size   = 24<<20 + 99
	)
	c := start(t, demo.Config{Proxies: 2, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, held, size)
	orphan := writeMedia(t, c, nobody, 2<<20)
	waitInfo(t, c, held, "")
	waitInfo(t, c, nobody, "")
	p1, p2 := c.Proxies[0], c.Proxies[1]
	mustGet(t, streamURL(p1, held), "", http.StatusOK)
	waitComplete(t, p1, held)
	waitAnnounced(t, c.Tracker.URL, c.Token, held, p1.Proxy.BTPort(), 10*time.Second)

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, streamURL(p2, held), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make([]byte, 1<<20)
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatal(err)
	}
	if err := c.Origin.Stop(); err != nil {
		t.Fatal(err)
	}
	if r, err := http.Get(c.Origin.URL + "/healthz"); err == nil {
		r.Body.Close()
		t.Fatal("the origin still answers after Stop")
	}
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("stream after the origin went away: %v after %s", err, mib(float64(len(got)+len(rest))))
	}
	if !bytes.Equal(append(got, rest...), data) {
		t.Fatal("stream after the origin went away: bytes differ")
	}
	f := fileStatusOf(t, p2, held)
	t.Logf("%s: peer %s, origin %s", p2.Name, mib(float64(f.PeerBytes)), mib(float64(f.OriginBytes)))

	// Neither origin nor peers: a clean failure, not a hang.
	tp := startTestProxy(t, c, proxy.Config{StallTimeout: 2 * time.Second})
	t0 := time.Now()
	r, body, err := get(t, tp.URL+"/stream/"+fileinfo.EscapePath(nobody), "")
	took := time.Since(t0)
	var declared int64 = -1
	if r != nil {
		declared = r.ContentLength
	}
	t.Logf("no source: %s after %s (Content-Length %d, %d body bytes, err %v)", statusOf(r), took.Round(time.Millisecond), declared, len(body), err)
	if took > 10*time.Second {
		t.Errorf("no source: the player waited %s; want an answer within 10s", took)
	}
	if err == nil && r.StatusCode < 300 {
		t.Errorf("no source: %s with a complete body of %d bytes; want a failed response", r.Status, len(body))
	}
	if r != nil && r.StatusCode < 300 && !isPrefix(body, orphan) {
		t.Error("no source: the partial body holds wrong bytes")
	}
}

// TestTrackerAway: without the tracker, a proxy keeps streaming a file it
// had begun (from the origin and the peers it knows) and a file it never
// saw (from the origin); when the tracker returns, it announces again.
func TestTrackerAway(t *testing.T) {
	const interval = time.Second
	c := start(t, demo.Config{Proxies: 2, AnnounceInterval: interval, ScanInterval: 200 * time.Millisecond})
	a := writeMedia(t, c, "tr/begun.bin", 8<<20+17)
	b := writeMedia(t, c, "tr/unseen.bin", 3<<20+5)
	waitInfo(t, c, "tr/begun.bin", "")
	waitInfo(t, c, "tr/unseen.bin", "")
	p1, p2 := c.Proxies[0], c.Proxies[1]
	mustGet(t, streamURL(p2, "tr/begun.bin"), "", http.StatusOK)
	waitComplete(t, p2, "tr/begun.bin")
	if got := mustGet(t, streamURL(p1, "tr/begun.bin"), "bytes=0-1048575", http.StatusPartialContent); !bytes.Equal(got, a[:1<<20]) {
		t.Fatal("proxy1, first MiB: bytes differ")
	}
	port := p1.Proxy.BTPort()
	waitAnnounced(t, c.Tracker.URL, c.Token, "tr/begun.bin", port, 10*time.Second)

	if err := c.Tracker.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, streamURL(p1, "tr/begun.bin"), "", http.StatusOK); !bytes.Equal(got, a) {
		t.Fatal("tracker away, begun file: bytes differ")
	}
	if got := mustGet(t, streamURL(p1, "tr/unseen.bin"), "", http.StatusOK); !bytes.Equal(got, b) {
		t.Fatal("tracker away, unseen file: bytes differ")
	}
	f := fileStatusOf(t, p1, "tr/begun.bin")
	t.Logf("tracker away, begun file: peer %s, origin %s", mib(float64(f.PeerBytes)), mib(float64(f.OriginBytes)))
	// Long enough for the proxies' announces to fail against the absent
	// tracker.
	time.Sleep(2 * interval)

	if err := c.Tracker.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if !announced(t, c.Tracker.URL, c.Token, "tr/begun.bin", port, 5*interval) {
		t.Fatalf("proxy1 (BitTorrent port %d) did not announce tr/begun.bin to the returned tracker within %s (announce interval %s)",
			port, time.Since(t0).Round(time.Millisecond), interval)
	}
	t.Logf("proxy1 announced again %s after the tracker returned", time.Since(t0).Round(time.Millisecond))
}

// announced polls the tracker at trackerURL (as the operator, with token,
// to whom it lists a swarm's peers) until it lists a peer on port for
// path, at most for within.
func announced(t *testing.T, trackerURL, token, path string, port int, within time.Duration) bool {
	t.Helper()
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		fi, err := trackerInfo(t, http.DefaultClient, trackerURL, token, path)
		if err != nil {
			continue
		}
		for _, p := range fi.Peers {
			if p.Port == port {
				return true
			}
		}
	}
	return false
}

func waitAnnounced(t *testing.T, trackerURL, token, path string, port int, within time.Duration) {
	t.Helper()
	if !announced(t, trackerURL, token, path, port, within) {
		t.Fatalf("the tracker never listed the peer on port %d for %s", port, path)
	}
}

// originFault is what a faultyOrigin does wrong.
type originFault int

const (
	// ignoreRange strips Range: the origin answers 200 with the whole file.
	ignoreRange originFault = iota
	// shortBody passes only the first cut bytes of each body, keeping the
	// promised Content-Length.
	shortBody
	// changedETag answers a new ETag after the first `after` GETs.
	changedETag
	// changedLength answers a Content-Range with a new total size after the
	// first `after` GETs.
	changedLength
)

// faultyOrigin is a reverse proxy in front of the real origin that breaks
// its answers to media GETs in one way.
type faultyOrigin struct {
	fault originFault
	cut   int64
	after int64
	gets  atomic.Int64
	rp    *httputil.ReverseProxy
}

type cutKey struct{}

func newFaultyOrigin(t *testing.T, origin string, fault originFault, cut, after int64) *httptest.Server {
	t.Helper()
	u, err := url.Parse(origin)
	if err != nil {
		t.Fatal(err)
	}
	f := &faultyOrigin{fault: fault, cut: cut, after: after}
	f.rp = httputil.NewSingleHostReverseProxy(u)
	f.rp.ErrorLog = nil
	f.rp.ModifyResponse = func(resp *http.Response) error {
		if n, ok := resp.Request.Context().Value(cutKey{}).(int64); ok && resp.ContentLength > n {
			resp.Body = struct {
				io.Reader
				io.Closer
			}{io.LimitReader(resp.Body, n), resp.Body}
		}
		return nil
	}
	s := httptest.NewServer(f)
	t.Cleanup(s.Close)
	return s
}

func (f *faultyOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet || !strings.HasPrefix(r.URL.Path, "/files/") {
		f.rp.ServeHTTP(w, r)
		return
	}
	n := f.gets.Add(1)
	switch {
	case f.fault == ignoreRange:
		r.Header.Del("Range")
		r.Header.Del("If-Range")
	case f.fault == shortBody:
		r = r.WithContext(context.WithValue(r.Context(), cutKey{}, f.cut))
	case f.fault == changedETag && n > f.after:
		w = &rewriter{ResponseWriter: w, rewrite: func(h http.Header) {
			if h.Get("ETag") != "" {
				h.Set("ETag", `"changed-since-registration"`)
			}
		}}
	case f.fault == changedLength && n > f.after:
		w = &rewriter{ResponseWriter: w, rewrite: func(h http.Header) {
			if cr := h.Get("Content-Range"); cr != "" {
				i := strings.LastIndexByte(cr, '/')
				total, _ := strconv.ParseInt(cr[i+1:], 10, 64)
				h.Set("Content-Range", cr[:i+1]+strconv.FormatInt(total+1000, 10))
			}
		}}
	}
	f.rp.ServeHTTP(w, r)
}

// rewriter changes the response's headers just before they are sent.
type rewriter struct {
	http.ResponseWriter
	rewrite func(http.Header)
	wrote   bool
}

func (w *rewriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		w.rewrite(w.Header())
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *rewriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

func (w *rewriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestMisbehavingOrigin: an origin that ignores Range, cuts bodies short,
// or whose file changes (ETag, length) mid-download never makes the player
// receive misaligned or mixed bytes. Short bodies are retried until the
// player has its bytes; the other faults fail every request at once (they
// are detected, not waited out: well within the stall timeout), say why on
// /v1/status and, but for the short bodies, are reported to the tracker.
func TestMisbehavingOrigin(t *testing.T) {
	c := start(t, demo.Config{ScanInterval: 200 * time.Millisecond})
	const (
		size  = 4<<20 + 321
		stall = 3 * time.Second
	)
	for _, tc := range []struct {
		name       string
		fault      originFault
		cut, after int64
		recovers   bool // every request gets its exact bytes; else every one fails
	}{
		{name: "ignores-range", fault: ignoreRange},
		{name: "short-body", fault: shortBody, cut: 600_000, recovers: true},
		{name: "changed-etag", fault: changedETag, after: 2},
		{name: "changed-length", fault: changedLength, after: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "misbehaving/" + tc.name + ".bin"
			data := writeMedia(t, c, path, size)
			waitInfo(t, c, path, "")
			inj := newFaultyOrigin(t, c.Origin.URL, tc.fault, tc.cut, tc.after)
			tp := startTestProxy(t, c, proxy.Config{Origins: []string{inj.URL}, StallTimeout: stall})
			for _, rq := range []struct {
				rng        string
				start, end int
			}{
				{"", 0, size - 1},
				{"bytes=1000000-2999999", 1000000, 2999999},
				{"bytes=-70000", size - 70000, size - 1},
				{"", 0, size - 1},
			} {
				t0 := time.Now()
				resp, body, err := get(t, tp.URL+"/stream/"+fileinfo.EscapePath(path), rq.rng)
				took := time.Since(t0).Round(time.Millisecond)
				want := data[rq.start : rq.end+1]
				ok := err == nil && resp.StatusCode < 300 && bytes.Equal(body, want)
				t.Logf("%q: %s in %s, err %v, %d bytes, exact %v", rq.rng, statusOf(resp), took, err, len(body), ok)
				if resp != nil && resp.StatusCode < 300 && !isPrefix(body, want) {
					t.Errorf("%q: %s carried bytes that are not the file's [%d, %d]", rq.rng, resp.Status, rq.start, rq.end)
				}
				switch {
				case tc.recovers && !ok:
					t.Errorf("%q: %s, err %v, %d bytes: want the exact %d bytes despite the short bodies", rq.rng, statusOf(resp), err, len(body), len(want))
				case !tc.recovers && ok:
					t.Errorf("%q: the whole range from an origin that %s", rq.rng, tc.name)
				case !tc.recovers && took >= stall:
					t.Errorf("%q: failed after %s, not before the %s stall timeout: the fault was waited out, not detected", rq.rng, took, stall)
				}
			}
			t.Logf("the injector saw %d media GETs", injectorGets(inj))
			if tc.recovers {
				return
			}
			if f := fileStatusAt(t, tp.URL, path); !strings.Contains(f.Error, "changed") {
				t.Errorf("/v1/status error for %s: %q, want it to say the file changed", path, f.Error)
			}
			if !reported(t, c, fileinfo.ReportHashMismatch, path) {
				t.Errorf("the tracker received no %s report for %s", fileinfo.ReportHashMismatch, path)
			}
		})
	}
}

// isPrefix reports whether b is a prefix of whole.
func isPrefix(b, whole []byte) bool { return len(b) <= len(whole) && bytes.Equal(b, whole[:len(b)]) }

func injectorGets(s *httptest.Server) int64 { return s.Config.Handler.(*faultyOrigin).gets.Load() }

// reported polls the tracker's reports for one of kind about path.
func reported(t *testing.T, c *demo.Cluster, kind, path string) bool {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, c.Tracker.URL+"/v1/reports", nil)
		req.Header.Set("Authorization", "Bearer "+c.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var reps []fileinfo.Report
		err = json.NewDecoder(resp.Body).Decode(&reps)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil {
			t.Fatalf("GET /v1/reports: %s, %v", resp.Status, err)
		}
		for _, r := range reps {
			if r.Kind == kind && r.Path == path {
				return true
			}
		}
	}
	return false
}

// TestTinyCache: a proxy whose cache is smaller than the file still
// streams it exactly (from the origin), and its cache stays within its
// size, on disk too.
func TestTinyCache(t *testing.T) {
	const (
		path     = "tiny/big.bin"
		size     = 3<<20 + 777
		capacity = 1 << 20
	)
	c := start(t, demo.Config{Proxies: 1, CacheSize: capacity, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, path, size)
	waitInfo(t, c, path, "")
	p := c.Proxies[0]
	for _, rq := range []struct {
		rng        string
		code       int
		start, end int
	}{
		{"", http.StatusOK, 0, size - 1},
		{"bytes=1500000-2600000", http.StatusPartialContent, 1500000, 2600000},
		{"", http.StatusOK, 0, size - 1},
	} {
		if got := mustGet(t, streamURL(p, path), rq.rng, rq.code); !bytes.Equal(got, data[rq.start:rq.end+1]) {
			t.Fatalf("%q: bytes differ", rq.rng)
		}
	}
	st := status(t, p)
	if st.Cache.Bytes > capacity || st.Cache.Capacity != capacity {
		t.Errorf("cache holds %d bytes of %d; want at most %d", st.Cache.Bytes, st.Cache.Capacity, capacity)
	}
	var onDisk int64
	for _, sub := range []string{"files", "staging"} {
		filepath.Walk(filepath.Join(c.Dir, p.Name, sub), func(_ string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode().IsRegular() {
				onDisk += fi.Size()
			}
			return nil
		})
	}
	t.Logf("cache: %d bytes accounted, %d on disk, capacity %d", st.Cache.Bytes, onDisk, capacity)
	if onDisk > capacity {
		t.Errorf("%d bytes in the cache directory, over its %d-byte size", onDisk, capacity)
	}
}

// stallingOrigin is a reverse proxy in front of the real origin that, while
// hang is set, passes the first 1000 bytes of each media body and then
// sends nothing more until its client gives up.
type stallingOrigin struct {
	*httptest.Server
	hang    atomic.Bool
	gets    atomic.Int64
	hanging chan struct{} // gets a value when a body starts hanging
}

func newStallingOrigin(t *testing.T, origin string) *stallingOrigin {
	t.Helper()
	u, err := url.Parse(origin)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ErrorLog = nil
	s := &stallingOrigin{hanging: make(chan struct{}, 1)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/files/") {
			s.gets.Add(1)
			if s.hang.Load() {
				w = &hangWriter{ResponseWriter: w, ctx: r.Context(), left: 1000, hanging: s.hanging}
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// hangWriter writes left body bytes, then blocks until ctx ends.
type hangWriter struct {
	http.ResponseWriter
	ctx     context.Context
	left    int
	hanging chan struct{}
}

func (w *hangWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b[:min(len(b), w.left)])
	w.left -= n
	if err != nil || w.left > 0 {
		return n, err
	}
	w.ResponseWriter.(http.Flusher).Flush()
	select {
	case w.hanging <- struct{}{}:
	default:
	}
	<-w.ctx.Done()
	return n, w.ctx.Err()
}

// TestStalledOriginRecovers: an origin that sends 1000 bytes of a range and
// then goes silent holds nothing for good. A player waiting when it
// returns gets its bytes; a player whose request failed during the stall
// gets the file at once on its next request, from new origin requests.
func TestStalledOriginRecovers(t *testing.T) {
	const (
		size  = 4<<20 + 99
		stall = 3 * time.Second
	)
	c := start(t, demo.Config{ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, "stall/a.bin", size)
	other := writeMedia(t, c, "stall/b.bin", size)
	waitInfo(t, c, "stall/a.bin", "")
	waitInfo(t, c, "stall/b.bin", "")
	o := newStallingOrigin(t, c.Origin.URL)
	tp := startTestProxy(t, c, proxy.Config{Origins: []string{o.URL}, StallTimeout: stall})
	u := tp.URL + "/stream/" + fileinfo.EscapePath("stall/a.bin")

	// The origin stalls under a waiting player, then returns.
	o.hang.Store(true)
	type result struct {
		body []byte
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		t0 := time.Now()
		resp, body, err := get(t, u, "bytes=0-2999999")
		if err == nil && resp.StatusCode != http.StatusPartialContent {
			err = errors.New(resp.Status)
		}
		done <- result{body, err, time.Since(t0)}
	}()
	select {
	case <-o.hanging:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy never asked the origin")
	}
	o.hang.Store(false)
	r := <-done
	t.Logf("stalled under a waiting player: %d bytes in %s, err %v", len(r.body), r.took.Round(time.Millisecond), r.err)
	if r.err != nil || !bytes.Equal(r.body, data[:3000000]) {
		t.Fatalf("the player waiting through a stall of the origin got %d bytes, err %v; want its range once the origin is back", len(r.body), r.err)
	}

	// The origin stalls on every request for another file: the player's
	// request fails (cleanly), then the origin returns.
	u, data = tp.URL+"/stream/"+fileinfo.EscapePath("stall/b.bin"), other
	o.hang.Store(true)
	t0 := time.Now()
	resp, body, err := get(t, u, "")
	t.Logf("origin stalled throughout: %s after %s, %d bytes, err %v", statusOf(resp), time.Since(t0).Round(time.Millisecond), len(body), err)
	if err == nil && resp.StatusCode == http.StatusOK && len(body) == size {
		t.Fatal("a whole response from an origin that stalled throughout")
	}
	if !isPrefix(body, data) {
		t.Fatal("the failed response carried wrong bytes")
	}
	o.hang.Store(false)
	before := o.gets.Load()
	t0 = time.Now()
	resp, body, err = get(t, u, "")
	took := time.Since(t0)
	t.Logf("origin back: %s in %s, %d new origin requests", statusOf(resp), took.Round(time.Millisecond), o.gets.Load()-before)
	if err != nil || resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) {
		t.Fatalf("the next request after the origin returned: %s, %d bytes, err %v; want the file", statusOf(resp), len(body), err)
	}
	if o.gets.Load() == before {
		t.Error("the file was served without a new origin request")
	}
	if took > 5*time.Second {
		t.Errorf("the next request after the origin returned took %s; want a few seconds at most", took)
	}
}
