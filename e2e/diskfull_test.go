package e2e

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/proxy"
)

// TestFullDiskStreamsFromOrigin: a cache on a disk that fills up (a 2 MiB
// tmpfs under a cache told it has 64 MiB) degrades to streaming from the
// origin: the player gets every byte, the proxy logs and goes on.
func TestFullDiskStreamsFromOrigin(t *testing.T) {
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a tmpfs for the full-disk test: %v (CI runs as root)", err)
		}
		t.Skipf("skipping: mounting a small tmpfs needs root: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })

	const size = 8 << 20
	c := start(t, demo.Config{Proxies: 0, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, "full/disk.bin", size)
	waitInfo(t, c, "full/disk.bin", "")
	p := startTestProxy(t, c, proxy.Config{CacheDir: dir, CacheSize: 64 << 20})
	url := p.URL + "/stream/" + fileinfo.EscapePath("full/disk.bin")
	for _, rq := range []struct {
		rng        string
		code       int
		start, end int
	}{
		{"", http.StatusOK, 0, size - 1},
		{"bytes=5000000-6000000", http.StatusPartialContent, 5000000, 6000000},
		{"", http.StatusOK, 0, size - 1},
	} {
		if got := mustGet(t, url, rq.rng, rq.code); !bytes.Equal(got, data[rq.start:rq.end+1]) {
			t.Fatalf("%q with a full disk: %d bytes, not the file's", rq.rng, len(got))
		}
	}
}

// TestUnknownFileLargerThanCache: a file the tracker does not know yet,
// larger than the cache, streams from the origin and leaves nothing on
// disk beyond the cache's size (it is not kept aside for adoption).
func TestUnknownFileLargerThanCache(t *testing.T) {
	const size, capacity = 3 << 20, 1 << 20
	c := start(t, demo.Config{Proxies: 1, CacheSize: capacity, ScanInterval: time.Hour})
	waitFirstScan(t, c)
	data := writeMedia(t, c, "unknown/large.bin", size)
	if got := mustGet(t, streamURL(c.Proxies[0], "unknown/large.bin"), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("bytes differ")
	}
	var onDisk int64
	filepath.Walk(filepath.Join(c.Dir, c.Proxies[0].Name), func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && fi.Size() > 64<<10 {
			onDisk += fi.Size()
		}
		return nil
	})
	if onDisk > capacity {
		t.Fatalf("%d bytes of files in the proxy's directory, over its %d-byte cache", onDisk, capacity)
	}
}
