package fetch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"
)

var fixedTime = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// origin answers /files/f.bin as a test case says: right, or in one of the
// ways real servers get ranges wrong.
func origin(t *testing.T, data []byte, etag string, answer func(w http.ResponseWriter, r *http.Request)) *Origin {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/files/f.bin" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", etag)
		if answer != nil {
			answer(w, r)
			return
		}
		http.ServeContent(w, r, "f.bin", fixedTime, bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return &Origin{Base: srv.URL, Client: srv.Client()}
}

func TestRange(t *testing.T) {
	data := make([]byte, 100000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	const etag = `"v1"`
	size := int64(len(data))
	for _, tc := range []struct {
		name      string
		answer    func(w http.ResponseWriter, r *http.Request)
		off, n    int64
		etag      string
		wantErr   error // nil: the bytes must be data[off:off+n]
		wantShort bool  // the body must fail part way
	}{
		{name: "a range", off: 1000, n: 5000, etag: etag},
		{name: "the whole file as a range", off: 0, n: size, etag: etag},
		{name: "the last byte", off: size - 1, n: 1, etag: etag},
		{name: "no etag asked", off: 10, n: 10},
		{name: "range ignored", off: 1000, n: 5000, etag: etag, wantErr: ErrChanged,
			answer: func(w http.ResponseWriter, r *http.Request) { w.Write(data) }},
		{name: "whole file for a whole range is fine", off: 0, n: size, etag: etag,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.Write(data)
			}},
		{name: "another version", off: 0, n: 10, etag: `"v0"`, wantErr: ErrChanged},
		{name: "another version, If-Match ignored", off: 0, n: 10, etag: `"v0"`, wantErr: ErrChanged,
			answer: func(w http.ResponseWriter, r *http.Request) {
				r.Header.Del("If-Match")
				http.ServeContent(w, r, "f.bin", fixedTime, bytes.NewReader(data))
			}},
		{name: "another version, If-Match honoured", off: 0, n: 10, etag: `"v0"`, wantErr: ErrChanged,
			answer: func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("If-Match") != `"v0"` {
					t.Errorf("If-Match %q, want the version asked for", r.Header.Get("If-Match"))
				}
				w.WriteHeader(http.StatusPreconditionFailed)
			}},
		{name: "another range", off: 1000, n: 10, etag: etag, wantErr: ErrChanged,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-9/%d", size))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(data[:10])
			}},
		{name: "another length", off: 0, n: 10, etag: etag, wantErr: ErrChanged,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-9/%d", size+1))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(data[:10])
			}},
		{name: "short body", off: 0, n: 1000, etag: etag, wantShort: true,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-999/%d", size))
				w.Header().Set("Content-Length", "1000")
				w.WriteHeader(http.StatusPartialContent)
				w.Write(data[:500])
			}},
		{name: "shorter file", off: size - 10, n: 10, etag: etag, wantErr: ErrChanged,
			answer: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusRequestedRangeNotSatisfiable) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := origin(t, data, etag, tc.answer)
			body, err := o.Range(context.Background(), "f.bin", tc.off, tc.n, size, tc.etag)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Range = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer body.Close()
			got, err := io.ReadAll(body)
			if tc.wantShort {
				if err == nil {
					t.Fatalf("a short body read as %d bytes and no error", len(got))
				}
				return
			}
			if err != nil || !bytes.Equal(got, data[tc.off:tc.off+tc.n]) {
				t.Fatalf("%d bytes, %v: not the file's bytes", len(got), err)
			}
		})
	}
}

func TestHead(t *testing.T) {
	data := make([]byte, 1234)
	o := origin(t, data, `"v1"`, nil)
	m, err := o.Head(context.Background(), "f.bin")
	if err != nil || m.Size != 1234 || m.ETag != `"v1"` || !m.ModTime.Equal(fixedTime) {
		t.Fatalf("Head = %+v, %v", m, err)
	}
	if _, err := o.Head(context.Background(), "nothing.bin"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Head of a missing file = %v, want ErrNotFound", err)
	}
}

func TestGet(t *testing.T) {
	data := make([]byte, 100000)
	for i := range data {
		data[i] = byte(i * 13)
	}
	const etag = `"v2"`
	size := int64(len(data))
	for _, tc := range []struct {
		name     string
		answer   func(w http.ResponseWriter, r *http.Request)
		off, n   int64
		wantBody []byte // nil: no body (416)
		wantErr  error
	}{
		{name: "a range", off: 1000, n: 5000, wantBody: data[1000:6000]},
		{name: "clamped to the end", off: size - 10, n: 100, wantBody: data[size-10:]},
		{name: "past the end tells the size", off: size + 5, n: 10},
		{name: "whole file from the start", off: 0, n: 10, wantBody: data[:10],
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(data)))
				w.Write(data)
			}},
		{name: "whole file for a later range", off: 10, n: 10, wantErr: ErrChanged,
			answer: func(w http.ResponseWriter, r *http.Request) { w.Write(data) }},
		{name: "another range", off: 1000, n: 10, wantErr: ErrChanged,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-9/%d", size))
				w.WriteHeader(http.StatusPartialContent)
				w.Write(data[:10])
			}},
		{name: "missing", off: 0, n: 10, wantErr: ErrNotFound,
			answer: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := origin(t, data, etag, tc.answer)
			m, body, err := o.Get(context.Background(), "f.bin", tc.off, tc.n)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Get = %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Size != size || (tc.wantBody != nil && m.ETag != etag) {
				t.Fatalf("meta %+v, want size %d and ETag %s", m, size, etag)
			}
			if tc.wantBody == nil { // a 416 (whose ETag net/http drops)
				if body != nil {
					t.Fatal("a body for a range past the end")
				}
				return
			}
			defer body.Close()
			got, err := io.ReadAll(body)
			if err != nil || !bytes.Equal(got, tc.wantBody) {
				t.Fatalf("%d bytes, %v: not the file's bytes", len(got), err)
			}
		})
	}
}

func TestWhole(t *testing.T) {
	data := []byte("#EXTM3U\n#EXTINF:1.0,\nseg1.ts\n")
	const etag = `"v1"`
	for _, tc := range []struct {
		name    string
		answer  func(w http.ResponseWriter, r *http.Request)
		etag    string
		limit   int64
		wantErr error // nil: the body must be data
	}{
		{name: "unconditional", limit: 1 << 10},
		{name: "another version held", etag: `"v0"`, limit: 1 << 10},
		{name: "current version held", etag: etag, limit: 1 << 10, wantErr: ErrNotModified},
		{name: "over the limit", limit: 10, wantErr: ErrTooLarge},
		{name: "over the limit without a length", limit: 10, wantErr: ErrTooLarge,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.(http.Flusher).Flush() // chunked: no Content-Length
				w.Write(data)
			}},
		{name: "short body", limit: 1 << 10, wantErr: io.ErrUnexpectedEOF,
			answer: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", strconv.Itoa(len(data)+5))
				w.Write(data)
			}},
		{name: "server error", limit: 1 << 10, wantErr: errAny,
			answer: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := origin(t, data, etag, tc.answer)
			m, body, err := o.Whole(context.Background(), "f.bin", tc.etag, tc.limit)
			switch {
			case tc.wantErr == errAny:
				if err == nil {
					t.Fatal("Get succeeded")
				}
			case tc.wantErr != nil:
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Get = %v, want %v", err, tc.wantErr)
				}
			case err != nil:
				t.Fatal(err)
			case !bytes.Equal(body, data) || m.ETag != etag || m.Size != int64(len(data)):
				t.Fatalf("Get = %+v, %q", m, body)
			}
		})
	}
	o := origin(t, data, etag, nil)
	if _, _, err := o.Whole(context.Background(), "nothing.bin", "", 1<<10); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Whole of a missing file = %v, want ErrNotFound", err)
	}
}

// errAny stands for "some error" in a table.
var errAny = errors.New("any error")

// TestRangeIdle: a body whose origin goes silent fails with ErrStalled
// after IdleTimeout, and its request is cancelled; a body that trickles, or
// that its reader reads late, is read whole.
func TestRangeIdle(t *testing.T) {
	const idle = 200 * time.Millisecond
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i * 3)
	}
	size := int64(len(data))
	send := func(w http.ResponseWriter, b []byte) {
		w.Write(b)
		w.(http.Flusher).Flush()
	}
	header := func(w http.ResponseWriter) {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes 0-%d/%d", size-1, size))
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusPartialContent)
	}
	for _, tc := range []struct {
		name        string
		answer      func(w http.ResponseWriter, r *http.Request)
		readLate    time.Duration // the reader starts reading this late
		wantStalled bool
	}{
		{name: "silent after 1000 bytes", wantStalled: true, answer: func(w http.ResponseWriter, r *http.Request) {
			header(w)
			send(w, data[:1000])
			<-r.Context().Done() // until the client gives up
		}},
		{name: "trickling", answer: func(w http.ResponseWriter, r *http.Request) {
			header(w)
			for i := int64(0); i < size; i += 2000 {
				send(w, data[i:i+2000])
				time.Sleep(idle / 4)
			}
		}},
		{name: "read late", readLate: 3 * idle, answer: func(w http.ResponseWriter, r *http.Request) {
			header(w)
			send(w, data)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			handled := make(chan struct{})
			o := origin(t, data, `"v1"`, func(w http.ResponseWriter, r *http.Request) {
				defer close(handled)
				tc.answer(w, r)
			})
			o.IdleTimeout = idle
			body, err := o.Range(t.Context(), "f.bin", 0, size, size, `"v1"`)
			if err != nil {
				t.Fatal(err)
			}
			defer body.Close()
			time.Sleep(tc.readLate)
			t0 := time.Now()
			got, err := io.ReadAll(body)
			took := time.Since(t0)
			if !tc.wantStalled {
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("%d bytes, %v: want the whole body", len(got), err)
				}
				return
			}
			if !errors.Is(err, ErrStalled) || !bytes.Equal(got, data[:1000]) {
				t.Fatalf("%d bytes, %v: want the first 1000 and ErrStalled", len(got), err)
			}
			if took > 10*idle {
				t.Errorf("the stalled read failed after %s, want about %s", took, idle)
			}
			select {
			case <-handled: // the origin saw its request end
			case <-time.After(5 * time.Second):
				t.Error("the stalled request was not cancelled")
			}
		})
	}
}
