package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/httpapi"
)

// testTimeouts are short so that the test takes seconds; the defaults are
// the same mechanism with minutes.
var testTimeouts = httpapi.Timeouts{
	ReadHeader: 300 * time.Millisecond,
	Idle:       300 * time.Millisecond,
	Body:       300 * time.Millisecond,
	Write:      300 * time.Millisecond,
}

// TestServersCloseStalledConnections: idle keep-alive connections, request
// headers that never end and request bodies that never end are closed by
// the tracker and the origin, where they used to stay open for good.
func TestServersCloseStalledConnections(t *testing.T) {
	c := start(t, demo.Config{Timeouts: testTimeouts})
	type stalled struct {
		name string
		n    int
		send func(host string) string
		// answered: a response comes before the close.
		answered bool
	}
	kinds := []stalled{
		{"idle keep-alive", 100, func(h string) string { return "GET /healthz HTTP/1.1\r\nHost: " + h + "\r\n\r\n" }, true},
		{"headers never end", 10, func(h string) string { return "GET /healthz HTTP/1.1\r\nHost: " + h + "\r\nX-Slow: " }, false},
		{"body never ends", 10, func(h string) string {
			return "POST /v1/reports HTTP/1.1\r\nHost: " + h + "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"kind\":"
		}, true},
	}
	for _, srv := range []*demo.Service{c.Tracker, c.Origin} {
		host := strings.TrimPrefix(srv.URL, "http://")
		var wg sync.WaitGroup
		total := 0
		for _, k := range kinds {
			total += k.n
		}
		errs := make(chan error, total)
		for _, k := range kinds {
			for range k.n {
				conn, err := net.DialTimeout("tcp", host, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer conn.Close()
				wg.Go(func() {
					errs <- waitClosed(conn, k.send(host), k.answered)
				})
			}
		}
		wg.Wait()
		close(errs)
		failed := 0
		for err := range errs {
			if err != nil {
				if failed < 3 {
					t.Errorf("%s: %v", srv.Name, err)
				}
				failed++
			}
		}
		if failed > 0 {
			t.Errorf("%s: %d of %d stalled connections not closed", srv.Name, failed, total)
		}
	}
}

// waitClosed sends req on conn and waits up to 10 s for the server to
// close the connection, after a response if answered.
func waitClosed(conn net.Conn, req string, answered bool) error {
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, req); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	br := bufio.NewReader(conn)
	if answered {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("%q: no response: %w", firstLine(req), err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	_, err := io.Copy(io.Discard, br)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return fmt.Errorf("%q: still open after 10 s", firstLine(req))
	}
	return nil // EOF or reset: closed
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\r\n")
	return l
}

// TestSlowReaderNotCutOff: a player reading a large file from the origin
// slowly, for longer than the write timeout, gets every byte: the deadline
// is per write, not per response.
func TestSlowReaderNotCutOff(t *testing.T) {
	timeouts := testTimeouts
	timeouts.Write = 700 * time.Millisecond
	c := start(t, demo.Config{Timeouts: timeouts})
	const size = 24 << 20
	data := writeMedia(t, c, "slow/film.bin", size)
	// A receive buffer of a player's size: left to autotuning, the
	// kernel grows it to tens of MiB and the server's writes wait for
	// seconds of reading before its window opens again.
	client := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 256<<10)
			})
			return errors.Join(err, serr)
		}}).DialContext}}
	resp, err := client.Get(c.Origin.URL + "/files/slow/film.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	// 64 KiB every 5 ms, at most 13 MB/s: a write waits for the kernel's
	// send buffer to drain by a third (about 100 ms at that rate), well
	// within the timeout; the whole response takes about three times it.
	began := time.Now()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	var got bytes.Buffer
	for {
		<-tick.C
		n, err := io.CopyN(&got, resp.Body, 64<<10)
		if err == io.EOF && n == 0 {
			break
		}
		if err != nil && err != io.EOF {
			t.Fatalf("after %d bytes in %v: %v", got.Len(), time.Since(began).Round(time.Millisecond), err)
		}
	}
	took := time.Since(began)
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("%d bytes, not the file's %d", got.Len(), size)
	}
	if took < 2*timeouts.Write {
		t.Errorf("read in %v: not much slower than the write timeout, the test proves nothing", took)
	}
	t.Logf("%d bytes in %v, write timeout %v", size, took.Round(time.Millisecond), timeouts.Write)
}
