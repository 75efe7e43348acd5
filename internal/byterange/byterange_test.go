package byterange_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/byterange"
	"github.com/p2sp/p2sp/internal/httpapi"
)

func TestParse(t *testing.T) {
	const size = 100
	r := func(start, length int64) byterange.Range { return byterange.Range{Start: start, Length: length} }
	tests := []struct {
		header string
		size   int64
		want   []byterange.Range
		err    error
	}{
		// No range: the whole representation.
		{header: "", size: size},
		{header: "  ", size: size},
		// An unknown unit is ignored (RFC 9110 section 14.2), whatever follows.
		{header: "items=0-5", size: size},
		{header: "none=", size: size},
		{header: "items=a-b,,", size: size},
		// Single ranges.
		{header: "bytes=0-4", size: size, want: []byterange.Range{r(0, 5)}},
		{header: "bytes=0-0", size: size, want: []byterange.Range{r(0, 1)}},
		{header: "bytes=3-7", size: size, want: []byterange.Range{r(3, 5)}},
		{header: "bytes=99-99", size: size, want: []byterange.Range{r(99, 1)}},
		{header: "bytes=2-", size: size, want: []byterange.Range{r(2, 98)}},
		{header: "bytes=0-", size: size, want: []byterange.Range{r(0, 100)}},
		{header: "bytes=99-", size: size, want: []byterange.Range{r(99, 1)}},
		// The end is clamped to size-1.
		{header: "bytes=5-1000", size: size, want: []byterange.Range{r(5, 95)}},
		{header: "bytes=0-99", size: size, want: []byterange.Range{r(0, 100)}},
		{header: "bytes=0-100", size: size, want: []byterange.Range{r(0, 100)}},
		{header: "bytes=0-9223372036854775807", size: size, want: []byterange.Range{r(0, 100)}},
		// Suffix ranges; one longer than the size is the whole.
		{header: "bytes=-5", size: size, want: []byterange.Range{r(95, 5)}},
		{header: "bytes=-1", size: size, want: []byterange.Range{r(99, 1)}},
		{header: "bytes=-100", size: size, want: []byterange.Range{r(0, 100)}},
		{header: "bytes=-101", size: size, want: []byterange.Range{r(0, 100)}},
		{header: "bytes=-9223372036854775807", size: size, want: []byterange.Range{r(0, 100)}},
		// Case-insensitive unit, whitespace as RFC 9110 lists allow (and
		// around '-', as net/http does).
		{header: "Bytes=0-4", size: size, want: []byterange.Range{r(0, 5)}},
		{header: "BYTES=0-4", size: size, want: []byterange.Range{r(0, 5)}},
		{header: " bytes=0-4 ", size: size, want: []byterange.Range{r(0, 5)}},
		{header: "bytes = 0-4", size: size, want: []byterange.Range{r(0, 5)}},
		{header: "bytes=\t0 - 4\t", size: size, want: []byterange.Range{r(0, 5)}},
		{header: "bytes=0-1 , 5-8", size: size, want: []byterange.Range{r(0, 2), r(5, 4)}},
		{header: "bytes=,0-1,,", size: size, want: []byterange.Range{r(0, 2)}},
		// Multiple ranges keep their order and are not merged.
		{header: "bytes=0-0,-2", size: size, want: []byterange.Range{r(0, 1), r(98, 2)}},
		{header: "bytes=5-8,0-1", size: size, want: []byterange.Range{r(5, 4), r(0, 2)}},
		{header: "bytes=0-5,3-8", size: size, want: []byterange.Range{r(0, 6), r(3, 6)}},
		// Unsatisfiable parts are dropped; all of them: 416.
		{header: "bytes=0-1,100-", size: size, want: []byterange.Range{r(0, 2)}},
		{header: "bytes=-0,0-1", size: size, want: []byterange.Range{r(0, 2)}},
		{header: "bytes=100-", size: size, err: byterange.ErrUnsatisfiable},
		{header: "bytes=100-100", size: size, err: byterange.ErrUnsatisfiable},
		{header: "bytes=1000-2000", size: size, err: byterange.ErrUnsatisfiable},
		{header: "bytes=-0", size: size, err: byterange.ErrUnsatisfiable},
		{header: "bytes=-0,100-", size: size, err: byterange.ErrUnsatisfiable},
		// An empty representation satisfies no byte range.
		{header: "bytes=0-", size: 0, err: byterange.ErrUnsatisfiable},
		{header: "bytes=0-0", size: 0, err: byterange.ErrUnsatisfiable},
		{header: "bytes=-1", size: 0, err: byterange.ErrUnsatisfiable},
		{header: "bytes=-0", size: 0, err: byterange.ErrUnsatisfiable},
		{header: "", size: 0},
		{header: "items=0-1", size: 0},
		{header: "bytes=x", size: 0, err: byterange.ErrMalformed},
		// Not a range request at all: ignored, as nginx does.
		{header: "bytes", size: size},
		{header: "0-5", size: size},
		{header: "=0-5", size: size},
		{header: "by tes=0-5", size: size},
		{header: "bytes=", size: size},
		{header: "bytes= , ,", size: size},
		{header: "bytes=,", size: size},
		// A range that ends before it starts is invalid (RFC 9110 section
		// 14.1.1) and selects nothing, as nginx reads it.
		{header: "bytes=5-4", size: size, err: byterange.ErrUnsatisfiable},
		{header: "bytes=100-50", size: size, err: byterange.ErrUnsatisfiable},
		{header: "bytes=200-100", size: size, err: byterange.ErrUnsatisfiable},
		{header: "bytes=0-1,5-4", size: size, want: []byterange.Range{r(0, 2)}},
		// Malformed byte range sets.
		{header: "bytes=abc", size: size, err: byterange.ErrMalformed},
		{header: "bytes=5", size: size, err: byterange.ErrMalformed},
		{header: "bytes=-", size: size, err: byterange.ErrMalformed},
		{header: "bytes=a-5", size: size, err: byterange.ErrMalformed},
		{header: "bytes=0-b", size: size, err: byterange.ErrMalformed},
		{header: "bytes=0x10-", size: size, err: byterange.ErrMalformed},
		{header: "bytes=--5", size: size, err: byterange.ErrMalformed},
		{header: "bytes=-5-", size: size, err: byterange.ErrMalformed},
		{header: "bytes=5--6", size: size, err: byterange.ErrMalformed},
		{header: "bytes=+5-", size: size, err: byterange.ErrMalformed},
		{header: "bytes=0-+5", size: size, err: byterange.ErrMalformed},
		{header: "bytes=-+5", size: size, err: byterange.ErrMalformed},
		{header: "bytes=1-2-3", size: size, err: byterange.ErrMalformed},
		{header: "bytes=0 1-2", size: size, err: byterange.ErrMalformed},
		{header: "bytes=0-1;2-3", size: size, err: byterange.ErrMalformed},
		{header: "bytes=0-1=2", size: size, err: byterange.ErrMalformed},
		{header: "bytes=0-1,x", size: size, err: byterange.ErrMalformed},
		{header: "bytes=100-,x-", size: size, err: byterange.ErrMalformed},
		{header: "bytes=٣-٤", size: size, err: byterange.ErrMalformed},
		{header: "bytes=99999999999999999999x-", size: size, err: byterange.ErrMalformed},
		// Numbers past int64 are past any representation (the grammar is
		// 1*DIGIT): a last byte there is the end, a first byte there is
		// unsatisfiable, a suffix that long is the whole.
		{header: "bytes=9223372036854775808-", size: size, err: byterange.ErrUnsatisfiable},
		{header: "bytes=99999999999999999999-", size: size, err: byterange.ErrUnsatisfiable},
		{header: "bytes=0-9223372036854775808", size: size, want: []byterange.Range{r(0, 100)}},
		{header: "bytes=0-99999999999999999999", size: size, want: []byterange.Range{r(0, 100)}},
		{header: "bytes=-99999999999999999999", size: size, want: []byterange.Range{r(0, 100)}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q/%d", tt.header, tt.size), func(t *testing.T) {
			got, err := byterange.Parse(tt.header, tt.size)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("Parse = %v, %v; want error %v", got, err, tt.err)
				}
				if got != nil {
					t.Errorf("Parse returned ranges %v with error %v", got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Parse = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestContentRange(t *testing.T) {
	tests := []struct {
		r    byterange.Range
		size int64
		want string
	}{
		{byterange.Range{Start: 0, Length: 1}, 1, "bytes 0-0/1"},
		{byterange.Range{Start: 3, Length: 5}, 100, "bytes 3-7/100"},
		{byterange.Range{Start: 0, Length: 1 << 40}, 1 << 40, "bytes 0-1099511627775/1099511627776"},
	}
	for _, tt := range tests {
		if got := tt.r.ContentRange(tt.size); got != tt.want {
			t.Errorf("%+v.ContentRange(%d) = %q, want %q", tt.r, tt.size, got, tt.want)
		}
	}
}

// testFile is a real file in a temporary directory served through a
// Content whose Open uses os.Open, as the origin does.
type testFile struct {
	path    string
	data    []byte
	content *byterange.Content
	opens   atomic.Int32 // calls of Open
}

var testModTime = time.Date(2024, 5, 1, 12, 30, 45, 0, time.UTC)

const testETag = `"v1-abc"`

func newTestFile(t testing.TB, name string, size int) *testFile {
	t.Helper()
	var seed [32]byte
	seed[0] = byte(size)
	tf := &testFile{data: make([]byte, size), path: filepath.Join(t.TempDir(), name)}
	rand.NewChaCha8(seed).Read(tf.data)
	path := tf.path
	if err := os.WriteFile(path, tf.data, 0o644); err != nil {
		t.Fatal(err)
	}
	tf.content = &byterange.Content{
		Size:    int64(size),
		ModTime: testModTime.Add(300 * time.Millisecond), // sub-second part as file systems have
		ETag:    testETag,
		Name:    name,
		Open: func(ctx context.Context, off, n int64) (io.Reader, error) {
			tf.opens.Add(1)
			f, err := os.Open(path)
			if err != nil {
				return nil, err
			}
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				f.Close()
				return nil, err
			}
			// The shape the kernel can sendfile; Serve closes the file.
			return &io.LimitedReader{R: f, N: n}, nil
		},
	}
	return tf
}

// serve starts an HTTP server answering every request from c.
func serve(t testing.TB, c *byterange.Content) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := byterange.Serve(w, r, c); err != nil {
			t.Errorf("Serve: %v", err)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// serveGin starts a gin engine answering GET and HEAD from c the way the
// origin and the proxy do: gin's writer hides net/http's ReadFrom, which
// Serve reaches through Unwrap.
func serveGin(t testing.TB, c *byterange.Content) *httptest.Server {
	t.Helper()
	e := httpapi.NewEngine()
	h := httpapi.Handle(func(gc *gin.Context) error {
		err := byterange.Serve(gc.Writer, gc.Request, c)
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
		return err
	})
	e.GET("/*path", h)
	e.HEAD("/*path", h)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	return srv
}

func do(t *testing.T, srv *httptest.Server, method string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+"/f", nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, body
}

type wantRange struct{ start, end int64 } // [start, end)

const testFileLen = 100

// serveRangeTests follows net/http's ServeFileRangeTests, with the cases
// where byterange differs from it on purpose marked.
var serveRangeTests = []struct {
	r      string
	code   int
	ranges []wantRange
}{
	{r: "", code: http.StatusOK},
	{r: "bytes=0-4", code: http.StatusPartialContent, ranges: []wantRange{{0, 5}}},
	{r: "bytes=2-", code: http.StatusPartialContent, ranges: []wantRange{{2, testFileLen}}},
	{r: "bytes=-5", code: http.StatusPartialContent, ranges: []wantRange{{testFileLen - 5, testFileLen}}},
	{r: "bytes=3-7", code: http.StatusPartialContent, ranges: []wantRange{{3, 8}}},
	{r: "bytes=0-0,-2", code: http.StatusPartialContent, ranges: []wantRange{{0, 1}, {testFileLen - 2, testFileLen}}},
	{r: "bytes=0-1,5-8", code: http.StatusPartialContent, ranges: []wantRange{{0, 2}, {5, 9}}},
	{r: "bytes=0-1,5-", code: http.StatusPartialContent, ranges: []wantRange{{0, 2}, {5, testFileLen}}},
	{r: "bytes=50-59,10-19,0-0", code: http.StatusPartialContent, ranges: []wantRange{{50, 60}, {10, 20}, {0, 1}}},
	{r: "bytes=5-1000", code: http.StatusPartialContent, ranges: []wantRange{{5, testFileLen}}},
	{r: "bytes=0-,1-,2-,3-,4-", code: http.StatusOK}, // more bytes than the file: whole
	{r: "bytes=0-98", code: http.StatusPartialContent, ranges: []wantRange{{0, testFileLen - 1}}},
	{r: "bytes=0-99", code: http.StatusPartialContent, ranges: []wantRange{{0, testFileLen}}},
	{r: "bytes=0-100", code: http.StatusPartialContent, ranges: []wantRange{{0, testFileLen}}},
	{r: "bytes=99-100", code: http.StatusPartialContent, ranges: []wantRange{{testFileLen - 1, testFileLen}}},
	{r: "bytes=99-", code: http.StatusPartialContent, ranges: []wantRange{{testFileLen - 1, testFileLen}}},
	{r: "bytes=-1000", code: http.StatusPartialContent, ranges: []wantRange{{0, testFileLen}}},
	{r: "bytes=0-1,200-", code: http.StatusPartialContent, ranges: []wantRange{{0, 2}}}, // one part left: not multipart
	{r: "bytes=100-", code: http.StatusRequestedRangeNotSatisfiable},
	{r: "bytes=100-101", code: http.StatusRequestedRangeNotSatisfiable},
	{r: "bytes=101-200", code: http.StatusRequestedRangeNotSatisfiable},
	{r: "bytes=1000-", code: http.StatusRequestedRangeNotSatisfiable},
	{r: "bytes=-0", code: http.StatusRequestedRangeNotSatisfiable}, // net/http: 200
	{r: "items=0-5", code: http.StatusOK},                          // net/http: 416
	// Invalid ranges, answered as nginx answers them: 416 or ignored,
	// never 400 (RFC 9110 sections 14.1.1 and 14.2).
	{r: "bytes=a-5", code: http.StatusRequestedRangeNotSatisfiable},
	{r: "bytes=abc", code: http.StatusRequestedRangeNotSatisfiable},
	{r: "bytes=5-4", code: http.StatusRequestedRangeNotSatisfiable},
	{r: "bytes=100-50", code: http.StatusRequestedRangeNotSatisfiable},
	{r: "bytes=0-99999999999999999999", code: http.StatusPartialContent, ranges: []wantRange{{0, testFileLen}}}, // nginx: 416
	{r: "bytes", code: http.StatusOK},                                                                           // net/http: 416
	{r: "bytes=,", code: http.StatusOK},                                                                         // net/http: 200
}

func TestServeRange(t *testing.T) {
	tf := newTestFile(t, "clip.mp4", testFileLen)
	servers := []struct {
		name string
		srv  *httptest.Server
	}{
		{"net/http", serve(t, tf.content)},
		{"gin", serveGin(t, tf.content)},
	}
	for _, s := range servers {
		t.Run(s.name, func(t *testing.T) { testServeRange(t, s.srv, tf) })
	}
}

func testServeRange(t *testing.T, srv *httptest.Server, tf *testFile) {
	for _, tt := range serveRangeTests {
		t.Run(tt.r, func(t *testing.T) {
			h := http.Header{}
			if tt.r != "" {
				h.Set("Range", tt.r)
			}
			resp, body := do(t, srv, http.MethodGet, h)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tt.code, body)
			}
			if got := resp.Header.Get("Accept-Ranges"); got != "bytes" {
				t.Errorf("Accept-Ranges %q, want bytes", got)
			}
			switch tt.code {
			case http.StatusRequestedRangeNotSatisfiable:
				if got, want := resp.Header.Get("Content-Range"), "bytes */100"; got != want {
					t.Errorf("Content-Range %q, want %q", got, want)
				}
				if !strings.Contains(string(body), byterange.ErrUnsatisfiable.Error()) && !strings.Contains(string(body), byterange.ErrMalformed.Error()+": ") {
					t.Errorf("416 body %q does not give the reason", body)
				}
				if resp.Header.Get("ETag") != "" {
					t.Errorf("416 carries ETag %q", resp.Header.Get("ETag"))
				}
				return
			}
			if got := resp.Header.Get("ETag"); got != testETag {
				t.Errorf("ETag %q, want %q", got, testETag)
			}
			if got, want := resp.Header.Get("Last-Modified"), testModTime.Format(http.TimeFormat); got != want {
				t.Errorf("Last-Modified %q, want %q", got, want)
			}
			if got, want := resp.Header.Get("Content-Length"), strconv.Itoa(len(body)); got != want {
				t.Errorf("Content-Length %s, body %s bytes", got, want)
			}
			switch len(tt.ranges) {
			case 0:
				checkWhole(t, resp, body, tf.data, "video/mp4")
			case 1:
				ra := tt.ranges[0]
				if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", ra.start, ra.end-1, testFileLen); got != want {
					t.Errorf("Content-Range %q, want %q", got, want)
				}
				if got := resp.Header.Get("Content-Type"); got != "video/mp4" {
					t.Errorf("Content-Type %q, want video/mp4", got)
				}
				if !bytes.Equal(body, tf.data[ra.start:ra.end]) {
					t.Errorf("body differs from bytes [%d, %d)", ra.start, ra.end)
				}
			default:
				checkMultipart(t, resp, body, tf.data, tt.ranges, "video/mp4")
			}
		})
	}
}

func checkWhole(t *testing.T, resp *http.Response, body, data []byte, ctype string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("status %d, want 200", resp.StatusCode)
	}
	if got := resp.Header.Get("Content-Range"); got != "" {
		t.Errorf("200 with Content-Range %q", got)
	}
	if got := resp.Header.Get("Content-Type"); got != ctype {
		t.Errorf("Content-Type %q, want %q", got, ctype)
	}
	if !bytes.Equal(body, data) {
		t.Errorf("body (%d bytes) differs from the file (%d bytes)", len(body), len(data))
	}
}

// checkMultipart parses a multipart/byteranges body back and compares each
// part with the file.
func checkMultipart(t *testing.T, resp *http.Response, body, data []byte, want []wantRange, ctype string) {
	t.Helper()
	if got := resp.Header.Get("Content-Range"); got != "" {
		t.Errorf("multipart response with Content-Range %q", got)
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/byteranges" {
		t.Fatalf("Content-Type %q (%v), want multipart/byteranges", resp.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
	for i, ra := range want {
		part, err := mr.NextPart()
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if got, want := part.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", ra.start, ra.end-1, len(data)); got != want {
			t.Errorf("part %d: Content-Range %q, want %q", i, got, want)
		}
		if got := part.Header.Get("Content-Type"); got != ctype {
			t.Errorf("part %d: Content-Type %q, want %q", i, got, ctype)
		}
		got, err := io.ReadAll(part)
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		if !bytes.Equal(got, data[ra.start:ra.end]) {
			t.Errorf("part %d: %d bytes differ from [%d, %d)", i, len(got), ra.start, ra.end)
		}
	}
	if _, err := mr.NextPart(); err != io.EOF {
		t.Errorf("after %d parts: %v, want io.EOF", len(want), err)
	}
}

func TestServeConditional(t *testing.T) {
	tf := newTestFile(t, "a.bin", testFileLen)
	srv := serve(t, tf.content)
	lastMod := testModTime.Format(http.TimeFormat)
	before := testModTime.Add(-time.Hour).Format(http.TimeFormat)
	after := testModTime.Add(time.Hour).Format(http.TimeFormat)
	// want: the status, and for 200/206 the bytes [start, end).
	tests := []struct {
		name   string
		method string
		header map[string]string
		code   int
		want   wantRange
	}{
		{name: "If-Range matching ETag", header: map[string]string{"Range": "bytes=10-19", "If-Range": testETag}, code: 206, want: wantRange{10, 20}},
		{name: "If-Range other ETag", header: map[string]string{"Range": "bytes=10-19", "If-Range": `"v0"`}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-Range weak ETag", header: map[string]string{"Range": "bytes=10-19", "If-Range": "W/" + testETag}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-Range ETag with trailing text", header: map[string]string{"Range": "bytes=10-19", "If-Range": testETag + ", \"x\""}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-Range matching date", header: map[string]string{"Range": "bytes=10-19", "If-Range": lastMod}, code: 206, want: wantRange{10, 20}},
		{name: "If-Range earlier date", header: map[string]string{"Range": "bytes=10-19", "If-Range": before}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-Range later date", header: map[string]string{"Range": "bytes=10-19", "If-Range": after}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-Range garbage", header: map[string]string{"Range": "bytes=10-19", "If-Range": "yesterday"}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-Range mismatch ignores a malformed Range", header: map[string]string{"Range": "bytes=x", "If-Range": `"v0"`}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-Range without Range", header: map[string]string{"If-Range": `"v0"`}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-None-Match match", header: map[string]string{"If-None-Match": testETag}, code: 304},
		{name: "If-None-Match weak match", header: map[string]string{"If-None-Match": `"x", W/` + testETag}, code: 304},
		{name: "If-None-Match star", header: map[string]string{"If-None-Match": "*"}, code: 304},
		{name: "If-None-Match other", header: map[string]string{"If-None-Match": `"v0"`, "Range": "bytes=0-0"}, code: 206, want: wantRange{0, 1}},
		{name: "If-None-Match match on HEAD", method: http.MethodHead, header: map[string]string{"If-None-Match": testETag}, code: 304},
		{name: "If-None-Match match on POST", method: http.MethodPost, header: map[string]string{"If-None-Match": testETag}, code: 412},
		{name: "If-Modified-Since equal", header: map[string]string{"If-Modified-Since": lastMod}, code: 304},
		{name: "If-Modified-Since later", header: map[string]string{"If-Modified-Since": after}, code: 304},
		{name: "If-Modified-Since earlier", header: map[string]string{"If-Modified-Since": before}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-None-Match overrides If-Modified-Since", header: map[string]string{"If-None-Match": `"v0"`, "If-Modified-Since": lastMod}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-Match match", header: map[string]string{"If-Match": testETag, "Range": "bytes=0-3"}, code: 206, want: wantRange{0, 4}},
		{name: "If-Match star", header: map[string]string{"If-Match": "*"}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-Match other", header: map[string]string{"If-Match": `"v0"`}, code: 412},
		{name: "If-Match weak is not strong", header: map[string]string{"If-Match": "W/" + testETag}, code: 412},
		{name: "If-Unmodified-Since equal", header: map[string]string{"If-Unmodified-Since": lastMod}, code: 200, want: wantRange{0, testFileLen}},
		{name: "If-Unmodified-Since earlier", header: map[string]string{"If-Unmodified-Since": before}, code: 412},
		{name: "If-Match overrides If-Unmodified-Since", header: map[string]string{"If-Match": testETag, "If-Unmodified-Since": before}, code: 200, want: wantRange{0, testFileLen}},
		{name: "412 before 304", header: map[string]string{"If-Match": `"v0"`, "If-None-Match": testETag}, code: 412},
		{name: "412 before 416", header: map[string]string{"If-Match": `"v0"`, "Range": "bytes=500-"}, code: 412},
		{name: "304 before 416", header: map[string]string{"If-None-Match": testETag, "Range": "bytes=500-"}, code: 304},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := cmpOr(tt.method, http.MethodGet)
			h := http.Header{}
			for k, v := range tt.header {
				h.Set(k, v)
			}
			resp, body := do(t, srv, method, h)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.code)
			}
			switch tt.code {
			case http.StatusNotModified:
				if got := resp.Header.Get("ETag"); got != testETag {
					t.Errorf("304 ETag %q, want %q", got, testETag)
				}
				if got := resp.Header.Get("Content-Type"); got != "" {
					t.Errorf("304 with Content-Type %q", got)
				}
			case http.StatusOK, http.StatusPartialContent:
				if method == http.MethodHead {
					break
				}
				if !bytes.Equal(body, tf.data[tt.want.start:tt.want.end]) {
					t.Errorf("body differs from bytes [%d, %d)", tt.want.start, tt.want.end)
				}
				if tt.code == http.StatusPartialContent {
					if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-%d/%d", tt.want.start, tt.want.end-1, testFileLen); got != want {
						t.Errorf("Content-Range %q, want %q", got, want)
					}
				}
			}
		})
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestServeHead checks that HEAD answers GET's headers without a body and
// without opening the content.
func TestServeHead(t *testing.T) {
	tf := newTestFile(t, "b.webm", testFileLen)
	srv := serve(t, tf.content)
	for _, r := range []string{"", "bytes=10-19", "bytes=0-1,5-8", "bytes=500-", "bytes=a"} {
		t.Run(r, func(t *testing.T) {
			h := http.Header{}
			if r != "" {
				h.Set("Range", r)
			}
			get, getBody := do(t, srv, http.MethodGet, h)
			opens := tf.opens.Load()
			head, headBody := do(t, srv, http.MethodHead, h)
			if n := tf.opens.Load() - opens; n != 0 {
				t.Errorf("HEAD opened the content %d times", n)
			}
			if len(headBody) != 0 {
				t.Errorf("HEAD body of %d bytes", len(headBody))
			}
			if head.StatusCode != get.StatusCode {
				t.Errorf("HEAD status %d, GET %d", head.StatusCode, get.StatusCode)
			}
			for _, k := range []string{"Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified"} {
				if head.Header.Get(k) != get.Header.Get(k) {
					t.Errorf("%s: HEAD %q, GET %q", k, head.Header.Get(k), get.Header.Get(k))
				}
			}
			// A multipart boundary is random: compare the media type only.
			if ht, gt := strings.Split(head.Header.Get("Content-Type"), ";")[0], strings.Split(get.Header.Get("Content-Type"), ";")[0]; ht != gt {
				t.Errorf("Content-Type: HEAD %q, GET %q", ht, gt)
			}
			if get.StatusCode < 300 && get.Header.Get("Content-Length") != strconv.Itoa(len(getBody)) {
				t.Errorf("GET Content-Length %s, body %d bytes", get.Header.Get("Content-Length"), len(getBody))
			}
		})
	}
}

func TestServeEmpty(t *testing.T) {
	tf := newTestFile(t, "empty", 0)
	tf.content.ModTime = time.Time{}
	tf.content.ETag = ""
	srv := serve(t, tf.content)
	tests := []struct {
		r    string
		code int
	}{
		{"", http.StatusOK},
		{"bytes=0-", http.StatusRequestedRangeNotSatisfiable},
		{"bytes=0-0", http.StatusRequestedRangeNotSatisfiable},
		{"bytes=-1", http.StatusRequestedRangeNotSatisfiable},
		{"items=0-1", http.StatusOK},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.r != "" {
			h.Set("Range", tt.r)
		}
		resp, body := do(t, srv, http.MethodGet, h)
		if resp.StatusCode != tt.code {
			t.Errorf("Range %q: status %d, want %d", tt.r, resp.StatusCode, tt.code)
			continue
		}
		if tt.code == http.StatusRequestedRangeNotSatisfiable {
			if got := resp.Header.Get("Content-Range"); got != "bytes */0" {
				t.Errorf("Range %q: Content-Range %q, want bytes */0", tt.r, got)
			}
			continue
		}
		if len(body) != 0 || resp.Header.Get("Content-Length") != "0" {
			t.Errorf("Range %q: %d bytes, Content-Length %q", tt.r, len(body), resp.Header.Get("Content-Length"))
		}
		if got := resp.Header.Get("Content-Type"); got != "application/octet-stream" {
			t.Errorf("Content-Type %q, want application/octet-stream", got)
		}
		if resp.Header.Get("ETag") != "" || resp.Header.Get("Last-Modified") != "" {
			t.Errorf("validators sent without being known: ETag %q, Last-Modified %q", resp.Header.Get("ETag"), resp.Header.Get("Last-Modified"))
		}
	}
	if n := tf.opens.Load(); n != 0 {
		t.Errorf("an empty file was opened %d times", n)
	}
}

// TestServeManyRanges: up to 100 ranges are served as multipart, more are
// ignored and the whole file is sent.
func TestServeManyRanges(t *testing.T) {
	tf := newTestFile(t, "e.bin", 1000)
	srv := serve(t, tf.content)
	for _, n := range []int{2, 100, 101, 500} {
		specs := make([]string, n)
		want := make([]wantRange, n)
		for i := range specs {
			// Every other byte, backwards: neither sorted nor mergeable.
			start := int64(2*(n-1-i)) % 1000
			specs[i] = fmt.Sprintf("%d-%d", start, start)
			want[i] = wantRange{start, start + 1}
		}
		resp, body := do(t, srv, http.MethodGet, http.Header{"Range": {"bytes=" + strings.Join(specs, ",")}})
		if n > 100 {
			checkWhole(t, resp, body, tf.data, "application/octet-stream")
			continue
		}
		if resp.StatusCode != http.StatusPartialContent {
			t.Fatalf("%d ranges: status %d, want 206", n, resp.StatusCode)
		}
		checkMultipart(t, resp, body, tf.data, want, "application/octet-stream")
	}
}

// TestServeMultipleRangeFields: two Range fields are ignored; the whole
// file cannot be misread.
func TestServeMultipleRangeFields(t *testing.T) {
	tf := newTestFile(t, "c.bin", testFileLen)
	srv := serve(t, tf.content)
	resp, body := do(t, srv, http.MethodGet, http.Header{"Range": {"bytes=0-1", "bytes=2-3"}})
	checkWhole(t, resp, body, tf.data, "application/octet-stream")
}

// TestServeOpenShapes checks the readers Open may return: the bare file
// positioned at off (longer than the range), a reader that ends early, and
// a failing Open under gin with httpapi.Handle, which answers the error.
func TestServeOpenShapes(t *testing.T) {
	tf := newTestFile(t, "d.bin", 4096)
	path := tf.path
	serveErrs := make(chan error, 10)
	content := func(open func(ctx context.Context, off, n int64) (io.Reader, error)) *byterange.Content {
		return &byterange.Content{Size: int64(len(tf.data)), ETag: testETag, ContentType: "video/mp2t", Open: open}
	}
	bareFile := content(func(ctx context.Context, off, n int64) (io.Reader, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		_, err = f.Seek(off, io.SeekStart)
		return f, err
	})
	short := content(func(ctx context.Context, off, n int64) (io.Reader, error) {
		return bytes.NewReader(tf.data[off : off+n/2]), nil
	})
	var opened, closed atomic.Int32
	counted := content(func(ctx context.Context, off, n int64) (io.Reader, error) {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		opened.Add(1)
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return nil, err
		}
		c := closeCounter{f, &closed}
		if off%2 == 0 {
			// Longer than the range: Serve must stop at n all the same.
			return &io.LimitedReader{R: c, N: n + 100}, nil
		}
		return c, nil
	})
	failing := content(func(ctx context.Context, off, n int64) (io.Reader, error) {
		return nil, httpapi.Errorf(http.StatusServiceUnavailable, "no source has the bytes")
	})

	mux := http.NewServeMux()
	handle := func(c *byterange.Content) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { serveErrs <- byterange.Serve(w, r, c) }
	}
	mux.Handle("/bare", handle(bareFile))
	mux.Handle("/short", handle(short))
	mux.Handle("/counted", handle(counted))
	engine := httpapi.NewEngine()
	engine.GET("/failing", httpapi.Handle(func(c *gin.Context) error {
		err := byterange.Serve(c.Writer, c.Request, failing)
		serveErrs <- err
		return err
	}))
	mux.Handle("/failing", engine)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	get := func(path, rng string) (*http.Response, []byte, error) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		req.Header.Set("Range", rng)
		resp, err := srv.Client().Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp, body, err
	}

	t.Run("bare file is cut to the range", func(t *testing.T) {
		for _, rng := range []string{"bytes=100-199", "bytes=0-9,4000-4009"} {
			resp, body, err := get("/bare", rng)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-serveErrs; err != nil {
				t.Errorf("Serve: %v", err)
			}
			if strings.Contains(rng, ",") {
				checkMultipart(t, resp, body, tf.data, []wantRange{{0, 10}, {4000, 4010}}, "video/mp2t")
			} else if !bytes.Equal(body, tf.data[100:200]) {
				t.Errorf("body of %d bytes differs from [100, 200)", len(body))
			}
		}
	})
	t.Run("Serve closes what Open returns and cuts it to the range", func(t *testing.T) {
		for _, rng := range []string{"bytes=100-199", "bytes=101-199", "bytes=0-9,11-19,4000-"} {
			resp, body, err := get("/counted", rng)
			if err != nil {
				t.Fatal(err)
			}
			if err := <-serveErrs; err != nil {
				t.Errorf("Serve: %v", err)
			}
			switch rng {
			case "bytes=100-199":
				if !bytes.Equal(body, tf.data[100:200]) {
					t.Errorf("%s: body of %d bytes differs", rng, len(body))
				}
			case "bytes=101-199":
				if !bytes.Equal(body, tf.data[101:200]) {
					t.Errorf("%s: body of %d bytes differs", rng, len(body))
				}
			default:
				checkMultipart(t, resp, body, tf.data, []wantRange{{0, 10}, {11, 20}, {4000, 4096}}, "video/mp2t")
			}
		}
		if o, c := opened.Load(), closed.Load(); o != 5 || c != o {
			t.Errorf("%d readers opened, %d closed; want 5, 5", o, c)
		}
	})
	t.Run("short reader fails the transfer", func(t *testing.T) {
		_, body, err := get("/short", "bytes=0-3999")
		if err == nil {
			t.Errorf("client read %d bytes without an error", len(body))
		}
		if !bytes.Equal(body, tf.data[:len(body)]) {
			t.Errorf("the %d bytes received are not the file's", len(body))
		}
		if err := <-serveErrs; !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("Serve = %v, want io.ErrUnexpectedEOF", err)
		}
	})
	t.Run("failing Open is answered by the caller", func(t *testing.T) {
		resp, body, err := get("/failing", "bytes=0-9")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("status %d, want 503", resp.StatusCode)
		}
		if !strings.Contains(string(body), "no source has the bytes") {
			t.Errorf("body %q does not carry the error", body)
		}
		for _, k := range []string{"ETag", "Content-Range"} {
			if v := resp.Header.Get(k); v != "" {
				t.Errorf("error response with %s %q", k, v)
			}
		}
		if err := <-serveErrs; httpapi.StatusOf(err) != http.StatusServiceUnavailable {
			t.Errorf("Serve = %v, want the Open error", err)
		}
	})
}

// closeCounter counts the Close of a file.
type closeCounter struct {
	*os.File
	closes *atomic.Int32
}

func (c closeCounter) Close() error {
	c.closes.Add(1)
	return c.File.Close()
}

// FuzzParse checks Parse's invariants on any header and size.
func FuzzParse(f *testing.F) {
	for _, tt := range serveRangeTests {
		f.Add(tt.r, int64(testFileLen))
	}
	f.Fuzz(func(t *testing.T, header string, size int64) {
		ranges, err := byterange.Parse(header, size)
		if err != nil {
			if !errors.Is(err, byterange.ErrMalformed) && !errors.Is(err, byterange.ErrUnsatisfiable) {
				t.Fatalf("Parse(%q, %d) error %v is neither ErrMalformed nor ErrUnsatisfiable", header, size, err)
			}
			if ranges != nil {
				t.Fatalf("Parse(%q, %d) returned ranges %v with error %v", header, size, ranges, err)
			}
			return
		}
		for _, r := range ranges {
			if r.Start < 0 || r.Length <= 0 || r.Start >= size || r.Length > size-r.Start {
				t.Fatalf("Parse(%q, %d) range %+v lies outside [0, %d)", header, size, r, size)
			}
		}
	})
}

// BenchmarkServeRange serves 1 MiB ranges of a 64 MiB file over real HTTP,
// the origin's hot path, from a plain handler and from gin.
func BenchmarkServeRange(b *testing.B) {
	tf := newTestFile(b, "big.mp4", 64<<20)
	b.Run("net/http", func(b *testing.B) { benchServeRange(b, serve(b, tf.content), tf) })
	b.Run("gin", func(b *testing.B) { benchServeRange(b, serveGin(b, tf.content), tf) })
}

func benchServeRange(b *testing.B, srv *httptest.Server, tf *testFile) {
	const rangeSize = 1 << 20
	fileSize := tf.content.Size
	client := srv.Client()
	b.SetBytes(rangeSize)
	var off int64
	for b.Loop() {
		// Walk the file so that the page cache, not one hot range, is read.
		off = (off + rangeSize) % fileSize
		req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+rangeSize-1))
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != rangeSize || resp.StatusCode != http.StatusPartialContent {
			b.Fatalf("status %d, %d bytes, %v", resp.StatusCode, n, err)
		}
	}
}

func TestTypeByName(t *testing.T) {
	for name, want := range map[string]string{
		"a.mp4":       "video/mp4",
		"films/b.MKV": "video/x-matroska",
		"c.mp3":       "audio/mpeg",
		"d.wav":       "audio/wav",
		"e.html":      "text/html; charset=utf-8",
		"f.unknown":   "application/octet-stream",
		"noext":       "application/octet-stream",
	} {
		if got := byterange.TypeByName(name); got != want {
			t.Errorf("TypeByName(%q) = %q, want %q", name, got, want)
		}
	}
}

// TestServeShortReadsNotHeld: bytes a body has read are sent at once, even
// a few (the first ones after an origin's headers): a player must not wait
// for the body's next read to get them. Behind gin's writer, net/http
// would hold a write under 4 KiB until more came.
func TestServeShortReadsNotHeld(t *testing.T) {
	data := bytes.Repeat([]byte("p2sp"), 250)
	release := make(chan struct{})
	content := &byterange.Content{Size: int64(len(data)), ETag: testETag, ContentType: "video/mp2t",
		Open: func(ctx context.Context, off, n int64) (io.Reader, error) {
			return io.MultiReader(bytes.NewReader(data[:100]), &blockedReader{release, bytes.NewReader(data[100:])}), nil
		}}
	engine := httpapi.NewEngine()
	engine.GET("/f", httpapi.Handle(func(c *gin.Context) error { return byterange.Serve(c.Writer, c.Request, content) }))
	srv := httptest.NewServer(engine)
	defer srv.Close()
	// First of all, the body goes on: the client and the server's Close
	// wait for it.
	defer close(release)
	got := make(chan error, 1)
	go func() {
		resp, err := http.Get(srv.URL + "/f")
		if err != nil {
			got <- err
			return
		}
		defer resp.Body.Close()
		b := make([]byte, 100)
		if _, err = io.ReadFull(resp.Body, b); err == nil && !bytes.Equal(b, data[:100]) {
			err = errors.New("other bytes")
		}
		got <- err
	}()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("first 100 bytes: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the headers and first 100 bytes were held back until the body's next read")
	}
}

// blockedReader reads r once release is closed.
type blockedReader struct {
	release <-chan struct{}
	r       io.Reader
}

func (b *blockedReader) Read(p []byte) (int, error) {
	<-b.release
	return b.r.Read(p)
}
