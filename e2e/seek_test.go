package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
)

// TestSeekMovesThePlayhead: after a seek, the pieces at the new playhead
// arrive while the read-ahead around the old one is dropped, so a
// rate-limited origin spends its bandwidth where the player now is.
func TestSeekMovesThePlayhead(t *testing.T) {
	const size = 24 << 20
	c := start(t, demo.Config{Proxies: 1, RateLimit: 2_000_000, ScanInterval: 200 * time.Millisecond})
	data := writeMedia(t, c, "seek.bin", size)
	info := waitInfo(t, c, "seek.bin", "")
	p := c.Proxies[0]

	// Play from the start, read 512 KiB, then the player seeks: it drops
	// this connection and asks for 20 MB on.
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, streamURL(p, "seek.bin"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 512<<10)
	if _, err := io.ReadFull(resp.Body, head); err != nil || !bytes.Equal(head, data[:len(head)]) {
		t.Fatalf("start of play: %v", err)
	}
	cancel()
	resp.Body.Close()

	const seekTo = 20_000_000
	got := mustGet(t, streamURL(p, "seek.bin"), "bytes=20000000-20262143", http.StatusPartialContent)
	if !bytes.Equal(got, data[seekTo:seekTo+256<<10]) {
		t.Fatal("after the seek: bytes differ")
	}
	// Origin bytes reach the player as they arrive; their pieces are
	// verified into the cache a moment later.
	pl := int(info.PieceLength)
	first, last := seekTo/pl, (seekTo+256<<10-1)/pl
	var pieces string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		pieces = pieceMap(t, p, "seek.bin")
		if strings.Count(pieces[first:last+1], "1") == last+1-first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pieces %d-%d at the new playhead are not held: %s", first, last, pieces[first:last+1])
		}
	}
	// The old read-ahead window went from 512 KiB to 4.5 MiB; at 2 MB/s, had
	// it not been dropped, its far end would be arriving now.
	if held := strings.Count(pieces[(3<<20)/pl:(4<<20)/pl], "1"); held > 0 {
		t.Fatalf("%d pieces of the old read-ahead (3-4 MiB) were fetched after the seek: %s", held, pieces[:(5<<20)/pl])
	}
	// Once the proxy has no origin request left for the file (the seek's
	// response is over), nothing more can arrive: the old read-ahead must
	// still be missing.
	for deadline := time.Now().Add(10 * time.Second); fileStatusOf(t, p, "seek.bin").OriginRequests > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("origin requests for seek.bin still under way 10 s after the seek's response: %+v", fileStatusOf(t, p, "seek.bin"))
		}
	}
	if held := strings.Count(pieceMap(t, p, "seek.bin")[(2<<20)/pl:(4<<20)/pl], "1"); held > 0 {
		t.Fatalf("%d pieces of the old read-ahead (2-4 MiB) arrived after the seek", held)
	}
}

func pieceMap(t *testing.T, p *demo.Service, path string) string {
	t.Helper()
	var st struct {
		Files []struct {
			Path   string `json:"path"`
			Pieces string `json:"pieces"`
		} `json:"files"`
	}
	if err := json.Unmarshal(mustGet(t, p.URL+"/v1/status?pieces=1", "", http.StatusOK), &st); err != nil {
		t.Fatal(err)
	}
	for _, f := range st.Files {
		if f.Path == path {
			return f.Pieces
		}
	}
	t.Fatalf("%s not in status", path)
	return ""
}
