package httpapi

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Timeouts bound how long a client may hold a connection without making
// progress. None of them bounds a whole response: a player reading a film
// for two hours at its bitrate is never cut off, only one that stops
// reading. The zero value of each field means its default.
type Timeouts struct {
	// ReadHeader is how long a client has to send a request's headers;
	// default 10s.
	ReadHeader time.Duration
	// Idle is how long a keep-alive connection may wait for its next
	// request; default 75s (nginx's keepalive_timeout).
	Idle time.Duration
	// Body is how long a client has to send a request's whole body; a
	// body still incomplete by then fails the request; default 30s. Our
	// bodies are small JSON documents.
	Body time.Duration
	// Write is how long one write of a response may block on a client
	// that does not read; default 60s (nginx's send_timeout). It is set
	// again before every write, and byterange writes file bodies in chunks
	// of at most 256 KiB, so a player stays connected as long as it keeps
	// reading: a write blocks until the kernel's send buffer (up to a few
	// MiB) has room for it, a minute only for a client reading less than
	// some tens of KB/s.
	Write time.Duration
}

func (t Timeouts) withDefaults() Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.ReadHeader, 10*time.Second)
	def(&t.Idle, 75*time.Second)
	def(&t.Body, 30*time.Second)
	def(&t.Write, 60*time.Second)
	return t
}

// Serve serves h on ln until ctx ends, then shuts down gracefully, giving
// in-flight requests up to five seconds; t's zero fields take their
// defaults.
//
// Body and Write are deadlines set per request and per write, not
// http.Server's ReadTimeout and WriteTimeout: those run from the start of
// a request, so they would cut every long response (and ReadTimeout
// cancels the request's context when it expires mid-response).
func (t Timeouts) Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	t = t.withDefaults()
	srv := &http.Server{
		Handler:           t.wrap(h),
		ReadHeaderTimeout: t.ReadHeader,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		// What net/http logs itself is about clients, mostly failed TLS
		// handshakes (scanners, clients that do not trust the
		// certificate): structured, and below the default level.
		ErrorLog: slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		srv.Close()
	}
	<-errc
	return nil
}

// wrap sets the body deadline of each request and the write deadline of
// each write.
func (t Timeouts) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if r.Body != nil && r.Body != http.NoBody {
			rc.SetReadDeadline(time.Now().Add(t.Body))
			r.Body = &deadlineBody{ReadCloser: r.Body, rc: rc}
		}
		dw := &deadlineWriter{ResponseWriter: w, rc: rc, d: t.Write}
		dw.extend()
		h.ServeHTTP(dw, r)
		// The server flushes what is buffered after the handler returns.
		dw.extend()
	})
}

// deadlineBody lifts the body's read deadline once the whole body is read:
// the server then reads the connection in the background to notice a
// client that goes away, and a deadline expiring there would cancel the
// request. After any other error the deadline stays, so that the server's
// discarding of the rest of the body cannot hang either.
type deadlineBody struct {
	io.ReadCloser
	rc *http.ResponseController
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// deadlineWriter moves the connection's write deadline d ahead before
// every write. It keeps what net/http's writer offers that p2sp uses:
// ReadFrom (sendfile), Flush, Hijack and Unwrap (for
// http.ResponseController).
type deadlineWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
	d  time.Duration
}

var (
	_ io.ReaderFrom = (*deadlineWriter)(nil)
	_ http.Flusher  = (*deadlineWriter)(nil)
	_ http.Hijacker = (*deadlineWriter)(nil)
)

func (w *deadlineWriter) extend() { w.rc.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *deadlineWriter) WriteHeader(code int) {
	w.extend()
	w.ResponseWriter.WriteHeader(code)
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.extend()
	return w.ResponseWriter.Write(p)
}

// ReadFrom hands src to net/http's ReadFrom, which sendfiles a file: one
// deadline for all of src, so callers copy large bodies in chunks.
func (w *deadlineWriter) ReadFrom(src io.Reader) (int64, error) {
	w.extend()
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(w.ResponseWriter, src)
}

func (w *deadlineWriter) Flush() {
	w.extend()
	w.rc.Flush()
}

func (w *deadlineWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.rc.Hijack()
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
