package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
)

// TestStreamBytesIdentical: whole files and every range form through a
// proxy are byte for byte the origin's.
func TestStreamBytesIdentical(t *testing.T) {
	c := start(t, demo.Config{Proxies: 2, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, "films/clip one.bin", 5<<20+12345)
	waitInfo(t, c, "films/clip one.bin", "")

	if got := mustGet(t, streamURL(c.Proxies[0], "films/clip one.bin"), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatalf("whole file through proxy1: %d bytes, differs from the origin's %d", len(got), len(data))
	}
	size := len(data)
	for _, tc := range []struct {
		rng        string
		start, end int // inclusive
	}{
		{"bytes=0-0", 0, 0},
		{"bytes=100-199", 100, 199},
		{"bytes=262140-262150", 262140, 262150}, // across a piece boundary
		{fmt.Sprintf("bytes=%d-", size-1000), size - 1000, size - 1},
		{"bytes=-4096", size - 4096, size - 1},
		{fmt.Sprintf("bytes=%d-%d", size-10, size+1000), size - 10, size - 1},
		{"bytes=3000000-4000000", 3000000, 4000000},
	} {
		for _, p := range c.Proxies {
			got := mustGet(t, streamURL(p, "films/clip one.bin"), tc.rng, http.StatusPartialContent)
			if !bytes.Equal(got, data[tc.start:tc.end+1]) {
				t.Errorf("%s %s: %d bytes differ from the origin's", p.Name, tc.rng, len(got))
			}
		}
	}
	resp, _, err := get(t, streamURL(c.Proxies[1], "films/clip one.bin"), fmt.Sprintf("bytes=%d-", size))
	if err != nil || resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
		t.Errorf("range past the end: %v %v, want 416 with Content-Range bytes */%d", resp, err, size)
	}
	resp, _, _ = get(t, streamURL(c.Proxies[1], "films/clip one.bin"), "bytes=abc")
	if resp == nil || resp.StatusCode != http.StatusRequestedRangeNotSatisfiable || resp.Header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) {
		t.Errorf("malformed range: %v, want 416 with Content-Range bytes */%d", resp, size)
	}
	resp, _, _ = get(t, streamURL(c.Proxies[1], "films/nothing.bin"), "")
	if resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown file: %v, want 404", resp)
	}
}

// TestPeersCarryTheLoad: with the origin capped at 4 MB/s, proxies that
// start after the first take most of their bytes from peers.
func TestPeersCarryTheLoad(t *testing.T) {
	const size = 24 << 20
	c := start(t, demo.Config{Proxies: 3, RateLimit: 4_000_000, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, "big.bin", size)
	waitInfo(t, c, "big.bin", "")

	t0 := time.Now()
	if got := mustGet(t, streamURL(c.Proxies[0], "big.bin"), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("proxy1: bytes differ")
	}
	first := time.Since(t0)
	var peerBytes, originBytes int64
	for _, p := range c.Proxies[1:] {
		t0 := time.Now()
		if got := mustGet(t, streamURL(p, "big.bin"), "", http.StatusOK); !bytes.Equal(got, data) {
			t.Fatalf("%s: bytes differ", p.Name)
		}
		st := status(t, p)
		if len(st.Files) != 1 {
			t.Fatalf("%s status: %+v", p.Name, st)
		}
		f := st.Files[0]
		t.Logf("%s: %s, peer %s, origin %s (fetched %s), origin share %.3f", p.Name, time.Since(t0).Round(time.Millisecond),
			mib(float64(f.PeerBytes)), mib(float64(f.OriginBytes)), mib(float64(f.OriginFetched)), f.OriginShare)
		peerBytes += f.PeerBytes
		originBytes += f.OriginBytes
	}
	sent := counter(t, c.Origin, "p2sp_origin_sent_bytes_total")
	t.Logf("proxy1 (origin only): %s; origin sent %s in all for 3 copies of %s", first.Round(time.Millisecond), mib(sent), mib(size))
	if peerBytes < 4*originBytes {
		t.Errorf("later proxies took %d bytes from peers and %d from the origin; want most from peers", peerBytes, originBytes)
	}
	if sent > 1.5*size {
		t.Errorf("origin sent %.0f bytes for three copies of a %d-byte file; want little more than one copy", sent, size)
	}
}

// TestCacheHitOffline: a complete cache hit needs neither origin nor
// tracker.
func TestCacheHitOffline(t *testing.T) {
	c := start(t, demo.Config{Proxies: 1, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, "a.bin", 3<<20)
	waitInfo(t, c, "a.bin", "")
	p := c.Proxies[0]
	mustGet(t, streamURL(p, "a.bin"), "", http.StatusOK)
	waitComplete(t, p, "a.bin")
	if err := c.Origin.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := c.Tracker.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, streamURL(p, "a.bin"), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("cache hit: bytes differ")
	}
	if got := mustGet(t, streamURL(p, "a.bin"), "bytes=1000-2000", http.StatusPartialContent); !bytes.Equal(got, data[1000:2001]) {
		t.Fatal("cache hit range: bytes differ")
	}
}

func waitComplete(t *testing.T, p *demo.Service, path string) {
	t.Helper()
	waitCompleteAt(t, p.URL, path)
}

// TestNewFileReportedThenPeerToPeer: a file the tracker does not know is
// streamed from the origin at once, reported, registered, and the next
// proxy gets it from the first as a peer.
func TestNewFileReportedThenPeerToPeer(t *testing.T) {
	// A scan interval longer than the test: only the proxy's report makes
	// the origin hash the new file.
	c := start(t, demo.Config{Proxies: 2, ScanInterval: time.Hour, RateLimit: 8_000_000})
	waitFirstScan(t, c)
	data := writeMedia(t, c, "new/arrival.bin", 4<<20)
	if got := mustGet(t, streamURL(c.Proxies[0], "new/arrival.bin"), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("first stream: bytes differ")
	}
	waitInfo(t, c, "new/arrival.bin", "")
	waitComplete(t, c.Proxies[0], "new/arrival.bin")
	sentBefore := counter(t, c.Origin, "p2sp_origin_sent_bytes_total")
	if got := mustGet(t, streamURL(c.Proxies[1], "new/arrival.bin"), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("second proxy: bytes differ")
	}
	f := status(t, c.Proxies[1]).Files[0]
	sent := counter(t, c.Origin, "p2sp_origin_sent_bytes_total") - sentBefore
	t.Logf("second proxy: peer %s, origin %s; origin sent %s", mib(float64(f.PeerBytes)), mib(float64(f.OriginBytes)), mib(sent))
	if f.PeerBytes < int64(len(data))*3/4 {
		t.Errorf("second proxy took %d of %d bytes from peers; want most", f.PeerBytes, len(data))
	}
}

// TestChangedFileNeverMixes: a file rewritten on the origin under the
// tracker's old hashes never yields mixed bytes; once the origin rehashes
// it, the proxy serves the new bytes.
func TestChangedFileNeverMixes(t *testing.T) {
	c := start(t, demo.Config{Proxies: 1, ScanInterval: time.Hour})
	waitFirstScan(t, c)
	old := writeMedia(t, c, "v.bin", 2<<20)
	// The first request is unknown to the tracker: it reports, the origin
	// hashes and registers the old version.
	mustGet(t, streamURL(c.Proxies[0], "v.bin"), "bytes=0-0", http.StatusPartialContent)
	sum := sha256.Sum256(old)
	waitInfo(t, c, "v.bin", hex.EncodeToString(sum[:]))

	// Rewrite it; nothing tells the origin (its scan is an hour away).
	time.Sleep(10 * time.Millisecond) // a distinct mtime
	newer := writeMedia(t, c, "v.bin", 2<<20)
	// Whole or cut short, a response under the old hashes carries the bytes
	// of one version only; whole, the old one (the new bytes do not verify).
	resp, got, err := get(t, streamURL(c.Proxies[0], "v.bin"), "")
	t.Logf("under old hashes: err=%v status=%v (%d bytes)", err, statusOf(resp), len(got))
	if resp != nil && resp.StatusCode < 300 && !isPrefix(got, old) && !isPrefix(got, newer) {
		t.Fatalf("changed file under old hashes: %s, %d bytes (err %v) that mix the two versions", resp.Status, len(got), err)
	}
	if err == nil && resp.StatusCode == http.StatusOK && bytes.Equal(got, newer) {
		t.Fatal("changed file under old hashes: the whole new version was served as the registered one")
	}

	// The proxy reported it; the origin rehashes and re-registers.
	nsum := sha256.Sum256(newer)
	waitInfo(t, c, "v.bin", hex.EncodeToString(nsum[:]))
	if got := mustGet(t, streamURL(c.Proxies[0], "v.bin"), "", http.StatusOK); !bytes.Equal(got, newer) {
		t.Fatal("after the rehash: want the new bytes")
	}
}

func statusOf(resp *http.Response) string {
	if resp == nil {
		return "none"
	}
	return resp.Status
}

// TestCacheStaysUnderItsSize: more media than the cache holds evicts the
// least recently played file, and the cache never exceeds its size.
func TestCacheStaysUnderItsSize(t *testing.T) {
	const fileSize = 1 << 20
	c := start(t, demo.Config{Proxies: 1, CacheSize: 3*fileSize + fileSize/2, ScanInterval: 200 * time.Millisecond})
	names := []string{"c1.bin", "c2.bin", "c3.bin", "c4.bin"}
	for _, n := range names {
		writeMedia(t, c, n, fileSize)
	}
	for _, n := range names {
		waitInfo(t, c, n, "")
	}
	p := c.Proxies[0]
	for _, n := range names[:3] {
		mustGet(t, streamURL(p, n), "", http.StatusOK)
		waitComplete(t, p, n)
	}
	mustGet(t, streamURL(p, "c1.bin"), "bytes=0-10", http.StatusPartialContent) // c1 played again: c2 is now the oldest
	mustGet(t, streamURL(p, "c4.bin"), "", http.StatusOK)
	waitComplete(t, p, "c4.bin")
	st := status(t, p)
	if st.Cache.Bytes > st.Cache.Capacity {
		t.Fatalf("cache holds %d bytes, over its %d", st.Cache.Bytes, st.Cache.Capacity)
	}
	held := map[string]bool{}
	for _, f := range st.Files {
		if f.PiecesHeld > 0 {
			held[f.Path] = true
		}
	}
	if held["c2.bin"] || !held["c1.bin"] || !held["c3.bin"] || !held["c4.bin"] {
		t.Fatalf("cache holds %v; want c1, c3, c4 (c2 least recently played)", held)
	}
	// Nothing of c2 is left on disk either.
	var onDisk int64
	filepath.Walk(filepath.Join(c.Dir, p.Name, "files"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Name() == "data" {
			onDisk += fi.Size()
		}
		return nil
	})
	if onDisk > st.Cache.Capacity {
		t.Fatalf("%d bytes of data files on disk, over the %d capacity", onDisk, st.Cache.Capacity)
	}
}

// TestCachedFileSuperseded: a file complete in the cache and then changed
// on the origin is served whole (old or new, never mixed) and, once the
// origin has registered the new version, the proxy moves to it.
func TestCachedFileSuperseded(t *testing.T) {
	c := start(t, demo.Config{Proxies: 1, ScanInterval: 200 * time.Millisecond})
	old := writeMedia(t, c, "super.bin", 1<<20)
	waitInfo(t, c, "super.bin", "")
	p := c.Proxies[0]
	mustGet(t, streamURL(p, "super.bin"), "", http.StatusOK)
	waitComplete(t, p, "super.bin")

	time.Sleep(10 * time.Millisecond) // a distinct mtime
	newer := writeMedia(t, c, "super.bin", 1<<20)
	sum := sha256.Sum256(newer)
	waitInfo(t, c, "super.bin", hex.EncodeToString(sum[:]))
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := mustGet(t, streamURL(p, "super.bin"), "", http.StatusOK)
		if bytes.Equal(got, newer) {
			return
		}
		if !bytes.Equal(got, old) {
			t.Fatal("neither the old nor the new version: mixed bytes")
		}
		if time.Now().After(deadline) {
			t.Fatal("the proxy still serves the old version 10 s after the new one was registered")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
