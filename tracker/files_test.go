package tracker

import (
	"bytes"
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/metrics"
)

func TestRegisterAndGet(t *testing.T) {
	tr := startTracker(t, Config{})
	good, _ := testFile(t, "films/a b.mp4", 600<<10)

	badHash := *good
	badHash.InfoHash = strings.Repeat("ab", 20)
	badPieces := *good
	badPieces.Pieces = good.Pieces[:20]
	badPath := *good
	badPath.Path = "films/../../etc/passwd"
	badOrigin := *good
	badOrigin.Origins = []string{"file:///etc"}

	for _, tc := range []struct {
		name   string
		token  string
		body   any
		status int
	}{
		{"no token", "", good, http.StatusUnauthorized},
		{"wrong token", "guess", good, http.StatusUnauthorized},
		{"not json", testToken, "{", http.StatusBadRequest},
		{"wrong infohash", testToken, &badHash, http.StatusBadRequest},
		{"pieces for the wrong size", testToken, &badPieces, http.StatusBadRequest},
		{"path escapes", testToken, &badPath, http.StatusBadRequest},
		{"origin not http", testToken, &badOrigin, http.StatusBadRequest},
		{"too large", testToken, bytes.Repeat([]byte(" "), maxInfoBody+1), http.StatusRequestEntityTooLarge},
		{"good", testToken, good, http.StatusCreated},
		{"again", testToken, good, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, b := do(t, "POST", tr.URL+"/v1/files", tc.token, tc.body)
			if st != tc.status {
				t.Fatalf("status %d, want %d: %s", st, tc.status, b)
			}
		})
	}

	for _, tc := range []struct {
		name   string
		path   string
		status int
	}{
		{"registered", "/v1/files/films/a%20b.mp4", http.StatusOK},
		{"unknown", "/v1/files/films/nope.mp4", http.StatusNotFound},
		{"empty", "/v1/files/", http.StatusBadRequest},
		{"dotdot", "/v1/files/films/../films/a%20b.mp4", http.StatusBadRequest},
		{"escaped dotdot", "/v1/files/%2e%2e/etc/passwd", http.StatusBadRequest},
		{"double slash", "/v1/files/films//a%20b.mp4", http.StatusBadRequest},
		{"backslash", "/v1/files/films%5Ca.mp4", http.StatusBadRequest},
		{"torrent unknown", "/v1/torrents/nope.mp4", http.StatusNotFound},
		{"torrent dotdot", "/v1/torrents/a/../b", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, b := getRaw(t, tr.URL+tc.path)
			if st != tc.status {
				t.Fatalf("GET %s: status %d, want %d: %s", tc.path, st, tc.status, b)
			}
			if st == http.StatusOK {
				var got fileinfo.Info
				if err := json.Unmarshal(b, &got); err != nil {
					t.Fatal(err)
				}
				if !got.Equal(good) || got.InfoHash != good.InfoHash || got.Path != good.Path ||
					got.ETag != good.ETag || !got.ModTime.Equal(good.ModTime) || len(got.Origins) != 2 {
					t.Fatalf("got %+v, want %+v", got, good)
				}
			} else if !json.Valid(b) {
				t.Fatalf("error body is not JSON: %s", b)
			}
		})
	}

	if st, b := do(t, "GET", tr.URL+"/v1/files", "", nil); st != http.StatusUnauthorized {
		t.Fatalf("list without the token: %d %s", st, b)
	}
	st, b := do(t, "GET", tr.URL+"/v1/files", testToken, nil)
	var all []fileinfo.Info
	if err := json.Unmarshal(b, &all); st != http.StatusOK || err != nil || len(all) != 1 || all[0].Path != good.Path {
		t.Fatalf("list: %d %v %s", st, err, b)
	}
}

// getRaw GETs a URL whose path must reach the server exactly as written.
func getRaw(t *testing.T, rawURL string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Opaque keeps the client from normalising the path's escapes.
	req.URL.Opaque = "/" + strings.SplitN(strings.TrimPrefix(rawURL, "http://"), "/", 2)[1]
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	return resp.StatusCode, buf.Bytes()
}

func TestTorrent(t *testing.T) {
	for _, tc := range []struct {
		name      string
		publicURL string
		size      int64
		announce  func(base string) string
		others    []string // AnnounceList
		// tiers is the announce-list wanted; nil: none
		tiers func(base string) [][]string
	}{
		{"host-derived, partial last piece", "", 700<<10 + 123, func(base string) string { return base + "/announce" }, nil, nil},
		{"public URL, one piece", "http://tracker.example:7070/", 1000, func(string) string { return "http://tracker.example:7070/announce" }, nil, nil},
		{"exact pieces", "", 512 << 10, func(base string) string { return base + "/announce" }, nil, nil},
		{"replicas in the announce-list", "http://tracker-a.test:7070", 1000, func(string) string { return "http://tracker-a.test:7070/announce" },
			[]string{"http://tracker-b.test:7070/", "http://tracker-c.test:7070"}, func(string) [][]string {
				return [][]string{{"http://tracker-a.test:7070/announce", "http://tracker-b.test:7070/announce", "http://tracker-c.test:7070/announce"}}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := startTracker(t, Config{PublicURL: tc.publicURL, AnnounceList: tc.others})
			fi, data := testFile(t, "music/set 1/track#1.flac", tc.size)
			mustRegister(t, tr, fi)

			resp, err := http.Get(tr.URL + "/v1/torrents/" + fileinfo.EscapePath(fi.Path))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-bittorrent" {
				t.Fatalf("status %d, content-type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			mi, err := metainfo.Load(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if want := tc.announce(tr.URL); mi.Announce != want {
				t.Errorf("announce %q, want %q", mi.Announce, want)
			}
			var tiers [][]string
			if tc.tiers != nil {
				tiers = tc.tiers(tr.URL)
			}
			if !slices.EqualFunc(mi.AnnounceList, tiers, slices.Equal) {
				t.Errorf("announce-list %q, want %q", mi.AnnounceList, tiers)
			}
			wantSeeds := []string{
				"http://origin-a.test:8080/files/music/set%201/track%231.flac",
				"http://origin-b.test:8080/files/music/set%201/track%231.flac",
			}
			if len(mi.UrlList) != len(wantSeeds) || mi.UrlList[0] != wantSeeds[0] || mi.UrlList[1] != wantSeeds[1] {
				t.Errorf("url-list %q, want %q", mi.UrlList, wantSeeds)
			}
			if got := mi.HashInfoBytes().HexString(); got != fi.InfoHash {
				t.Errorf("infohash %s, want %s", got, fi.InfoHash)
			}
			info, err := mi.UnmarshalInfo()
			if err != nil {
				t.Fatal(err)
			}
			if info.Name != "track#1.flac" || info.Length != tc.size {
				t.Errorf("name %q length %d", info.Name, info.Length)
			}
			// Every piece hash must match the file's actual bytes.
			n := 0
			for off := int64(0); off < tc.size; off += info.PieceLength {
				h := sha1.Sum(data[off:min(off+info.PieceLength, tc.size)])
				if !bytes.Equal(info.Pieces[n*20:n*20+20], h[:]) {
					t.Errorf("piece %d hash differs from the file's", n)
				}
				n++
			}
			if len(info.Pieces) != n*20 {
				t.Errorf("%d bytes of piece hashes for %d pieces", len(info.Pieces), n)
			}
		})
	}
}

func TestRegistrySurvivesRestart(t *testing.T) {
	// The same metrics registry too, as in a process that restarts its
	// tracker.
	dir, reg := t.TempDir(), metrics.NewRegistry()
	tr := startTracker(t, Config{DataDir: dir, Registry: reg})
	fi, _ := testFile(t, "a.mp4", 300<<10)
	mustRegister(t, tr, fi)
	tr.stop()

	tr = startTracker(t, Config{DataDir: dir, Registry: reg})
	waitMetric(t, tr, "p2sp_tracker_torrents 1", time.Second)
	st, b := do(t, "GET", tr.URL+"/v1/files/a.mp4", "", nil)
	var got fileinfo.Info
	if err := json.Unmarshal(b, &got); st != http.StatusOK || err != nil || !got.Equal(fi) {
		t.Fatalf("after restart: %d %v %s", st, err, b)
	}
	// The swarm is back too: announces for the file are accepted.
	if r := announce(t, tr, fi.InfoHash, "peer-a", 6881, "event=started&left=0"); r.Failure != "" {
		t.Fatalf("announce after restart: %s", r.Failure)
	}
}

// TestReregister checks that a changed file moves its path to a new swarm,
// dropping the old one's peers, while a path sharing the old bytes keeps
// the old swarm alive.
func TestReregister(t *testing.T) {
	tr := startTracker(t, Config{})
	v1, data := testFile(t, "x/clip.mp4", 200<<10)
	mustRegister(t, tr, v1)
	announce(t, tr, v1.InfoHash, "old", 7001, "left=0")

	// Same path, new bytes: the old infohash is no longer tracked.
	v2, _ := testFile(t, "x/clip.mp4", 210<<10)
	mustRegister(t, tr, v2)
	if r := announce(t, tr, v1.InfoHash, "old", 7001, "left=0"); r.Failure != "unregistered torrent" {
		t.Fatalf("old infohash after re-registration: %+v", r)
	}
	if r := announce(t, tr, v2.InfoHash, "new", 7002, "left=0"); r.Failure != "" || len(r.compactPeers(t)) != 0 {
		t.Fatalf("new infohash: %+v", r)
	}
	waitMetric(t, tr, "p2sp_tracker_torrents 1", time.Second)

	// Two paths with the same file name and bytes share one infohash;
	// changing one keeps the other's swarm.
	a := *v1
	b := *v1
	b.Path = "y/clip.mp4"
	mustRegister(t, tr, &a)
	mustRegister(t, tr, &b)
	if a.InfoHash != b.InfoHash {
		t.Fatal("same name and bytes gave different infohashes")
	}
	announce(t, tr, v1.InfoHash, "p1", 7003, "left=0")
	c, err := fileinfo.Compute(t.Context(), "x/clip.mp4", bytes.NewReader(data[:100<<10]), 100<<10)
	if err != nil {
		t.Fatal(err)
	}
	mustRegister(t, tr, c)
	if r := announce(t, tr, v1.InfoHash, "p2", 7004, "left=0"); r.Failure != "" || len(r.compactPeers(t)) != 1 {
		t.Fatalf("shared infohash after one path changed: %+v", r)
	}
	waitMetric(t, tr, "p2sp_tracker_torrents 2", time.Second)
}

// TestFailedAuthLimited: wrong tokens from one address are answered 401
// ten times, then 429 before any token is looked at (the right one too);
// another address is not affected.
func TestFailedAuthLimited(t *testing.T) {
	tr := startTracker(t, Config{})
	var codes []int
	for i := range 60 {
		st, _ := do(t, "GET", tr.URL+"/v1/reports", fmt.Sprintf("guess-%02d-%s", i, strings.Repeat("x", 16)), nil)
		codes = append(codes, st)
	}
	for i, st := range codes {
		want := http.StatusUnauthorized
		if i >= 10 {
			want = http.StatusTooManyRequests
		}
		if st != want {
			t.Fatalf("wrong token %d: status %d, want %d (all: %v)", i, st, want, codes)
		}
	}
	if st, b := do(t, "GET", tr.URL+"/v1/reports", testToken, nil); st != http.StatusTooManyRequests {
		t.Errorf("right token from the blocked address: %d %s, want 429", st, b)
	}
	// 127.0.0.2 is loopback too, and another address.
	other := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).DialContext}}
	req, _ := http.NewRequestWithContext(t.Context(), "GET", tr.URL+"/v1/reports", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := other.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("right token from another address: %s, want 200", resp.Status)
	}
}
