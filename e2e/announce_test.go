package e2e

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/proxy"
)

// blackHole accepts connections, reads each one's request line and never
// answers: a tracker that is up on the network but hangs.
type blackHole struct {
	ln    net.Listener
	mu    sync.Mutex
	lines []string
	conns []net.Conn
}

func newBlackHole(t *testing.T) *blackHole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackHole{ln: ln}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, conn)
			b.mu.Unlock()
			wg.Go(func() {
				line, err := bufio.NewReader(conn).ReadString('\n')
				if err == nil {
					b.mu.Lock()
					b.lines = append(b.lines, line)
					b.mu.Unlock()
				}
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		wg.Wait()
	})
	return b
}

// requests counts the request lines received that contain all of subs.
func (b *blackHole) requests(subs ...string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, l := range b.lines {
		all := true
		for _, s := range subs {
			all = all && strings.Contains(l, s)
		}
		if all {
			n++
		}
	}
	return n
}

// TestAnnounceBlackHoledTracker: a proxy announces its files concurrently,
// so a tracker that accepts and never answers holds up a round once, not
// once per file; shutting down, the proxy tells the tracker it stopped
// (a live tracker then no longer names it as a peer), and does not wait
// long on one that does not answer.
func TestAnnounceBlackHoledTracker(t *testing.T) {
	const files = 4
	c := start(t, demo.Config{ScanInterval: 200 * time.Millisecond})
	var paths []string
	for i := range files {
		p := "announce/f" + string(rune('a'+i)) + ".bin"
		writeMedia(t, c, p, 256<<10)
		paths = append(paths, p)
	}
	dir := t.TempDir()
	p := startTestProxy(t, c, proxy.Config{CacheDir: dir})
	port := p.BTPort()
	for _, path := range paths {
		waitInfo(t, c, path, "")
		mustGet(t, p.URL+"/stream/"+fileinfo.EscapePath(path), "", http.StatusOK)
		waitCompleteAt(t, p.URL, path)
		waitAnnounced(t, c.Tracker.URL, c.Token, path, port, 10*time.Second)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		for deadline := time.Now().Add(5 * time.Second); listsPeer(waitInfo(t, c, path, ""), port); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("the tracker still names the stopped proxy (port %d) as a peer of %s", port, path)
			}
		}
	}

	// Restarted on its cache against a tracker that never answers, the
	// proxy seeds its files and announces them all at once.
	bh := newBlackHole(t)
	p = startTestProxy(t, c, proxy.Config{CacheDir: dir, Trackers: []string{"http://" + bh.ln.Addr().String()}})
	t0 := time.Now()
	for bh.requests("/announce", "event=started") < files {
		if time.Since(t0) > 3*time.Second {
			t.Fatalf("%d of %d files announced to a hanging tracker within %s: the announces wait on each other",
				bh.requests("/announce", "event=started"), files, time.Since(t0).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d files announced to the hanging tracker within %s", files, time.Since(t0).Round(time.Millisecond))
	t0 = time.Now()
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	t.Logf("shutdown with a hanging tracker took %s; %d stopped announces sent", took.Round(time.Millisecond), bh.requests("event=stopped"))
	if took > 3*time.Second {
		t.Errorf("shutdown with a hanging tracker took %s, want about a second at most", took)
	}
	if n := bh.requests("/announce", "event=stopped"); n != files {
		t.Errorf("%d stopped announces sent on shutdown, want %d", n, files)
	}
}

// listsPeer reports whether the tracker's info names a peer on port.
func listsPeer(fi *fileinfo.Info, port int) bool {
	for _, p := range fi.Peers {
		if p.Port == port {
			return true
		}
	}
	return false
}
