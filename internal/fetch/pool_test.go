package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/failover"
)

func TestOutcomeOf(t *testing.T) {
	live := context.Background()
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		ctx  context.Context
		err  error
		want outcome
	}{
		{live, nil, answered},
		{live, fmt.Errorf("get: %w", ErrNotFound), elsewhere},
		{live, fmt.Errorf("get: %w", ErrChanged), elsewhere},
		{live, fmt.Errorf("get: %w", ErrNotModified), final},
		{live, fmt.Errorf("get: %w", ErrTooLarge), final},
		{live, fmt.Errorf("read: %w", ErrStalled), down},
		{live, io.ErrUnexpectedEOF, down},
		{live, errors.New("dial tcp: connection refused"), down},
		{live, errors.New("origin answered 503 Service Unavailable"), down},
		{gone, fmt.Errorf("read: %w", ErrStalled), final},
		{gone, context.Canceled, final},
	} {
		if got := outcomeOf(tc.ctx, tc.err); got != tc.want {
			t.Errorf("outcomeOf(ctx err %v, %v) = %d, want %d", tc.ctx.Err(), tc.err, got, tc.want)
		}
	}
}

// TestPoolFailover: a range body whose origin breaks mid-body goes on from
// the other origin with the same bytes, if and only if the version is named
// by its content and the other origin holds that version.
func TestPoolFailover(t *testing.T) {
	data := make([]byte, 200000)
	for i := range data {
		data[i] = byte(i * 13)
	}
	size := int64(len(data))
	const (
		content = `"sha256-00ff"`
		other   = `"sha256-ff00"`
	)
	// breakAfter serves the range's first k bytes, then cuts the
	// connection.
	breakAfter := func(k int) func(w http.ResponseWriter, r *http.Request) {
		return func(w http.ResponseWriter, r *http.Request) {
			sendPart(w, r, data, k)
			panic(http.ErrAbortHandler)
		}
	}
	stall := func(w http.ResponseWriter, r *http.Request) {
		sendPart(w, r, data, 5000)
		<-r.Context().Done()
	}
	for _, tc := range []struct {
		name        string
		etag        string // of the version asked for, and the first origin's
		firstETag   string // "": etag
		secondETag  string // "": etag
		first       func(w http.ResponseWriter, r *http.Request)
		firstClosed bool // the first origin refuses connections
		off, n      int64
		wantErr     error // nil: data[off:off+n]
		wantDown    []bool
		failovers   [2]int // before a response, mid-body
	}{
		{name: "cut mid-body", etag: content, first: breakAfter(70000), off: 0, n: size, wantDown: []bool{true, false}, failovers: [2]int{0, 1}},
		{name: "cut mid-body, from an offset", etag: content, first: breakAfter(1), off: 12345, n: 100000, wantDown: []bool{true, false}, failovers: [2]int{0, 1}},
		{name: "stalled mid-body", etag: content, first: stall, off: 0, n: size, wantDown: []bool{true, false}, failovers: [2]int{0, 1}},
		{name: "refused", etag: content, firstClosed: true, off: 100, n: 1000, wantDown: []bool{true, false}, failovers: [2]int{1, 0}},
		{name: "other version on the second", etag: content, secondETag: other, first: breakAfter(70000), off: 0, n: size,
			wantErr: ErrChanged, wantDown: []bool{true, false}},
		{name: "metadata etag: not portable", etag: `"1a2b-5f"`, first: breakAfter(70000), off: 0, n: size,
			wantErr: io.ErrUnexpectedEOF, wantDown: []bool{true, false}},
		{name: "healthy first", etag: content, off: 0, n: size, wantDown: []bool{false, false}},
		// A metadata ETag is the one origin's that answered a HEAD: the
		// other has another for the same bytes, and is not held to fail.
		{name: "metadata etag of the second", etag: `"1a2b-5f"`, firstETag: `"77-3c"`, off: 10, n: 1000, wantDown: []bool{false, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := tc.etag
			if tc.firstETag != "" {
				first = tc.firstETag
			}
			a := origin(t, data, first, tc.first)
			a.IdleTimeout = 200 * time.Millisecond
			if tc.firstClosed {
				a.Client.Transport.(*http.Transport).CloseIdleConnections()
				a.Base = "http://" + closedAddr(t)
			}
			second := tc.etag
			if tc.secondETag != "" {
				second = tc.secondETag
			}
			b := origin(t, data, second, nil)
			var failovers [2]int
			p := NewPool([]*Origin{a, b}, PoolOptions{Backoff: failover.Backoff{Base: time.Minute, Max: time.Minute}, OnFailover: func(midBody bool) {
				if midBody {
					failovers[1]++
				} else {
					failovers[0]++
				}
			}})
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			var got []byte
			body, err := p.Range(ctx, "f.bin", tc.off, tc.n, size, tc.etag)
			if err == nil {
				got, err = io.ReadAll(body)
				body.Close()
			}
			if tc.wantErr == nil {
				if err != nil || !bytes.Equal(got, data[tc.off:tc.off+tc.n]) {
					t.Fatalf("%d bytes, %v: want bytes %d-%d", len(got), err, tc.off, tc.off+tc.n-1)
				}
			} else {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("%v, want %v", err, tc.wantErr)
				}
				if !bytes.Equal(got, data[tc.off:tc.off+int64(len(got))]) {
					t.Fatalf("the %d bytes before the error are not the file's", len(got))
				}
			}
			if down := p.Down(); !slices.Equal(down, tc.wantDown) {
				t.Errorf("down = %v, want %v", down, tc.wantDown)
			}
			if failovers != tc.failovers {
				t.Errorf("failovers (before a response, mid-body) = %v, want %v", failovers, tc.failovers)
			}
		})
	}
}

// TestPoolGet: a cold Get goes on from the other origin too, with the
// version the first one answered.
func TestPoolGet(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 10000)
	size := int64(len(data))
	const content = `"sha256-abcd"`
	a := origin(t, data, content, func(w http.ResponseWriter, r *http.Request) {
		sendPart(w, r, data, 3000)
		panic(http.ErrAbortHandler)
	})
	b := origin(t, data, content, nil)
	p := NewPool([]*Origin{a, b}, PoolOptions{})
	m, body, err := p.Get(t.Context(), "f.bin", 0, 50000)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	got, err := io.ReadAll(body)
	if err != nil || !bytes.Equal(got, data[:50000]) || m.Size != size || m.ETag != content {
		t.Fatalf("%d bytes, %v, meta %+v: want the first 50000 bytes of %d, %s", len(got), err, m, size, content)
	}
	// The next request starts on the healthy origin.
	if _, err := p.Head(t.Context(), "f.bin"); err != nil || !slices.Equal(p.Down(), []bool{true, false}) {
		t.Fatalf("head: %v, down %v", err, p.Down())
	}
}

// TestPoolClose: a body closed while a Read waits ends that Read, and the
// origin it was reading from is not held against it.
func TestPoolClose(t *testing.T) {
	data := bytes.Repeat([]byte("x"), 100000)
	const content = `"sha256-abcd"`
	a := origin(t, data, content, func(w http.ResponseWriter, r *http.Request) {
		sendPart(w, r, data, 1000)
		<-r.Context().Done()
	})
	b := origin(t, data, content, nil)
	var failovers int
	p := NewPool([]*Origin{a, b}, PoolOptions{OnFailover: func(bool) { failovers++ }})
	body, err := p.Range(t.Context(), "f.bin", 0, int64(len(data)), int64(len(data)), content)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	read := make(chan error, 1)
	go func() {
		_, err := body.Read(make([]byte, 1000))
		read <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the Read block (if it has not, Close still ends it)
	body.Close()
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("the Read under way when the body closed returned no error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not end the Read under way")
	}
	if _, err := body.Read(make([]byte, 10)); !errors.Is(err, errClosedBody) {
		t.Errorf("a Read after Close: %v, want errClosedBody", err)
	}
	if down := p.Down(); !slices.Equal(down, []bool{false, false}) || failovers != 0 {
		t.Errorf("after Close: down %v, %d failovers; want none", down, failovers)
	}
}

// sendPart sends a 206 for the request's range of data and then only the
// first k bytes of it.
func sendPart(w http.ResponseWriter, r *http.Request, data []byte, k int) {
	var off, last int64
	fmt.Sscanf(strings.TrimPrefix(r.Header.Get("Range"), "bytes="), "%d-%d", &off, &last)
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, last, len(data)))
	w.Header().Set("Content-Length", fmt.Sprint(last-off+1))
	w.WriteHeader(http.StatusPartialContent)
	w.Write(data[off : off+int64(k)])
	w.(http.Flusher).Flush()
}

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	return ln.Addr().String()
}
