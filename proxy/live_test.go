package proxy

import (
	"fmt"
	"testing"
	"time"
)

// TestRetireLiveSegments: the torrents of a live stream's segments
// registered retireSegments durations ago and out of the playlist window
// are closed, their cache entries kept; a segment still named by the
// playlist or still being read keeps its torrent, and once the stream is
// no longer followed, every idle one goes. The torrents open stay bounded
// however long the event runs.
func TestRetireLiveSegments(t *testing.T) {
	s := newTestServer(t)
	ls := &liveStream{dir: "live", viewers: map[string]time.Time{}, registered: map[string]time.Time{},
		registeredNow: make(chan struct{}), window: map[string]bool{}}
	ls.segment.Store(int64(time.Second))
	const n = 40
	now := time.Now()
	files := make([]*file, n)
	seg := func(i int) string { return fmt.Sprintf("live/seg%d.ts", i) }
	for i := range n {
		info := randomInfo(t, seg(i), 1000)
		e, err := s.cache.Create(info)
		if err != nil {
			t.Fatal(err)
		}
		if files[i], err = s.activate(info, e); err != nil {
			t.Fatal(err)
		}
		e.Release()
		// One a second, the newest half a second ago.
		ls.registered[seg(i)] = now.Add(-time.Duration(n-i)*time.Second + 500*time.Millisecond)
	}
	for i := n - 5; i < n; i++ {
		ls.window[seg(i)] = true
	}
	ls.window[seg(2)] = true // a long window
	r := files[10].newReader(t.Context(), 0, 1000)

	open := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.files)
	}
	s.retireLive(ls, false)
	// Registered within retireSegments seconds, in the window, being read.
	if got, want := open(), retireSegments+2; got != want {
		t.Errorf("%d torrents open after retiring, want %d", got, want)
	}
	for _, i := range []int{2, 10, n - retireSegments, n - 1} {
		if files[i].torrent.Closed() {
			t.Errorf("segment %d's torrent was closed", i)
		}
	}
	for _, i := range []int{0, 11, n - retireSegments - 1} {
		if !files[i].torrent.Closed() {
			t.Errorf("segment %d's torrent is open", i)
		}
		if e, ok := s.cache.Peek(seg(i)); !ok {
			t.Errorf("segment %d left the cache with its torrent", i)
		} else {
			e.Release()
		}
	}
	r.Close()
	// (An origin fetch the reader started may still be ending.)
	for deadline := time.Now().Add(5 * time.Second); !files[10].torrent.Closed(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("segment 10's torrent still open once its reader closed")
		}
		s.retireLive(ls, false)
	}
	s.retireLive(ls, true)
	if got := open(); got != 0 {
		t.Errorf("%d torrents open once the stream is no longer followed", got)
	}
}
