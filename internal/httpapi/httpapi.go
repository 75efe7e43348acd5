package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/gin-gonic/gin"
)

// Error is an error that carries the HTTP status to answer with.
type Error struct {
	Status int
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with the given status and a formatted message;
// %w wraps as in fmt.Errorf.
func Errorf(status int, format string, args ...any) error {
	return &Error{Status: status, Err: fmt.Errorf(format, args...)}
}

// StatusOf returns the status an error should be answered with: its own if
// it is (or wraps) an *Error, 500 otherwise.
func StatusOf(err error) int {
	var he *Error
	if errors.As(err, &he) {
		return he.Status
	}
	return http.StatusInternalServerError
}

// Handle adapts a handler that returns an error. A returned error is
// answered as JSON {"error": "..."} with StatusOf(err), unless the handler
// already started the response; 5xx errors are logged.
func Handle(fn func(*gin.Context) error) gin.HandlerFunc {
	return func(c *gin.Context) {
		err := fn(c)
		if err == nil {
			return
		}
		status := StatusOf(err)
		if status >= 500 {
			slog.Error("request failed", "method", c.Request.Method, "path", c.Request.URL.Path, "err", err)
		}
		if c.Writer.Written() {
			return
		}
		// A handler may have set the headers of the body it meant to send.
		for _, h := range []string{"Content-Length", "Content-Range", "Content-Encoding", "ETag", "Last-Modified", "Accept-Ranges"} {
			c.Writer.Header().Del(h)
		}
		c.AbortWithStatusJSON(status, gin.H{"error": err.Error()})
	}
}

// NewEngine returns a gin engine with no default middleware but panic
// recovery, in release mode: logging is ours, through slog.
func NewEngine() *gin.Engine {
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	e.Use(gin.Recovery())
	return e
}

// Health answers the Kubernetes probes: /healthz while the process runs,
// /readyz only while Ready reports nil.
type Health struct {
	ready atomic.Pointer[func() error]
}

// SetReady installs the readiness check.
func (h *Health) SetReady(check func() error) { h.ready.Store(&check) }

// Register adds /healthz and /readyz to the engine.
func (h *Health) Register(e *gin.Engine) {
	e.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	e.GET("/readyz", func(c *gin.Context) {
		check := h.ready.Load()
		if check == nil {
			c.String(http.StatusServiceUnavailable, "starting\n")
			return
		}
		if err := (*check)(); err != nil {
			c.String(http.StatusServiceUnavailable, "not ready: %v\n", err)
			return
		}
		c.String(http.StatusOK, "ready\n")
	})
}

// Serve serves h on ln until ctx ends with the default Timeouts.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	return Timeouts{}.Serve(ctx, ln, h)
}

// Listen opens a TCP listener on addr ("127.0.0.1:0" picks a free port).
func Listen(ctx context.Context, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// ReadBody reads a request's body of at most limit bytes: a longer one is
// a 413 and a failed read a 400, as Errors.
func ReadBody(c *gin.Context, limit int64) ([]byte, error) {
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, Errorf(http.StatusRequestEntityTooLarge, "body larger than %d bytes", limit)
		}
		return nil, Errorf(http.StatusBadRequest, "read body: %w", err)
	}
	return b, nil
}
