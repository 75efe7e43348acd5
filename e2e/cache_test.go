package e2e

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/proxy"
)

// TestRestartWithSmallerCache: a proxy restarted on its cache with a
// smaller size evicts the least recently played files down to the new
// size, and serves what is left from the cache.
func TestRestartWithSmallerCache(t *testing.T) {
	const fileSize = 1 << 20
	c := start(t, demo.Config{ScanInterval: 200 * time.Millisecond})
	a := writeMedia(t, c, "shrink/a.bin", fileSize)
	b := writeMedia(t, c, "shrink/b.bin", fileSize)
	waitInfo(t, c, "shrink/a.bin", "")
	waitInfo(t, c, "shrink/b.bin", "")
	dir := t.TempDir()
	p := startTestProxy(t, c, proxy.Config{CacheDir: dir, CacheSize: 3 * fileSize})
	for _, path := range []string{"shrink/a.bin", "shrink/b.bin"} { // b is played last
		mustGet(t, p.URL+"/stream/"+fileinfo.EscapePath(path), "", http.StatusOK)
		waitCompleteAt(t, p.URL, path)
	}
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}

	const smaller = fileSize + fileSize/2
	p = startTestProxy(t, c, proxy.Config{CacheDir: dir, CacheSize: smaller})
	st := statusAt(t, p.URL)
	if st.Cache.Entries != 1 || st.Cache.Bytes > smaller {
		t.Errorf("after the restart the cache holds %d entries, %d bytes; want 1 entry within %d bytes", st.Cache.Entries, st.Cache.Bytes, smaller)
	}
	if f := fileStatusAt(t, p.URL, "shrink/b.bin"); !f.Complete {
		t.Errorf("the last played file is not complete after the restart: %+v", f)
	}
	if f := fileStatusAt(t, p.URL, "shrink/a.bin"); f.PiecesHeld != 0 {
		t.Errorf("the least recently played file still holds %d pieces", f.PiecesHeld)
	}
	var onDisk int64
	filepath.Walk(filepath.Join(dir, "files"), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Name() == "data" {
			onDisk += fi.Size()
		}
		return nil
	})
	if onDisk > smaller {
		t.Errorf("%d bytes of data files on disk, over the new %d-byte size", onDisk, smaller)
	}
	if got := mustGet(t, p.URL+"/stream/"+fileinfo.EscapePath("shrink/b.bin"), "", http.StatusOK); !bytes.Equal(got, b) {
		t.Error("the kept file: bytes differ")
	}
	if f := fileStatusAt(t, p.URL, "shrink/b.bin"); f.CacheBytes != fileSize {
		t.Errorf("the kept file was not served from the cache: %+v", f)
	}
	if got := mustGet(t, p.URL+"/stream/"+fileinfo.EscapePath("shrink/a.bin"), "", http.StatusOK); !bytes.Equal(got, a) {
		t.Error("the evicted file, fetched again: bytes differ")
	}
}

// TestProbesLeaveTheCacheAlone: a HEAD, a conditional GET answered 304 and
// a range past the end (416) of a file that is not cached reserve nothing
// and evict nothing: a full cache keeps the files it holds.
func TestProbesLeaveTheCacheAlone(t *testing.T) {
	const mb = 1 << 20
	c := start(t, demo.Config{ScanInterval: 200 * time.Millisecond})
	for _, f := range []struct {
		path string
		size int
	}{{"probe/one.bin", mb}, {"probe/two.bin", mb}, {"probe/big.bin", 2 * mb}} {
		writeMedia(t, c, f.path, f.size)
	}
	big := waitInfo(t, c, "probe/big.bin", "")
	p := startTestProxy(t, c, proxy.Config{CacheSize: 3 * mb})
	for _, path := range []string{"probe/one.bin", "probe/two.bin"} {
		waitInfo(t, c, path, "")
		mustGet(t, p.URL+"/stream/"+fileinfo.EscapePath(path), "", http.StatusOK)
		waitCompleteAt(t, p.URL, path)
	}
	url := p.URL + "/stream/" + fileinfo.EscapePath("probe/big.bin")
	for _, pr := range []struct {
		name, method string
		header       http.Header
		want         int
	}{
		{"HEAD", http.MethodHead, nil, http.StatusOK},
		{"HEAD of a range", http.MethodHead, http.Header{"Range": {"bytes=0-99"}}, http.StatusPartialContent},
		{"If-None-Match", http.MethodGet, http.Header{"If-None-Match": {big.ETag}}, http.StatusNotModified},
		{"range past the end", http.MethodGet, http.Header{"Range": {"bytes=3000000-"}}, http.StatusRequestedRangeNotSatisfiable},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), pr.method, url, nil)
		for k, v := range pr.header {
			req.Header[k] = v
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", pr.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != pr.want {
			t.Errorf("%s: %s, want %d", pr.name, resp.Status, pr.want)
		}
		if pr.name == "HEAD" && (resp.ContentLength != big.Size || resp.Header.Get("ETag") != big.ETag) {
			t.Errorf("HEAD: Content-Length %d, ETag %s; want %d, %s", resp.ContentLength, resp.Header.Get("ETag"), big.Size, big.ETag)
		}
	}
	st := statusAt(t, p.URL)
	t.Logf("after the probes: %d entries, %d bytes of %d", st.Cache.Entries, st.Cache.Bytes, st.Cache.Capacity)
	if st.Cache.Entries != 2 || st.Cache.Bytes != 2*mb {
		t.Errorf("after the probes the cache holds %d entries, %d bytes; want the 2 files of %d bytes it held", st.Cache.Entries, st.Cache.Bytes, 2*mb)
	}
	for _, path := range []string{"probe/one.bin", "probe/two.bin"} {
		if f := fileStatusAt(t, p.URL, path); !f.Complete {
			t.Errorf("%s is no longer complete after the probes: %+v", path, f)
		}
	}
	if f := fileStatusAt(t, p.URL, "probe/big.bin"); f.PiecesTotal != 0 {
		t.Errorf("the probed file got a cache entry: %+v", f)
	}
}
