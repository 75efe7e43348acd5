package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
)

// TestManifestNeverStale: a live playlist rewritten on the origin reaches
// the player on its very next request through the proxy, a player's own
// If-None-Match gets a 304 only for the current version, and an on-demand
// playlist keeps playing from the proxy's copy while the origin is away,
// when a live one fails rather than going stale.
func TestManifestNeverStale(t *testing.T) {
	c := start(t, demo.Config{Proxies: 1})
	p := c.Proxies[0]
	playlist := func(seq int, ended bool) []byte {
		var b strings.Builder
		fmt.Fprintf(&b, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:%d\n", seq)
		for i := seq; i < seq+3; i++ {
			fmt.Fprintf(&b, "#EXTINF:1.000,\nindex%d.ts\n", i)
		}
		if ended {
			b.WriteString("#EXT-X-ENDLIST\n")
		}
		return []byte(b.String())
	}
	url := streamURL(p, "live/index.m3u8")
	var etag string
	for seq := range 5 {
		want := playlist(seq, false)
		putFile(t, c.Media, "live/index.m3u8", want)
		// Rewrites within one tick of the file system's clock would share
		// a modification time, and the origin's ETag with it.
		mt := time.Now().Add(time.Duration(seq-10) * time.Second)
		if err := os.Chtimes(filepath.Join(c.Media, "live", "index.m3u8"), mt, mt); err != nil {
			t.Fatal(err)
		}
		resp, body, err := get(t, url, "")
		if err != nil || resp.StatusCode != http.StatusOK || string(body) != string(want) {
			t.Fatalf("version %d: %v %v: got\n%s\nwant\n%s", seq, resp, err, body, want)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-cache" {
			t.Errorf("a live playlist answered with Cache-Control %q", cc)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/vnd.apple.mpegurl" {
			t.Errorf("Content-Type %q", ct)
		}
		etag = resp.Header.Get("ETag")
	}
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match of the current version: %s, want 304", resp.Status)
	}

	ended := playlist(10, true)
	putFile(t, c.Media, "show/index.m3u8", ended)
	if got := mustGet(t, streamURL(p, "show/index.m3u8"), "", http.StatusOK); string(got) != string(ended) {
		t.Fatalf("on-demand playlist: %q", got)
	}
	if err := c.Origin.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := mustGet(t, streamURL(p, "show/index.m3u8"), "", http.StatusOK); string(got) != string(ended) {
		t.Fatalf("on-demand playlist with the origin away: %q", got)
	}
	if resp, _, err := get(t, url, ""); err != nil || resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("live playlist with the origin away: %v %v, want 502", resp.Status, err)
	}
}
