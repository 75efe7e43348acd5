package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/testtool"
)

func TestZZTmpTiming(t *testing.T) {
	aria2 := testtool.Require(t, "aria2c")
	c := start(t, demo.Config{Proxies: 1, ScanInterval: 200 * time.Millisecond, AnnounceInterval: 2 * time.Second})
	const name = "x.bin"
	data := writeMedia(t, c, name, 32<<20)
	waitInfo(t, c, name, "")
	dir := t.TempDir()
	torrent := filepath.Join(dir, "seed.torrent")
	os.WriteFile(torrent, mustGet(t, c.Tracker.URL+"/v1/torrents/"+fileinfo.EscapePath(name), "", http.StatusOK), 0o644)
	seedDir := filepath.Join(dir, "seed")
	os.MkdirAll(seedDir, 0o755)
	os.WriteFile(filepath.Join(seedDir, name), data, 0o644)
	c.Origin.Stop()
	port := startAria2(t, aria2, 2*time.Minute, torrent, seedDir, "--seed-ratio=0.0", "--seed-time=5")
	waitPeer(t, c, name, port)
	p := c.Proxies[0]
	t0 := time.Now()
	mustGet(t, streamURL(p, name), "bytes=0-65535", http.StatusPartialContent)
	t.Logf("first 64 KiB %s", time.Since(t0))
	t1 := time.Now()
	mustGet(t, streamURL(p, name), "", http.StatusOK)
	t.Logf("whole 32 MiB %s", time.Since(t1))
}
