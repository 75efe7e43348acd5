package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/testtool"
)

// TestLiveSegmentRewritten: while ffmpeg encodes a live stream, a segment
// is rewritten in place on the origin with other bytes: of the same
// length while a proxy fetching it from the origin (capped at 1.5 times
// the stream's bitrate, so a fetch takes most of a segment duration)
// serves its viewer the last piece as it comes; longer, while it serves
// the first; and of the same length once a proxy held the old version
// whole. The other proxy takes each from its peers, the old version's
// swarm, or the new one's. Each viewer, retrying a failed segment as a
// player does, gets exactly one version the origin held (SHA-256, full
// length) or a clean error (an HTTP error, a body short of its
// Content-Length), never a mixture; and the stream plays on after it.
func TestLiveSegmentRewritten(t *testing.T) {
	testLiveSegmentChanges(t, []segmentChange{
		{name: "rewritten, same length", at: inLastPiece, content: flipped, write: rewriteInPlace},
		{name: "rewritten, longer", at: inFirstPiece, content: func(old []byte) []byte {
			b := flipped(old)
			return append(b, b[:len(b)/188/2*188]...)
		}, write: rewriteInPlace},
		{name: "rewritten once held whole", at: heldWhole, content: flipped, write: rewriteInPlace},
	})
}

// TestLiveSegmentTruncated is TestLiveSegmentRewritten with the segment
// truncated in place to half its length (mid-packet): while the proxies
// fetch its last piece, its first one, and after a proxy held it whole.
func TestLiveSegmentTruncated(t *testing.T) {
	half := func(old []byte) []byte { return old[:len(old)/2] }
	truncate := func(p string, b []byte) error { return os.Truncate(p, int64(len(b))) }
	testLiveSegmentChanges(t, []segmentChange{
		{name: "truncated", at: inLastPiece, content: half, write: truncate},
		{name: "truncated", at: inFirstPiece, content: half, write: truncate},
		{name: "truncated once held whole", at: heldWhole, content: half, write: truncate},
	})
}

// segmentChange is one change a test makes to a live segment on the origin.
type segmentChange struct {
	name string
	at   changeMoment
	// content is the new version; write puts it in the file at p.
	content func(old []byte) []byte
	write   func(p string, b []byte) error
}

// changeMoment is when a change is made to a segment.
type changeMoment int

const (
	// inFirstPiece: a viewer is being served the segment's first bytes
	// as they come from the origin.
	inFirstPiece changeMoment = iota
	// inLastPiece: a viewer is being served the segment as it comes from
	// the origin, every piece but the last verified: the origin reads
	// the rest after the change, so only the last piece mixes versions.
	inLastPiece
	// heldWhole: a proxy holds the segment whole.
	heldWhole
)

// flipped is another version of a segment of the same length: every byte
// but the packets' sync bytes inverted.
func flipped(old []byte) []byte {
	b := bytes.Clone(old)
	for i := range b {
		if i%188 != 0 {
			b[i] ^= 0xff
		}
	}
	return b
}

// rewriteInPlace writes b over the file p, truncating it first, as a tool
// rewriting a file does: the same inode, so that reads of it the origin
// has under way see the new bytes.
func rewriteInPlace(p string, b []byte) error { return os.WriteFile(p, b, 0o644) }

// testLiveSegmentChanges makes changes to live segments, three segments
// apart, while a viewer on each of two proxies watches from the live edge,
// and checks what the viewers got.
func testLiveSegmentChanges(t *testing.T, changes []segmentChange) {
	ffmpeg := testtool.Require(t, "ffmpeg")
	// Segments of about 300 KB: the origin, capped at 1.5 times the
	// bitrate, reads each in ten 32 KiB chunks over more than a second,
	// so that a change lands between its reads.
	const (
		segment = 2 * time.Second
		video   = 1200 // kbit/s
	)
	c := start(t, demo.Config{Proxies: 2, RateLimit: cbrBytes(video) * 3 / 2})
	watch := time.Duration(6+4*len(changes)) * segment
	ctx, cancel := context.WithTimeout(t.Context(), watch+30*time.Second)
	defer cancel()
	encode(ctx, t, ffmpeg, c.Media, watch+20*time.Second, cbrArgs(video)...)

	sv := &segmentVersions{media: c.Media, sums: map[string]map[[sha256.Size]byte]string{}, got: map[viewerSegment][]string{}}
	first := newLiveViewer(t, c.Proxies[0], c.Media, nil)
	// Both at the edge: whichever proxy fetches a segment from the origin
	// serves it to its viewer as it comes, the other takes it from peers.
	second := newLiveViewer(t, c.Proxies[1], c.Media, nil)
	viewers := []*liveViewer{first, second}
	for _, v := range viewers {
		v.versions = sv
	}
	waitSegments(t, first, 4)
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchLive(ctx, t, viewers, watch)
	}()
	defer func() {
		cancel()
		<-done
	}()

	type madeChange struct {
		seq  int
		p    string
		name string
	}
	var made []madeChange
	// From the segment after the newest: the viewers are at the edge by
	// then, asking for each segment as it comes.
	last, err := first.originLast()
	if err != nil {
		t.Fatal(err)
	}
	next := last + 1
	for _, ch := range changes {
		for try := 1; ; try++ {
			seq, uri := nextSegment(t, first, next)
			next = seq + 1
			p := path.Join("live", uri)
			old, err := os.ReadFile(filepath.Join(c.Media, filepath.FromSlash(p)))
			if err != nil {
				t.Fatal(err)
			}
			sv.watch(p, old)
			state, ok := waitFetching(t, c.Proxies, p, ch.at)
			if !ok {
				// No viewer was served it at that moment: the next one.
				t.Logf("%s: missed the moment to change it (%s)", p, state)
				if try == 8 {
					t.Fatalf("in 8 segments, no viewer was being served one at the moment to change it")
				}
				continue
			}
			sv.change(t, p, old, ch)
			t.Logf("%s (%d bytes) %s, to %d bytes, while %s", p, len(old), ch.name, len(ch.content(old)), state)
			made = append(made, madeChange{seq, p, ch.name})
			next = seq + 3
			break
		}
	}
	<-done

	for _, m := range made {
		for _, v := range viewers {
			outcomes := sv.outcomes(v, m.p)
			t.Logf("%s, %s: %s", m.p, v.proxy.Name, strings.Join(outcomes, "; "))
			if !v.has(m.seq) {
				t.Errorf("%s never got %s (%s) whole: %v", v.proxy.Name, m.p, m.name, outcomes)
			}
		}
	}
	// The stream plays on: segments after the last change arrive whole.
	last = made[len(made)-1].seq
	for _, v := range viewers {
		if v.next-1 < last+2 {
			t.Errorf("%s got segments up to %d only, the last change was to %d", v.proxy.Name, v.next-1, last)
		}
	}
	if n := sv.unchangedErrors(); n > 0 {
		t.Errorf("%d fetches of segments that never changed failed", n)
	}
}

// waitSegments waits until the origin's playlist names segment n-1: the
// event is on the air, a window of segments registered.
func waitSegments(t *testing.T, v *liveViewer, n int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if last, err := v.originLast(); err == nil && last >= n-1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ffmpeg wrote no %d segments in 20 s", n)
		}
	}
}

// nextSegment waits for the origin's playlist to name a segment numbered
// at least from and returns the newest one it names: the file is whole
// (ffmpeg renames it into place before it lists it).
func nextSegment(t *testing.T, v *liveViewer, from int) (int, string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(v.media, "live", "index.m3u8"))
		if err == nil {
			if pl, err := parsePlaylist(b); err == nil && len(pl.uris) > 0 && pl.last() >= from {
				return pl.last(), pl.uris[len(pl.uris)-1]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the origin's playlist named no segment %d in 20 s", from)
		}
	}
}

// waitFetching waits for the moment at to change segment p and says what
// the proxies held and served of it then; ok is false when the moment
// passed (a proxy held it whole first).
func waitFetching(t *testing.T, proxies []*demo.Service, p string, at changeMoment) (state string, ok bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		var states []string
		held, now := false, false
		for _, px := range proxies {
			for _, f := range status(t, px).Files {
				if f.Path != p {
					continue
				}
				state := fmt.Sprintf("%d of %d pieces", f.PiecesHeld, f.PiecesTotal)
				if f.Complete {
					state = "whole"
				}
				states = append(states, fmt.Sprintf("%s held %s (%d bytes from the origin so far, %d served)",
					px.Name, state, f.OriginFetched, f.OriginBytes+f.PeerBytes+f.CacheBytes))
				held = held || f.Complete
				serving := !f.Complete && f.OriginBytes > 0
				switch at {
				case inFirstPiece:
					now = now || serving && f.PiecesHeld == 0
				case inLastPiece:
					now = now || serving && f.PiecesHeld == f.PiecesTotal-1
				case heldWhole:
					now = now || f.Complete
				}
			}
		}
		state = strings.Join(states, ", ")
		switch {
		case now:
			return state, true
		case held:
			return state, false
		case time.Now().After(deadline):
			t.Fatalf("no proxy fetched %s within 10 s: %v", p, states)
		}
	}
}

// segmentVersions is what the origin held of the live segments a test
// changes under its viewers (the SHA-256 of each version), and what each
// viewer got of every segment, try by try. A segment never changed must
// be exactly its file in the origin's media.
type segmentVersions struct {
	media string

	mu   sync.Mutex
	sums map[string]map[[sha256.Size]byte]string // by segment path: version names by SHA-256
	got  map[viewerSegment][]string              // each try's outcome
}

// viewerSegment is a viewer's proxy and a segment's path.
type viewerSegment struct{ proxy, path string }

// A player retries a failed segment (hls.js: a few times, a second or so
// apart) before it gives up on it.
const (
	segmentTries = 8
	segmentRetry = 500 * time.Millisecond
)

// watch takes the segment p, whose version is old, as one that changes.
func (sv *segmentVersions) watch(p string, old []byte) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.sums[p] = map[[sha256.Size]byte]string{sha256.Sum256(old): "original"}
}

// change gives the watched segment p, whose version was old, its new
// version, known before the file changes: a viewer vetting a segment
// meanwhile waits, then knows both.
func (sv *segmentVersions) change(t *testing.T, p string, old []byte, ch segmentChange) {
	t.Helper()
	b := ch.content(old)
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sv.sums[p][sha256.Sum256(b)] = ch.name
	if err := ch.write(filepath.Join(sv.media, filepath.FromSlash(p)), b); err != nil {
		t.Fatal(err)
	}
}

// fetch fetches segment p for v as a player does, retrying a clean error
// (an HTTP error, a body short of its Content-Length); a body that is no
// version the origin held is never acceptable.
func (sv *segmentVersions) fetch(ctx context.Context, v *liveViewer, p string) ([]byte, error) {
	for try := 1; ; try++ {
		seg, err := v.fetch(ctx, p)
		if err == nil {
			name, err := sv.vet(p, seg)
			if err != nil {
				return nil, err
			}
			sv.record(v, p, fmt.Sprintf("%s (%d bytes)", name, len(seg)))
			return seg, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		msg := err.Error()
		if len(msg) > 160 {
			msg = msg[:160] + "..."
		}
		sv.record(v, p, "error: "+msg)
		if try == segmentTries {
			if sv.gone(p) {
				// Out of the encoder's window before this viewer (slow, on
				// a loaded machine) came to it: a player skips it too.
				sv.record(v, p, "skipped: gone from the origin")
				return nil, errSkipped
			}
			return nil, fmt.Errorf("segment %s failed %d times: %w", p, try, err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(segmentRetry):
		}
	}
}

// errSkipped: the viewer gave up on a segment the encoder deleted.
var errSkipped = errors.New("segment skipped")

// gone reports whether the segment p, never changed, is no longer on the
// origin.
func (sv *segmentVersions) gone(p string) bool {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	_, err := os.Stat(filepath.Join(sv.media, filepath.FromSlash(p)))
	return len(sv.sums[p]) <= 1 && errors.Is(err, fs.ErrNotExist)
}

// vet names the version seg is of segment p, or says why it is none.
func (sv *segmentVersions) vet(p string, seg []byte) (string, error) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	sum := sha256.Sum256(seg)
	if versions, ok := sv.sums[p]; ok {
		if name, ok := versions[sum]; ok {
			return name, nil
		}
		return "", fmt.Errorf("segment %s: %d bytes through the proxy (SHA-256 %x...) are no version the origin held: mixed or short", p, len(seg), sum[:8])
	}
	disk, err := os.ReadFile(filepath.Join(sv.media, filepath.FromSlash(p)))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// The encoder deleted it since (out of its window).
		return "unchanged", wholeTS(p, seg)
	case err != nil:
		return "", err
	case !bytes.Equal(seg, disk):
		return "", fmt.Errorf("segment %s: %d bytes through the proxy differ from the %d on the origin", p, len(seg), len(disk))
	}
	return "unchanged", nil
}

func (sv *segmentVersions) record(v *liveViewer, p, outcome string) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	k := viewerSegment{v.proxy.Name, p}
	sv.got[k] = append(sv.got[k], outcome)
}

// outcomes are v's tries of segment p.
func (sv *segmentVersions) outcomes(v *liveViewer, p string) []string {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	return slices.Clone(sv.got[viewerSegment{v.proxy.Name, p}])
}

// unchangedErrors counts the failed fetches of segments never changed.
func (sv *segmentVersions) unchangedErrors() int {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	n := 0
	for k, outcomes := range sv.got {
		if len(sv.sums[k.path]) > 1 {
			continue
		}
		if slices.Contains(outcomes, "skipped: gone from the origin") {
			continue // the encoder deleted it: its fetches failed rightly
		}
		for _, o := range outcomes {
			if strings.HasPrefix(o, "error: ") {
				n++
			}
		}
	}
	return n
}
