package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/testtool"
)

// livePlaylist is what a viewer reads of an HLS media playlist.
type livePlaylist struct {
	seq  int       // media sequence number of the first segment
	durs []float64 // EXTINF durations, in order
	uris []string
}

// last is the sequence number of the playlist's last segment.
func (pl livePlaylist) last() int { return pl.seq + len(pl.uris) - 1 }

func parsePlaylist(b []byte) (livePlaylist, error) {
	var pl livePlaylist
	if !bytes.HasPrefix(b, []byte("#EXTM3U")) {
		return pl, fmt.Errorf("not a playlist: %.40q", b)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	var dur float64
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"):
			pl.seq, _ = strconv.Atoi(strings.TrimPrefix(line, "#EXT-X-MEDIA-SEQUENCE:"))
		case strings.HasPrefix(line, "#EXTINF:"):
			dur, _ = strconv.ParseFloat(strings.TrimSuffix(strings.SplitN(strings.TrimPrefix(line, "#EXTINF:"), ",", 2)[0], ","), 64)
		case line != "" && !strings.HasPrefix(line, "#"):
			pl.uris = append(pl.uris, line)
			pl.durs = append(pl.durs, dur)
		}
	}
	return pl, nil
}

// liveViewer is an HLS player's network side: it polls the playlist
// through a proxy, fetches each new segment once, checks it is whole
// MPEG-TS, and keeps how much media it received.
type liveViewer struct {
	t      *testing.T
	proxy  *demo.Service
	media  string // the origin's media directory, to read its playlist directly
	client *http.Client
	// after, if set, holds back a segment until it is in after.got: the
	// second viewer fetches what the first one already has, as an
	// audience a little behind the first one would.
	after *liveViewer

	mu       sync.Mutex
	got      map[int]bool
	next     int     // next sequence number to fetch; -1 before the first playlist
	received float64 // seconds of media
	bytes    int64
	maxLag   int // most segments the viewer was behind the origin's playlist
}

func newLiveViewer(t *testing.T, p *demo.Service, media string, after *liveViewer) *liveViewer {
	return &liveViewer{t: t, proxy: p, media: media, after: after, got: map[int]bool{}, next: -1,
		client: &http.Client{Timeout: 5 * time.Second}}
}

func (v *liveViewer) has(seq int) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.got[seq]
}

// originLast is the last segment of the playlist on the origin's disk.
func (v *liveViewer) originLast() (int, error) {
	b, err := os.ReadFile(filepath.Join(v.media, "live", "index.m3u8"))
	if err != nil {
		return 0, err
	}
	pl, err := parsePlaylist(b)
	return pl.last(), err
}

func (v *liveViewer) fetch(ctx context.Context, p string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, streamURL(v.proxy, p), nil)
	if err != nil {
		return nil, err
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", p, resp.Status, b)
	}
	return b, nil
}

// poll reads the playlist once and fetches the segments it names that are
// new. It returns an error for anything a player would stall or break on.
func (v *liveViewer) poll(ctx context.Context) error {
	before, err := v.originLast()
	if err != nil {
		return fmt.Errorf("origin playlist: %w", err)
	}
	b, err := v.fetch(ctx, "live/index.m3u8")
	if err != nil {
		return err
	}
	pl, err := parsePlaylist(b)
	if err != nil {
		return err
	}
	// Never stale: the proxy's playlist is at least the one the origin had
	// before it was asked.
	if pl.last() < before {
		return fmt.Errorf("stale playlist through the proxy: last segment %d, the origin had %d before the request", pl.last(), before)
	}
	if v.next < 0 {
		v.next = max(pl.seq, pl.last()-2) // a player starts three segments from the live edge
	}
	for i, uri := range pl.uris {
		seq := pl.seq + i
		if seq < v.next {
			continue
		}
		if v.after != nil && !v.after.has(seq) {
			break
		}
		seg, err := v.fetch(ctx, path.Join("live", uri))
		if err != nil {
			return err
		}
		if len(seg) == 0 || len(seg)%188 != 0 {
			return fmt.Errorf("segment %s: %d bytes, not whole MPEG-TS packets", uri, len(seg))
		}
		for off := 0; off < len(seg); off += 188 {
			if seg[off] != 0x47 {
				return fmt.Errorf("segment %s: no sync byte at %d: mixed or misaligned bytes", uri, off)
			}
		}
		v.mu.Lock()
		v.got[seq] = true
		v.next = seq + 1
		v.received += pl.durs[i]
		v.bytes += int64(len(seg))
		v.mu.Unlock()
	}
	now, err := v.originLast()
	if err != nil {
		return fmt.Errorf("origin playlist: %w", err)
	}
	lag := now - (v.next - 1)
	if v.after != nil {
		lag = v.after.next - v.next // behind its leader, by design
	}
	v.maxLag = max(v.maxLag, lag)
	return nil
}

// TestLiveHLSThroughProxies: ffmpeg encodes a live HLS stream in real time
// into the origin's media (one-second segments, a window of five, old
// segments deleted, temp_file renames). A viewer on one proxy keeps
// receiving new segments for 20 s, never more than one segment behind the
// origin's own playlist, never from a stale playlist, every segment whole;
// viewers on two more proxies, each fetching what the first already has,
// are served from segments their proxies prefetched along the playlist,
// and segment bytes pass between the proxies.
func TestLiveHLSThroughProxies(t *testing.T) {
	ffmpeg := testtool.Require(t, "ffmpeg")
	c := start(t, demo.Config{Proxies: 3})
	if err := os.Mkdir(filepath.Join(c.Media, "live"), 0o755); err != nil {
		t.Fatal(err)
	}
	const watch = 20 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), watch+20*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	enc := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-re", "-f", "lavfi", "-i", "sine",
		"-t", strconv.Itoa(int(watch/time.Second)+15),
		"-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac",
		"-f", "hls", "-hls_time", "1", "-hls_list_size", "5", "-hls_flags", "delete_segments+temp_file",
		filepath.Join(c.Media, "live", "index.m3u8"))
	enc.Stderr = &stderr
	if err := enc.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		enc.Wait()
		if stderr.Len() > 0 {
			t.Logf("ffmpeg: %s", stderr.Bytes())
		}
	}()

	first := newLiveViewer(t, c.Proxies[0], c.Media, nil)
	viewers := []*liveViewer{first,
		newLiveViewer(t, c.Proxies[1], c.Media, first),
		newLiveViewer(t, c.Proxies[2], c.Media, first)}
	// The stream starts once ffmpeg wrote its first playlist.
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := first.originLast(); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ffmpeg wrote no playlist in 15 s: %s", stderr.Bytes())
		}
		time.Sleep(100 * time.Millisecond)
	}
	start := time.Now()
	errs := make(chan error, len(viewers))
	var wg sync.WaitGroup
	for _, v := range viewers {
		wg.Go(func() {
			tick := time.NewTicker(250 * time.Millisecond) // hls.js polls about this often near the edge
			defer tick.Stop()
			for time.Since(start) < watch {
				if err := v.poll(ctx); err != nil {
					errs <- fmt.Errorf("viewer on %s after %v: %w", v.proxy.Name, time.Since(start).Round(time.Millisecond), err)
					return
				}
				select {
				case <-ctx.Done():
					errs <- ctx.Err()
					return
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	elapsed := time.Since(start)
	for _, v := range viewers {
		t.Logf("%s: %.1f s of media in %v of wall time, %d bytes, at most %d segment(s) behind", v.proxy.Name, v.received, elapsed.Round(time.Millisecond), v.bytes, v.maxLag)
	}
	// A viewer starts three segments behind the edge and must keep up
	// with the encoder within one segment.
	if first.maxLag > 1 {
		t.Errorf("the first viewer fell %d segments behind the origin's playlist", first.maxLag)
	}
	if first.received < watch.Seconds()-2 {
		t.Errorf("the first viewer received %.1f s of media in %v", first.received, elapsed)
	}
	var peer, origin, uploaded int64
	for i, v := range viewers {
		for _, f := range status(t, v.proxy).Files {
			if !strings.HasSuffix(f.Path, ".ts") {
				continue
			}
			uploaded += f.UploadedBytes
			if i > 0 {
				peer += f.PeerBytes
				origin += f.OriginBytes
			}
		}
		if i > 0 && v.received < watch.Seconds()-4 {
			t.Errorf("%s received %.1f s of media in %v", v.proxy.Name, v.received, elapsed)
		}
	}
	// Everything the origin sent, playlists included, in copies of what
	// one viewer received: three proxies fed by the origin alone would
	// cost three.
	copies := counter(t, c.Origin, "p2sp_origin_sent_bytes_total") / float64(first.bytes)
	t.Logf("proxies 2 and 3 served segment bytes: %d from peers, %d from the origin, the rest from their cache (prefetched); proxies uploaded %d segment bytes to each other; the origin sent %.2f copies of the stream", peer, origin, uploaded, copies)
	if uploaded == 0 {
		t.Error("no proxy sent a segment byte to another: the live stream came from the origin alone")
	}
}
