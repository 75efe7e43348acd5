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

// TestSameMTimeRewriteNeverMixes: a file rewritten with its size and
// modification time kept (touch -r, rsync -t) never reaches a player as
// old and new bytes mixed: no new byte is sent under the old version's
// ETag. The registered info carries the strong ETag of the content; the
// origin stops answering with it the moment stat says the file changed,
// so the proxy's If-Range fails before any new byte is passed on. Once the
// origin rehashes, the new bytes play.
func TestSameMTimeRewriteNeverMixes(t *testing.T) {
	c := start(t, demo.Config{Proxies: 1, ScanInterval: time.Hour})
	const size = 24 << 20
	old := writeMedia(t, c, "same/mtime.bin", size)
	p := filepath.Join(c.Media, "same", "mtime.bin")
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	// The first request is unknown to the tracker: the proxy reports it,
	// the origin hashes and registers it.
	mustGet(t, streamURL(c.Proxies[0], "same/mtime.bin"), "bytes=0-0", http.StatusPartialContent)
	sum := sha256.Sum256(old)
	info := waitInfo(t, c, "same/mtime.bin", hex.EncodeToString(sum[:]))
	if want := `"sha256-` + info.SHA256 + `"`; info.ETag != want {
		t.Fatalf("registered ETag %s, want the content's %s", info.ETag, want)
	}
	// Some of the old version in the proxy's cache: the head.
	if got := mustGet(t, streamURL(c.Proxies[0], "same/mtime.bin"), "bytes=0-65535", http.StatusPartialContent); !bytes.Equal(got, old[:65536]) {
		t.Fatal("head of the old version differs")
	}

	// Rewrite in place, same size, modification time set back.
	newer := make([]byte, size)
	for i := range newer {
		newer[i] = old[i] ^ 0xff
	}
	if err := os.WriteFile(p, newer, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(p, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	// Far from the head, where nothing is cached yet: the origin's bytes
	// would pass to the player as they arrive, before their piece fails.
	const off = 12_000_000
	resp, got, err := get(t, streamURL(c.Proxies[0], "same/mtime.bin"), fmt.Sprintf("bytes=%d-%d", off, off+999_999))
	t.Logf("after the rewrite: status %s, ETag %s, %d bytes, err %v", statusOf(resp), etagOf(resp), len(got), err)
	if resp != nil && resp.Header.Get("ETag") == info.ETag && !bytes.Equal(got, old[off:off+len(got)]) {
		t.Fatalf("new bytes sent under the old version's ETag %s", info.ETag)
	}
	if resp != nil && resp.StatusCode/100 == 2 && err == nil {
		t.Errorf("a complete %s after the rewrite, under the old hashes", resp.Status)
	}

	// The proxy reported the change; the origin rehashes and registers
	// the new version, which then plays whole.
	nsum := sha256.Sum256(newer)
	waitInfo(t, c, "same/mtime.bin", hex.EncodeToString(nsum[:]))
	if got := mustGet(t, streamURL(c.Proxies[0], "same/mtime.bin"), "", http.StatusOK); !bytes.Equal(got, newer) {
		t.Fatal("after the rehash: want the new bytes")
	}
}

func etagOf(resp *http.Response) string {
	if resp == nil {
		return "none"
	}
	return resp.Header.Get("ETag")
}
