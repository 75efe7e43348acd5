package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/testtool"
)

// TestOriginFailover: a proxy of two origins (processes on one media
// directory, each with its own signing key) keeps a player's one response
// going, byte-identical, when the origin serving it is killed (SIGKILL)
// mid-file: the rest comes from the other origin. The proxy pins both
// origins' keys on first use, and the tracker's .torrent lists both
// origins as web seeds.
func TestOriginFailover(t *testing.T) {
	const (
		path = "multi/film.bin"
		size = 6<<20 + 321
		// The origins' rates: the file takes seconds, so the kill lands
		// mid-file; A's bodies take long, so it lands mid-body.
		rateA, rateB = 500_000, 3_000_000
	)
	bin := buildP2SP(t)
	env := []string{"P2SP_TOKEN=multi-origin-test-token"}
	tr := startProc(t, bin, "tracker", loopbackAddr(t), env, "--data-dir", t.TempDir(), "--log-level", "warn")
	media := t.TempDir()
	data := writeFile(t, media, path, size)
	addrA, addrB := loopbackAddr(t), loopbackAddr(t)
	originArgs := func(mirror string, rate int) []string {
		return []string{"--media", media, "--tracker", tr.URL, "--data-dir", t.TempDir(), "--mirror", "http://" + mirror,
			"--scan-interval", "200ms", "--rate-limit", strconv.Itoa(rate), "--log-level", "warn"}
	}
	oA := startProc(t, bin, "origin", addrA, env, originArgs(addrB, rateA)...)
	oB := startProc(t, bin, "origin", addrB, env, originArgs(addrA, rateB)...)
	waitInfoAt(t, tr.URL, "", path, "")

	// The .torrent names both origins, whichever registered last.
	seeds := slices.Sorted(slices.Values(torrentAt(t, tr.URL, path).UrlList))
	if want := slices.Sorted(slices.Values([]string{fileinfo.FileURL(oA.URL, path), fileinfo.FileURL(oB.URL, path)})); !slices.Equal(seeds, want) {
		t.Errorf(".torrent url-list %q, want %q", seeds, want)
	}

	// No --origin-key: each origin's key is pinned on first use.
	px := startProxyProc(t, bin, loopbackAddr(t), "--tracker", tr.URL, "--origin", oA.URL+","+oB.URL,
		"--cache-dir", t.TempDir(), "--bt-listen", "127.0.0.1:0", "--log-level", "warn")
	// The first request goes to the first origin listed, A, which takes
	// half a second for its 256 KiB: kill A while it sends them, with most
	// of the file still to come.
	const sent = "p2sp_origin_sent_bytes_total"
	var sentB float64
	got := readAcross(t, px.URL+"/stream/"+fileinfo.EscapePath(path), 64<<10, func() {
		atKill := fileStatusAt(t, px.URL, path)
		oA.kill()
		fetched := metricAt(t, px.URL, "p2sp_proxy_origin_fetched_bytes_total")
		sentB = metricAt(t, oB.URL, sent)
		t.Logf("at the kill: the proxy had fetched %s, %s of it from B; it held %d of %d pieces", mib(fetched), mib(sentB), atKill.PiecesHeld, atKill.PiecesTotal)
		if atKill.Complete || fetched > size/2 {
			t.Fatalf("the kill did not land mid-file: the proxy had fetched %v bytes, complete %v", fetched, atKill.Complete)
		}
	})
	if !bytes.Equal(got, data) {
		t.Fatalf("%d bytes, differing from the file's %d", len(got), len(data))
	}
	if after := metricAt(t, oB.URL, sent); after-sentB < size/4 {
		t.Errorf("origin B sent %s after A was killed; want the rest of the file", mib(after-sentB))
	}
	// A body under way from A went on from B, within its request.
	if n := metricAt(t, px.URL, `p2sp_proxy_origin_failovers_total{kind="body"}`); n < 1 {
		t.Errorf("%v origin bodies went on from another origin; want at least the one A was sending", n)
	}
	f := fileStatusAt(t, px.URL, path)
	if f.VerifyFailures != 0 || f.RefusedInfo != "" {
		t.Errorf("proxy status: %d verification failures, refused info %q", f.VerifyFailures, f.RefusedInfo)
	}
	if keys := statusKeys(t, px.URL); len(keys) != 2 {
		t.Errorf("the proxy pinned %d origin keys, want both origins'", len(keys))
	}
}

// TestTrackerFailover: a proxy of two trackers (replicas on one Redis,
// each naming the other in its .torrent announce-list) keeps its stream
// going when the tracker it asked is killed (SIGKILL), and a proxy that
// starts after that, with the dead tracker listed first, finds the file
// and its peers through the other.
func TestTrackerFailover(t *testing.T) {
	const (
		path = "multi/tracked.bin"
		size = 6<<20 + 99
	)
	store := testtool.StartRedis(t)
	bin := buildP2SP(t)
	const token = "multi-tracker-test-token"
	env := []string{"P2SP_TOKEN=" + token}
	addrA, addrB := loopbackAddr(t), loopbackAddr(t)
	trA := startProc(t, bin, "tracker", addrA, env, "--store", store, "--announce-list", "http://"+addrB, "--log-level", "warn")
	trB := startProc(t, bin, "tracker", addrB, env, "--store", store, "--announce-list", "http://"+addrA, "--log-level", "warn")
	media := t.TempDir()
	data := writeFile(t, media, path, size)
	origin := startProc(t, bin, "origin", loopbackAddr(t), env, "--media", media, "--tracker", trA.URL,
		"--scan-interval", "200ms", "--rate-limit", "2000000", "--log-level", "warn")
	waitInfoAt(t, trB.URL, "", path, "")

	want := metainfo.AnnounceList{{trB.URL + "/announce", trA.URL + "/announce"}}
	if got := torrentAt(t, trB.URL, path).AnnounceList; !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf(".torrent announce-list %q, want %q", got, want)
	}

	trackers := trA.URL + "," + trB.URL
	proxyArgs := func(btPort int) []string {
		// Issued by one replica, honoured by both.
		return append(passkeyArgs(t, trB.URL, token, "multi"), "--tracker", trackers, "--origin", origin.URL,
			"--cache-dir", t.TempDir(), "--bt-listen", "127.0.0.1:"+strconv.Itoa(btPort), "--log-level", "warn")
	}
	bt1 := freePort(t)
	p1 := startProxyProc(t, bin, loopbackAddr(t), proxyArgs(bt1)...)
	got := readAcross(t, p1.URL+"/stream/"+fileinfo.EscapePath(path), 1<<20, func() {
		trA.kill()
		if fileStatusAt(t, p1.URL, path).Complete {
			t.Fatal("the first proxy held the whole file before the tracker was killed")
		}
	})
	if !bytes.Equal(got, data) {
		t.Fatalf("first proxy: %d bytes, differing from the file's %d", len(got), len(data))
	}
	waitCompleteAt(t, p1.URL, path)
	// p1 goes on announcing, to B.
	waitAnnounced(t, trB.URL, token, path, bt1, 10*time.Second)

	// A proxy started now asks the dead A first, then B, which names p1.
	p2 := startProxyProc(t, bin, loopbackAddr(t), proxyArgs(freePort(t))...)
	if got := mustGet(t, p2.URL+"/stream/"+fileinfo.EscapePath(path), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("second proxy: bytes differ")
	}
	f := fileStatusAt(t, p2.URL, path)
	t.Logf("second proxy: peer %s, origin %s", mib(float64(f.PeerBytes)), mib(float64(f.OriginBytes)))
	if f.PeerBytes < size/2 {
		t.Errorf("second proxy took %d of %d bytes from the peer tracker B named; want most", f.PeerBytes, size)
	}
}

// torrentAt fetches path's .torrent from the tracker at base.
func torrentAt(t *testing.T, base, path string) *metainfo.MetaInfo {
	t.Helper()
	mi, err := metainfo.Load(bytes.NewReader(mustGet(t, base+"/v1/torrents/"+fileinfo.EscapePath(path), "", http.StatusOK)))
	if err != nil {
		t.Fatalf("%s: .torrent of %s: %v", base, path, err)
	}
	return mi
}

// readAcross reads url's body in one response, calling during once its
// first head bytes have come, and fails the test if the response breaks.
func readAcross(t *testing.T, url string, head int, during func()) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got := make([]byte, head)
	if _, err := io.ReadFull(resp.Body, got); err != nil {
		t.Fatalf("%s: first %d bytes: %v", url, head, err)
	}
	during()
	rest, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s: the response broke %d bytes after the first %d: %v", url, len(rest), head, err)
	}
	return append(got, rest...)
}

// metricAt sums a metric's samples (every label set) on the /metrics page
// at base.
func metricAt(t *testing.T, base, name string) float64 {
	t.Helper()
	body := mustGet(t, base+"/metrics", "", http.StatusOK)
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			t.Fatalf("%s: metric line %q: %v", base, line, err)
		}
		sum += v
	}
	return sum
}

// statusKeys are the origin keys the proxy at base trusts.
func statusKeys(t *testing.T, base string) []string {
	t.Helper()
	var st struct {
		Keys []string `json:"origin_keys"`
	}
	if err := json.Unmarshal(mustGet(t, base+"/v1/status", "", http.StatusOK), &st); err != nil {
		t.Fatal(err)
	}
	return st.Keys
}
