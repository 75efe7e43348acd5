package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
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
	// versions, if set, vets segments against what the origin held, and
	// the viewer retries a failed segment as a player does (see segment).
	versions *segmentVersions

	mu       sync.Mutex
	got      map[int]bool
	next     int     // next sequence number to fetch; -1 before the first playlist
	received float64 // seconds of media
	bytes    int64
	maxLag   int // most segments the viewer was behind the origin's playlist
	// playing is when the viewer had its first segments (a player starts
	// then) and startMedia what it had; behind is the most the media
	// received since fell behind the wall time since, measured as each
	// segment arrives: a player that falls a segment behind stalls.
	playing    time.Time
	startMedia float64
	startSeq   int // the first segment it fetched
	behind     time.Duration
}

func newLiveViewer(t *testing.T, p *demo.Service, media string, after *liveViewer) *liveViewer {
	return &liveViewer{t: t, proxy: p, media: media, after: after, got: map[int]bool{}, next: -1,
		client: &http.Client{Timeout: 10 * time.Second}}
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
	// A body cut short is an error only against its Content-Length.
	if resp.ContentLength != int64(len(b)) {
		return nil, fmt.Errorf("%s: %d bytes under Content-Length %d", p, len(b), resp.ContentLength)
	}
	return b, nil
}

// segment fetches the segment p: without versions, whole MPEG-TS at the
// first try; with them, as a player does, retrying a failed fetch, and
// only exactly a version the origin held passes.
func (v *liveViewer) segment(ctx context.Context, p string) ([]byte, error) {
	if v.versions != nil {
		return v.versions.fetch(ctx, v, p)
	}
	seg, err := v.fetch(ctx, p)
	if err != nil {
		return nil, err
	}
	return seg, wholeTS(p, seg)
}

// wholeTS checks that seg is whole MPEG-TS packets.
func wholeTS(p string, seg []byte) error {
	if len(seg) == 0 || len(seg)%188 != 0 {
		return fmt.Errorf("segment %s: %d bytes, not whole MPEG-TS packets", p, len(seg))
	}
	for off := 0; off < len(seg); off += 188 {
		if seg[off] != 0x47 {
			return fmt.Errorf("segment %s: no sync byte at %d: mixed or misaligned bytes", p, off)
		}
	}
	return nil
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
		seg, err := v.segment(ctx, path.Join("live", uri))
		if errors.Is(err, errSkipped) {
			v.mu.Lock()
			v.next = seq + 1
			v.mu.Unlock()
			continue
		}
		if err != nil {
			return err
		}
		v.mu.Lock()
		v.got[seq] = true
		v.next = seq + 1
		v.received += pl.durs[i]
		v.bytes += int64(len(seg))
		if !v.playing.IsZero() {
			wall := time.Since(v.playing)
			v.behind = max(v.behind, wall-time.Duration((v.received-v.startMedia)*float64(time.Second)))
		}
		v.mu.Unlock()
	}
	if v.playing.IsZero() && v.received > 0 {
		v.playing, v.startMedia = time.Now(), v.received
		v.startSeq = max(pl.seq, pl.last()-2)
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
	const watch = 20 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), watch+20*time.Second)
	defer cancel()
	encode(ctx, t, ffmpeg, c.Media, watch+15*time.Second, "-g", "25", "-hls_time", "1")

	first := newLiveViewer(t, c.Proxies[0], c.Media, nil)
	viewers := []*liveViewer{first,
		newLiveViewer(t, c.Proxies[1], c.Media, first),
		newLiveViewer(t, c.Proxies[2], c.Media, first)}
	elapsed := watchLive(ctx, t, viewers, watch)
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

// encode runs ffmpeg for d, encoding a live HLS stream in real time into
// media/live/index.m3u8 (a window of five segments, old ones deleted, each
// written to a temporary name and renamed, as ffmpeg's temp_file does),
// with args (GOP and segment duration, bitrate) added to the output's;
// it returns once the first playlist is written. The encoder stops when
// ctx ends or the test does.
func encode(ctx context.Context, t *testing.T, ffmpeg, media string, d time.Duration, args ...string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(media, "live"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var stderr bytes.Buffer
	cmd := []string{"-hide_banner", "-loglevel", "error", "-nostdin",
		"-re", "-f", "lavfi", "-i", "testsrc=size=320x240:rate=25", "-re", "-f", "lavfi", "-i", "sine",
		"-t", strconv.Itoa(int(d / time.Second)), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"}
	cmd = append(cmd, args...)
	cmd = append(cmd, "-f", "hls", "-hls_list_size", "5", "-hls_flags", "delete_segments+temp_file",
		filepath.Join(media, "live", "index.m3u8"))
	enc := exec.CommandContext(ctx, ffmpeg, cmd...)
	enc.Stderr = &stderr
	if err := enc.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		enc.Wait()
		if stderr.Len() > 0 {
			t.Logf("ffmpeg: %s", stderr.Bytes())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(media, "live", "index.m3u8")); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ffmpeg wrote no playlist in 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watchLive has every viewer poll its playlist every 250 ms (hls.js polls
// about this often near the edge) for watch, or until one fails; it fails
// the test with each viewer's error and returns the time watched.
func watchLive(ctx context.Context, t *testing.T, viewers []*liveViewer, watch time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	errs := make(chan error, len(viewers))
	var wg sync.WaitGroup
	for _, v := range viewers {
		wg.Go(func() {
			tick := time.NewTicker(250 * time.Millisecond)
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
	return time.Since(start)
}

// TestLiveCrowd is a live event: ffmpeg encodes a constant-bitrate stream
// (390 kbit/s in all) in 2 s segments in real time, the origin is capped
// at 1.5 times that, and five viewers on five proxies start together,
// three segments behind the live edge, and watch for 60 s. Every viewer
// plays without a stall (the media it received never falls a segment
// behind the wall time), the origin sends at most 2 copies of the stream
// in all (its own counter, playlists included) while the proxies send the
// rest to each other, each proxy's status and metrics count what its
// viewer received, and a new segment is in a proxy's playlist at most one
// segment duration after it is in the origin's.
func TestLiveCrowd(t *testing.T) {
	ffmpeg := testtool.Require(t, "ffmpeg")
	const (
		segment = 2 * time.Second
		video   = 300 // kbit/s
		bitrate = (video + 90) * 1000 / 8
		watch   = 60 * time.Second
	)
	c := start(t, demo.Config{Proxies: 5, RateLimit: bitrate * 3 / 2})
	ctx, cancel := context.WithTimeout(t.Context(), watch+30*time.Second)
	defer cancel()
	encode(ctx, t, ffmpeg, c.Media, watch+20*time.Second, cbrArgs(video)...)

	var viewers []*liveViewer
	for _, p := range c.Proxies {
		viewers = append(viewers, newLiveViewer(t, p, c.Media, nil))
	}
	// The event is on the air before its audience comes: a window of
	// segments is registered.
	waitSegments(t, viewers[0], 4)
	edge := make(chan edgeDelays, 1)
	go func() { edge <- measureEdge(ctx, c.Media, c.Proxies[0], watch) }()
	elapsed := watchLive(ctx, t, viewers, watch)

	var stream int64 // one copy of the stream: what the viewer that got most received
	for _, v := range viewers {
		stream = max(stream, v.bytes)
		t.Logf("%s: %.1f s of media (%d bytes) in %v, at most %v behind the wall clock, %d segment(s) behind the origin's playlist",
			v.proxy.Name, v.received, v.bytes, elapsed.Round(time.Millisecond), v.behind.Round(time.Millisecond), v.maxLag)
		if v.behind > segment {
			t.Errorf("%s stalled: its media fell %v behind the wall clock", v.proxy.Name, v.behind.Round(time.Millisecond))
		}
		if v.received < (watch - 2*segment).Seconds() {
			t.Errorf("%s received %.1f s of media in %v", v.proxy.Name, v.received, elapsed)
		}
	}
	var peer, origin, cache, uploaded int64
	var torrents, conns int // segments in the proxies' status and their peer connections, over all proxies
	open := 0               // torrents open, over all proxies
	for _, v := range viewers {
		st := status(t, v.proxy)
		for _, f := range st.Files {
			if strings.HasSuffix(f.Path, ".ts") {
				uploaded += f.UploadedBytes
				torrents++
				conns += f.Peers
			}
		}
		// A torrent per segment, but not for ever: those long out of the
		// window (15 segment durations) are closed.
		if st.Torrents > maxLiveTorrents {
			t.Errorf("%s: %d torrents open after %d segments, want at most %d", v.proxy.Name, st.Torrents, viewers[0].next, maxLiveTorrents)
		}
		open += st.Torrents
		i := slices.IndexFunc(st.Streams, func(s statusStream) bool { return s.Stream == "live" })
		if i < 0 {
			t.Errorf("%s: no stream \"live\" in its status: %+v", v.proxy.Name, st.Streams)
			continue
		}
		ls := st.Streams[i]
		t.Logf("%s: stream status %+v", v.proxy.Name, ls)
		peer, origin, cache = peer+ls.PeerBytes, origin+ls.OriginBytes, cache+ls.CacheBytes
		if got := ls.PeerBytes + ls.OriginBytes + ls.CacheBytes; got != v.bytes || ls.Viewers < 1 || ls.Segments == 0 {
			t.Errorf("%s: the stream's status counts %d bytes of %d segments for %d viewers; its viewer received %d bytes", v.proxy.Name, got, ls.Segments, ls.Viewers, v.bytes)
		}
		if m := counter(t, v.proxy, "p2sp_proxy_stream_bytes_total"); int64(m) != v.bytes {
			t.Errorf("%s: p2sp_proxy_stream_bytes_total %.0f, its viewer received %d bytes", v.proxy.Name, m, v.bytes)
		}
	}
	copies := counter(t, c.Origin, "p2sp_origin_sent_bytes_total") / float64(stream)
	rate := float64(stream) / viewers[0].received // bytes per second of media
	t.Logf("stream %.0f bit/s (origin capped at %.2fx); segment bytes served: %d from cache, %d from peers, %d from the origin; the proxies uploaded %d to each other; the origin sent %.2f copies of the stream",
		rate*8, bitrate*1.5/rate, cache, peer, origin, uploaded, copies)
	if bitrate*1.5 > rate*1.6 {
		t.Errorf("the origin's cap was %.2fx the stream's bitrate, not 1.5x: the test's bitrate is off", bitrate*1.5/rate)
	}
	if copies > 2 {
		t.Errorf("the origin sent %.2f copies of the stream to five proxies, want at most 2", copies)
	}
	if uploaded == 0 || peer == 0 {
		t.Errorf("the proxies sent each other %d segment bytes, served %d from peers", uploaded, peer)
	}
	// The cost of a torrent per segment (the README's decision).
	announces := counter(t, c.Tracker, "p2sp_tracker_announces_total")
	segments := viewers[0].next - viewers[0].startSeq
	t.Logf("torrent per segment: %d segments watched, %.0f announces (%.1f per segment and proxy), %d segments on the proxies with %d peer connections (%d each way: %.1f per segment and proxy), %d torrents still open (%.1f per proxy)",
		segments, announces, announces/float64(segments*len(viewers)), torrents, conns, conns/2, float64(conns)/float64(torrents), open, float64(open)/float64(len(viewers)))
	e := <-edge
	t.Logf("live edge: %d new segments; a proxy's playlist named each %v after the origin's at most (median %v)", e.n, e.max.Round(time.Millisecond), e.median.Round(time.Millisecond))
	if e.n < 10 || e.max > segment {
		t.Errorf("live edge delay the proxy adds: %d segments seen, at most %v, want at most %v", e.n, e.max, segment)
	}
}

// cbrArgs encode a constant-bitrate stream in 2 s segments: video kbit/s
// of video, 48 of audio, cbrBytes(video) bytes a second in all as MPEG-TS.
func cbrArgs(video int) []string {
	v := strconv.Itoa(video) + "k"
	return []string{"-g", "50", "-hls_time", "2",
		"-b:v", v, "-minrate", v, "-maxrate", v, "-bufsize", strconv.Itoa(video/2) + "k", "-x264-params", "nal-hrd=cbr", "-b:a", "48k"}
}

// cbrBytes is the bytes a second of cbrArgs(video): 390 kbit/s in all
// for 300 of video.
func cbrBytes(video int) int64 { return int64(video+90) * 1000 / 8 }

// maxLiveTorrents bounds a proxy's open torrents during a live event of 2 s
// segments: those registered in the last 15 segment durations (the
// proxy's retireSegments), the playlist's window of five, two more.
const maxLiveTorrents = 15 + 5 + 2

// edgeDelays is how much later new segments appeared in a proxy's playlist
// than in the origin's.
type edgeDelays struct {
	n           int
	max, median time.Duration
}

// measureEdge polls, every 50 ms for watch, the origin's playlist where a
// player reading the origin directly sees it first (the file the origin
// serves) and the same playlist through the proxy p, and compares when
// each new segment appeared in each.
func measureEdge(ctx context.Context, media string, p *demo.Service, watch time.Duration) edgeDelays {
	client := &http.Client{Timeout: 5 * time.Second}
	atOrigin, atProxy := map[int]time.Time{}, map[int]time.Time{}
	first := -1
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(watch); time.Now().Before(end); {
		if b, err := os.ReadFile(filepath.Join(media, "live", "index.m3u8")); err == nil {
			if pl, err := parsePlaylist(b); err == nil {
				if _, ok := atOrigin[pl.last()]; !ok {
					atOrigin[pl.last()] = time.Now()
				}
				if first < 0 {
					first = pl.last()
				}
			}
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, streamURL(p, "live/index.m3u8"), nil)
		if err != nil {
			break
		}
		if resp, err := client.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if pl, err := parsePlaylist(b); err == nil {
				if _, ok := atProxy[pl.last()]; !ok {
					atProxy[pl.last()] = time.Now()
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	var ds []time.Duration
	for seq, o := range atOrigin {
		if px, ok := atProxy[seq]; ok && seq > first {
			ds = append(ds, max(0, px.Sub(o)))
		}
	}
	slices.Sort(ds)
	if len(ds) == 0 {
		return edgeDelays{}
	}
	return edgeDelays{n: len(ds), max: ds[len(ds)-1], median: ds[len(ds)/2]}
}
