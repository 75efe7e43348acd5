package httpapi

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestWriteDeadlineStopsAStalledReader: a client that stops reading makes
// the handler's write fail within about the write timeout, instead of
// holding the handler (and a file, a fetch) forever.
func TestWriteDeadlineStopsAStalledReader(t *testing.T) {
	failed := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 64<<10)
		for range 4096 { // 256 MiB: more than any socket buffers hold
			if _, err := w.Write(buf); err != nil {
				failed <- err
				return
			}
		}
		failed <- errors.New("the whole body was written to a client that reads nothing")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- Timeouts{Write: 200 * time.Millisecond}.Serve(ctx, ln, h) }()
	defer func() { cancel(); <-served }()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	select {
	case err := <-failed:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("write failed with %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the handler still writes to a stalled client after 10 s")
	}
}
