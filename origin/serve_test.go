package origin

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/p2sp/p2sp/metrics"
)

func TestServeRanges(t *testing.T) {
	const size = 100_000
	data := randomBytes(size, 1)
	o := startOrigin(t, Config{})
	p := writeFile(t, o.media, "films/a film.mp4", data)
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// Once hashed, the ETag is the content's.
	sum := sha256.Sum256(data)
	wantETag := `"sha256-` + hex.EncodeToString(sum[:]) + `"`
	eventually(t, "the file hashed", func() bool {
		cat := o.catalog(t)
		return len(cat) == 1 && cat[0].ETag == wantETag
	})
	url := o.url + "/files/films/a%20film.mp4"

	tests := []struct {
		name      string
		method    string
		header    map[string]string
		wantCode  int
		wantRange string // Content-Range, "" for none
		lo, hi    int    // expected body is data[lo:hi] (GET only)
	}{
		{name: "whole", method: "GET", wantCode: 200, lo: 0, hi: size},
		{name: "single", method: "GET", header: map[string]string{"Range": "bytes=0-99"}, wantCode: 206, wantRange: "bytes 0-99/100000", lo: 0, hi: 100},
		{name: "middle", method: "GET", header: map[string]string{"Range": "bytes=5000-70000"}, wantCode: 206, wantRange: "bytes 5000-70000/100000", lo: 5000, hi: 70001},
		{name: "open", method: "GET", header: map[string]string{"Range": "bytes=99000-"}, wantCode: 206, wantRange: "bytes 99000-99999/100000", lo: 99000, hi: size},
		{name: "suffix", method: "GET", header: map[string]string{"Range": "bytes=-500"}, wantCode: 206, wantRange: "bytes 99500-99999/100000", lo: 99500, hi: size},
		{name: "clipped past end", method: "GET", header: map[string]string{"Range": "bytes=99990-200000"}, wantCode: 206, wantRange: "bytes 99990-99999/100000", lo: 99990, hi: size},
		{name: "unsatisfiable", method: "GET", header: map[string]string{"Range": "bytes=100000-"}, wantCode: 416, wantRange: "bytes */100000"},
		{name: "if-range current etag", method: "GET", header: map[string]string{"Range": "bytes=10-19", "If-Range": wantETag}, wantCode: 206, wantRange: "bytes 10-19/100000", lo: 10, hi: 20},
		{name: "if-range stale etag", method: "GET", header: map[string]string{"Range": "bytes=10-19", "If-Range": `"0-0"`}, wantCode: 200, lo: 0, hi: size},
		{name: "if-none-match", method: "GET", header: map[string]string{"If-None-Match": wantETag}, wantCode: 304},
		{name: "head", method: "HEAD", wantCode: 200},
		{name: "head range", method: "HEAD", header: map[string]string{"Range": "bytes=0-99"}, wantCode: 206, wantRange: "bytes 0-99/100000"},
	}
	var received int
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, tc.method, url, tc.header)
			received += len(body)
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d (body %.100q)", resp.StatusCode, tc.wantCode, body)
			}
			if got := resp.Header.Get("Content-Range"); got != tc.wantRange {
				t.Errorf("Content-Range %q, want %q", got, tc.wantRange)
			}
			if tc.wantCode == 416 || tc.wantCode == 304 {
				return
			}
			if got := resp.Header.Get("ETag"); got != wantETag {
				t.Errorf("ETag %q, want %q", got, wantETag)
			}
			if got := resp.Header.Get("Last-Modified"); got != st.ModTime().UTC().Format(http.TimeFormat) {
				t.Errorf("Last-Modified %q", got)
			}
			if got := resp.Header.Get("Content-Type"); got != "video/mp4" {
				t.Errorf("Content-Type %q, want video/mp4", got)
			}
			if tc.method == "HEAD" {
				if len(body) != 0 {
					t.Errorf("HEAD sent %d body bytes", len(body))
				}
				return
			}
			if !bytes.Equal(body, data[tc.lo:tc.hi]) {
				t.Errorf("body: %d bytes differ from file bytes [%d, %d)", len(body), tc.lo, tc.hi)
			}
			if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(tc.hi-tc.lo) {
				t.Errorf("Content-Length %q, want %d", got, tc.hi-tc.lo)
			}
		})
	}

	t.Run("multipart", func(t *testing.T) {
		resp, body := get(t, "GET", url, map[string]string{"Range": "bytes=0-9,50000-50009"})
		received += len(body)
		if resp.StatusCode != 206 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
		if err != nil || mt != "multipart/byteranges" {
			t.Fatalf("Content-Type %q", resp.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for _, want := range [][2]int{{0, 10}, {50000, 50010}} {
			part, err := mr.NextPart()
			if err != nil {
				t.Fatalf("part: %v", err)
			}
			got, _ := io.ReadAll(part)
			if !bytes.Equal(got, data[want[0]:want[1]]) {
				t.Errorf("part %v: wrong bytes", want)
			}
		}
	})

	// Every body byte the clients received was counted.
	eventually(t, "sent bytes counted", func() bool {
		return metricValue(t, o.reg, "p2sp_origin_sent_bytes_total", nil) == float64(received)
	})
	if got := metricValue(t, o.reg, "p2sp_origin_requests_total", map[string]string{"code": "206"}); got != 8 {
		t.Errorf("requests_total{code=206} = %v, want 8", got)
	}
	if got := metricValue(t, o.reg, "p2sp_origin_requests_total", map[string]string{"code": "416"}); got != 1 {
		t.Errorf("requests_total{code=416} = %v, want 1", got)
	}
}

func TestServeContentTypes(t *testing.T) {
	o := startOrigin(t, Config{})
	tests := []struct{ name, want string }{
		{"a.mp4", "video/mp4"},
		{"a.webm", "video/webm"},
		{"a.mkv", "video/x-matroska"},
		{"a.mp3", "audio/mpeg"},
		{"a.m4a", "audio/mp4"},
		{"a.ogg", "audio/ogg"},
		{"a.wav", "audio/wav"},
		{"UPPER.MP4", "video/mp4"},
		{"noext", "application/octet-stream"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, o.media, tc.name, []byte("x"))
			resp, _ := get(t, "HEAD", o.url+"/files/"+tc.name, nil)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Get("Content-Type"); got != tc.want {
				t.Errorf("Content-Type %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServeEmptyAndChangedFile(t *testing.T) {
	o := startOrigin(t, Config{})
	writeFile(t, o.media, "empty.mp4", nil)
	resp, body := get(t, "GET", o.url+"/files/empty.mp4", nil)
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Fatalf("empty file: %d, %d bytes", resp.StatusCode, len(body))
	}

	// A file served before hashing, then rewritten: the new bytes are
	// served with a new ETag at once, and the old ETag no longer
	// satisfies If-Range.
	p := writeFile(t, o.media, "v.mp4", []byte("version one"))
	resp1, _ := get(t, "GET", o.url+"/files/v.mp4", nil)
	if err := os.WriteFile(p, []byte("version two!"), 0o644); err != nil {
		t.Fatal(err)
	}
	later := time.Now().Add(time.Second)
	os.Chtimes(p, later, later)
	resp2, body := get(t, "GET", o.url+"/files/v.mp4", map[string]string{"Range": "bytes=0-3", "If-Range": resp1.Header.Get("ETag")})
	if resp2.StatusCode != 200 || string(body) != "version two!" {
		t.Errorf("after change with old If-Range: %d %q, want 200 with the new bytes", resp2.StatusCode, body)
	}
	if resp2.Header.Get("ETag") == resp1.Header.Get("ETag") {
		t.Errorf("ETag unchanged after the file changed")
	}
}

func TestTraversal(t *testing.T) {
	base := t.TempDir()
	media := filepath.Join(base, "media")
	secret := []byte("TOP-SECRET-OUTSIDE-MEDIA")
	writeFile(t, base, "secret.txt", secret)
	writeFile(t, base, "outside/secret.txt", secret)
	writeFile(t, media, "films/a.mp4", []byte("inside"))
	writeFile(t, media, ".hidden.mp4", []byte("hidden"))
	writeFile(t, media, ".git/config", []byte("hidden"))
	writeFile(t, media, "films/.partial.mp4", []byte("hidden"))
	for link, target := range map[string]string{
		"link.mp4":      "../secret.txt",
		"abslink.mp4":   filepath.Join(base, "secret.txt"),
		"outdir":        "../outside",
		"films/in.mp4":  "a.mp4",
		"films/etc.mp4": "/etc/passwd",
	} {
		if err := os.Symlink(target, filepath.Join(media, link)); err != nil {
			t.Fatal(err)
		}
	}
	o := startOrigin(t, Config{Media: media})

	tests := []struct {
		target string
		want   int
	}{
		{"/files/../secret.txt", 400},
		{"/files/%2e%2e/secret.txt", 400},
		{"/files/%2E%2E/secret.txt", 400},
		{"/files/films%2f..%2f..%2fsecret.txt", 400},
		{"/files/films/../../secret.txt", 400},
		{"/files//etc/passwd", 400},
		{"/files/%2fetc/passwd", 400},
		{"/files/..%5csecret.txt", 400},
		{"/files/films%5c..%5c..%5csecret.txt", 400},
		{"/files/films/a.mp4%00", 400},
		{"/files/./films/a.mp4", 400},
		{"/files/films/", 400},
		{"/files/link.mp4", 404},
		{"/files/abslink.mp4", 404},
		{"/files/outdir/secret.txt", 404},
		{"/files/films/in.mp4", 404},
		{"/files/films/etc.mp4", 404},
		{"/files/.hidden.mp4", 404},
		{"/files/.git/config", 404},
		{"/files/films/.partial.mp4", 404},
		{"/files/films", 404},
		{"/files/nothere.mp4", 404},
		// The control: the one file that is served.
		{"/files/films/a.mp4", 200},
	}
	for _, tc := range tests {
		t.Run(tc.target, func(t *testing.T) {
			code, body := rawGet(t, o.addr, tc.target)
			if code != tc.want {
				t.Errorf("status %d, want %d", code, tc.want)
			}
			if bytes.Contains(body, secret) || bytes.Contains(body, []byte("root:")) || bytes.Contains(body, []byte("hidden")) {
				t.Errorf("body leaks a file: %q", body)
			}
		})
	}
	var paths []string
	for _, e := range o.catalogAfterScan(t) {
		paths = append(paths, e.Path)
	}
	if want := []string{"films/a.mp4"}; !slices.Equal(paths, want) {
		t.Errorf("catalog lists %q, want %q", paths, want)
	}
}

// scanMarker is the file catalogAfterScan adds and removes.
const scanMarker = "zz-scan-marker.bin"

// catalogAfterScan returns the catalog as a scan that started after the
// call left it: it adds a marker file, waits until a scan lists it (that
// scan walked the whole tree), removes it and waits until a scan drops it.
func (o *testOrigin) catalogAfterScan(t *testing.T) []CatalogEntry {
	t.Helper()
	listed := func() bool {
		return slices.ContainsFunc(o.catalog(t), func(e CatalogEntry) bool { return e.Path == scanMarker })
	}
	p := writeFile(t, o.media, scanMarker, []byte("marker"))
	eventually(t, "a scan to list the marker", listed)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a scan to drop the marker", func() bool { return !listed() })
	return o.catalog(t)
}

func TestRateLimit(t *testing.T) {
	const (
		rateLimit = 2 << 20
		fileSize  = 1 << 20
	)
	data := randomBytes(fileSize, 2)
	media := t.TempDir()
	writeFile(t, media, "a.mp4", data)
	writeFile(t, media, "b.mp4", data)
	o := startOrigin(t, Config{Media: media, RateLimit: rateLimit})

	start := time.Now()
	type result struct {
		body []byte
		err  error
	}
	results := make(chan result, 2)
	for _, name := range []string{"a.mp4", "b.mp4"} {
		go func() {
			resp, err := http.Get(o.url + "/files/" + name)
			if err != nil {
				results <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			results <- result{b, err}
		}()
	}
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if !bytes.Equal(r.body, data) {
			t.Fatalf("body differs from the file (%d bytes)", len(r.body))
		}
	}
	// Two files of 1 MiB under a 2 MiB/s cap on the total take about one
	// second; the bound is generous, and only a lower one.
	if d := time.Since(start); d < 750*time.Millisecond {
		t.Errorf("2 MiB sent in %v under a %d B/s cap", d, rateLimit)
	}
	eventually(t, "sent bytes counted", func() bool {
		return metricValue(t, o.reg, "p2sp_origin_sent_bytes_total", nil) == 2*fileSize
	})
}

func TestRateLimitClientGone(t *testing.T) {
	// A client that goes away stops consuming the shared budget: the next
	// request is not held up behind the abandoned one's bytes.
	media := t.TempDir()
	writeFile(t, media, "big.mp4", randomBytes(4<<20, 3))
	writeFile(t, media, "small.mp4", []byte("small"))
	o := startOrigin(t, Config{Media: media, RateLimit: 256 << 10})

	resp, err := http.Get(o.url + "/files/big.mp4")
	if err != nil {
		t.Fatal(err)
	}
	io.ReadFull(resp.Body, make([]byte, 1024))
	resp.Body.Close()
	_, body := get(t, "GET", o.url+"/files/small.mp4", nil)
	if string(body) != "small" {
		t.Fatalf("small: %q", body)
	}
	// The abandoned transfer sent far less than its 4 MiB.
	eventually(t, "abandoned transfer stopped", func() bool {
		before := metricValue(t, o.reg, "p2sp_origin_sent_bytes_total", nil)
		time.Sleep(200 * time.Millisecond)
		return metricValue(t, o.reg, "p2sp_origin_sent_bytes_total", nil) == before
	})
	if sent := metricValue(t, o.reg, "p2sp_origin_sent_bytes_total", nil); sent > 2<<20 {
		t.Errorf("sent %v bytes for an abandoned transfer", sent)
	}
}

func TestConfig(t *testing.T) {
	media := t.TempDir()
	file := writeFile(t, t.TempDir(), "f", []byte("x"))
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no token", Config{Media: media}},
		{"one-byte token", Config{Token: "x", Media: media}},
		{"a space for a token", Config{Token: " ", Media: media}},
		{"15 bytes once trimmed", Config{Token: " 0123456789abcde\t", Media: media}},
		{"no media", Config{Token: testToken}},
		{"media missing", Config{Token: testToken, Media: filepath.Join(media, "nope")}},
		{"media is a file", Config{Token: testToken, Media: file}},
		{"bad tracker url", Config{Token: testToken, Media: media, TrackerURL: "tracker:7070"}},
		{"bad public url", Config{Token: testToken, Media: media, PublicURL: "ftp://x"}},
		{"negative rate", Config{Token: testToken, Media: media, RateLimit: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Registry = metrics.NewRegistry()
			if s, err := New(tc.cfg); err == nil {
				s.Close()
				t.Fatal("New accepted the config")
			}
		})
	}
}

func TestNotReadyBeforeFirstScan(t *testing.T) {
	s, err := New(Config{Media: t.TempDir(), Token: testToken, Registry: metrics.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 503} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		if rec.Code != want {
			t.Errorf("%s: %d, want %d", path, rec.Code, want)
		}
	}
}

// TestSameMTimeRewrite: content rewritten with its size and modification
// time kept gets a new ETag at once (If-Range with the old one answers the
// whole new file), and once rehashed its new content's; the same bytes
// written again keep their ETag.
func TestSameMTimeRewrite(t *testing.T) {
	o := startOrigin(t, Config{})
	a, b := randomBytes(4096, 21), randomBytes(4096, 22)
	p := writeFile(t, o.media, "r.mp4", a)
	url := o.url + "/files/r.mp4"
	content := func(data []byte) string {
		sum := sha256.Sum256(data)
		return `"sha256-` + hex.EncodeToString(sum[:]) + `"`
	}
	servedETag := func() string {
		resp, _ := get(t, http.MethodHead, url, nil)
		return resp.Header.Get("ETag")
	}
	eventually(t, "the first version hashed", func() bool { return servedETag() == content(a) })
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	rewrite := func(data []byte) {
		t.Helper()
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	rewrite(b)
	if got := servedETag(); got == content(a) {
		t.Fatalf("ETag %s still the old content's after a same-mtime rewrite", got)
	}
	resp, body := get(t, http.MethodGet, url, map[string]string{"Range": "bytes=0-3", "If-Range": content(a)})
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, b) {
		t.Errorf("If-Range with the old content's ETag: %d, %d bytes; want 200 with the new file", resp.StatusCode, len(body))
	}
	eventually(t, "the new version hashed", func() bool { return servedETag() == content(b) })
	rewrite(b)
	eventually(t, "the same bytes rehashed", func() bool { return servedETag() == content(b) })
}

// TestRestartAnswersContentETag: just after a restart, before the
// background hash reaches a file, a request holding the file's content
// ETag in If-Range gets the range (the origin hashes the file for it), not
// the whole file, which would make a proxy drop what it holds.
func TestRestartAnswersContentETag(t *testing.T) {
	media := t.TempDir()
	data := randomBytes(1<<20, 31)
	writeFile(t, media, "big.mp4", data)
	writeFile(t, media, "small.mp4", []byte("hashed first"))
	sum := sha256.Sum256(data)
	want := `"sha256-` + hex.EncodeToString(sum[:]) + `"`
	first := startOrigin(t, Config{Media: media})
	eventually(t, "the first origin's hash", func() bool {
		resp, _ := get(t, http.MethodHead, first.url+"/files/big.mp4", nil)
		return resp.Header.Get("ETag") == want
	})
	// The restarted origin's one hashing worker is held up registering
	// the smallest file with a tracker that never answers, so only the
	// request can have the big file hashed.
	hung := make(chan struct{})
	tracker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hung:
		case <-r.Context().Done():
		}
	}))
	defer tracker.Close()
	defer close(hung)
	restarted := startOrigin(t, Config{Media: media, TrackerURL: tracker.URL})
	resp, body := get(t, http.MethodGet, restarted.url+"/files/big.mp4", map[string]string{"Range": "bytes=10-19", "If-Range": want})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[10:20]) || resp.Header.Get("ETag") != want {
		t.Fatalf("after a restart: %d, ETag %s, %d bytes; want 206 with %s", resp.StatusCode, resp.Header.Get("ETag"), len(body), want)
	}
}

// TestServeChangedMidBody: a file rewritten or truncated in place while a
// body is read from it (the origin capped, so the body takes a second)
// never makes a whole body: the body ends short of its Content-Length, a
// failed transfer the client sees, instead of bytes of two versions under
// the first one's ETag. A file renamed over or deleted meanwhile keeps its
// bytes, and the body is whole, of the version it started with.
func TestServeChangedMidBody(t *testing.T) {
	const size = 96 << 10
	o := startOrigin(t, Config{RateLimit: 64 << 10})
	tests := []struct {
		name   string
		change func(t *testing.T, p string, old []byte)
		whole  bool
	}{
		{"unchanged", func(*testing.T, string, []byte) {}, true},
		{"rewritten in place", func(t *testing.T, p string, old []byte) {
			b := bytes.Clone(old)
			for i := range b {
				b[i] ^= 0xff
			}
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"truncated", func(t *testing.T, p string, old []byte) {
			if err := os.Truncate(p, int64(len(old)/2)); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"renamed over", func(t *testing.T, p string, old []byte) {
			tmp := p + ".tmp"
			if err := os.WriteFile(tmp, randomBytes(len(old), 99), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, p); err != nil {
				t.Fatal(err)
			}
		}, true},
		{"deleted", func(t *testing.T, p string, _ []byte) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := randomBytes(size, uint64(40+i))
			name := "mid/" + strconv.Itoa(i) + ".ts"
			p := writeFile(t, o.media, name, data)
			resp, err := http.Get(o.url + "/files/" + name)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			// The first bytes are out (the cap's burst): the origin is
			// mid-body when the file changes.
			head := make([]byte, 1024)
			if _, err := io.ReadFull(resp.Body, head); err != nil {
				t.Fatal(err)
			}
			tc.change(t, p, data)
			rest, err := io.ReadAll(resp.Body)
			body := append(head, rest...)
			whole := err == nil && int64(len(body)) == resp.ContentLength
			t.Logf("%d of %d bytes, %v", len(body), resp.ContentLength, err)
			switch {
			case tc.whole && (!whole || !bytes.Equal(body, data)):
				t.Fatalf("want the whole first version: %d of %d bytes, %v", len(body), resp.ContentLength, err)
			case !tc.whole && whole:
				t.Fatalf("a whole body (%d bytes, first version: %v) after the file changed mid-body", len(body), bytes.Equal(body, data))
			}
		})
	}
}
