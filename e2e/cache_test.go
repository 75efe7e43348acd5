package e2e

import (
	"bytes"
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
