package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/proxy"
)

// slowLookups is a relay in front of the tracker that holds every file-info
// lookup until release is closed (or 10 s pass), and records when it had
// received and answered one.
type slowLookups struct {
	release            chan struct{}
	received, answered atomic.Int32
}

func (sl *slowLookups) handler(target string) http.Handler {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/v1/files/") {
			rp.ServeHTTP(w, r)
			return
		}
		sl.received.Add(1)
		select {
		case <-sl.release:
		case <-time.After(10 * time.Second):
		case <-r.Context().Done():
		}
		rp.ServeHTTP(w, r)
		sl.answered.Add(1)
	})
}

// TestColdRequestDoesNotWaitForTracker: a cold request's first bytes come
// from the origin while the tracker has not answered yet (a real network
// would otherwise cost two round trips), the whole range is right, and
// once the tracker answers what was streamed is verified into the cache.
func TestColdRequestDoesNotWaitForTracker(t *testing.T) {
	c := start(t, demo.Config{ScanInterval: 200 * time.Millisecond})
	const name = "cold/slow-tracker.bin"
	data := writeMedia(t, c, name, 4<<20+333)
	waitInfo(t, c, name, "")

	sl := &slowLookups{release: make(chan struct{})}
	relay := httptest.NewServer(sl.handler(c.Tracker.URL))
	t.Cleanup(relay.Close)
	released := false
	release := func() {
		if !released {
			released = true
			close(sl.release)
		}
	}
	t.Cleanup(release)
	p := startTestProxy(t, c, proxy.Config{Trackers: []string{relay.URL}}).URL

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p+"/stream/"+name, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Range", "bytes=1000-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		t.Fatalf("status %s, want 206", resp.Status)
	}
	first := make([]byte, 1)
	if _, err := io.ReadFull(resp.Body, first); err != nil {
		t.Fatalf("first byte: %v", err)
	}
	if got := sl.answered.Load(); got != 0 {
		t.Fatalf("the first byte came after the tracker answered %d lookup(s): the origin request waited for the tracker", got)
	}
	// The lookup runs beside the origin request, so it may reach the relay
	// just after the first byte did; it must come while the relay holds
	// every lookup, which the answered check above already pins down.
	for lookupBy := time.Now().Add(5 * time.Second); sl.received.Load() == 0; {
		if time.Now().After(lookupBy) {
			t.Fatal("the proxy never asked the tracker for the file's info")
		}
		time.Sleep(10 * time.Millisecond)
	}
	release()
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("rest of the body: %v", err)
	}
	if got := append(first, rest...); !bytes.Equal(got, data[1000:]) {
		t.Fatalf("body: %d bytes, differing from the file's %d from byte 1000", len(got), len(data)-1000)
	}

	// What was streamed enters the cache once the info is there.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var st proxyStatus
		resp, err := http.Get(p + "/v1/status")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err == nil && len(st.Files) == 1 && st.Files[0].PiecesHeld > 0 {
			t.Logf("cached %d of %d pieces after the cold request", st.Files[0].PiecesHeld, st.Files[0].PiecesTotal)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the streamed bytes never entered the cache (status %+v, err %v)", st, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
