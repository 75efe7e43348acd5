package tracker

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"
	httpTracker "github.com/anacrolix/torrent/tracker/http"
	"github.com/anacrolix/torrent/tracker/udp"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// annResp is an announce answer as a client decodes it.
type annResp struct {
	Failure     string        `bencode:"failure reason"`
	Interval    int64         `bencode:"interval"`
	MinInterval int64         `bencode:"min interval"`
	Complete    int64         `bencode:"complete"`
	Incomplete  int64         `bencode:"incomplete"`
	Peers       bencode.Bytes `bencode:"peers"`
}

// compactPeers decodes BEP 23 compact peers.
func (r annResp) compactPeers(t *testing.T) []netip.AddrPort {
	t.Helper()
	var s string
	if err := bencode.Unmarshal(r.Peers, &s); err != nil {
		t.Fatalf("peers is not a string: %v (%q)", err, r.Peers)
	}
	if len(s)%6 != 0 {
		t.Fatalf("compact peers of %d bytes", len(s))
	}
	var out []netip.AddrPort
	for i := 0; i < len(s); i += 6 {
		ip := netip.AddrFrom4([4]byte([]byte(s[i : i+4])))
		out = append(out, netip.AddrPortFrom(ip, uint16(s[i+4])<<8|uint16(s[i+5])))
	}
	return out
}

func peerID(name string) string { return fmt.Sprintf("%-20s", name) }

func rawHash(t testing.TB, hexHash string) string {
	t.Helper()
	b, err := hex.DecodeString(hexHash)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// announceRaw sends GET /announce/<tr.Passkey>?query and decodes the
// answer, which must be a bencoded dictionary with status 200 whatever the
// query.
func announceRaw(t *testing.T, tr *testTracker, query string) annResp {
	t.Helper()
	return announceTo(t, fileinfo.AnnounceURL(tr.URL, tr.Passkey)+"?"+query)
}

// announceTo sends GET u and decodes the answer as announceRaw does.
func announceTo(t *testing.T, u string) annResp {
	t.Helper()
	query := u
	st, b := do(t, "GET", u, "", nil)
	if st != http.StatusOK {
		t.Fatalf("announce %q: status %d", query, st)
	}
	var r annResp
	if err := bencode.Unmarshal(b, &r); err != nil {
		t.Fatalf("announce %q: answer %q is not a bencoded dict: %v", query, b, err)
	}
	return r
}

// announce announces peer id on port for the hex infohash, with extra
// query parameters.
func announce(t *testing.T, tr *testTracker, hexHash, id string, port int, extra string) annResp {
	t.Helper()
	q := fmt.Sprintf("info_hash=%s&peer_id=%s&port=%d&uploaded=0&downloaded=0",
		url.QueryEscape(rawHash(t, hexHash)), url.QueryEscape(peerID(id)), port)
	if extra != "" {
		q += "&" + extra
	}
	return announceRaw(t, tr, q)
}

func TestAnnounceSwarm(t *testing.T) {
	tr := startTracker(t, Config{AnnounceInterval: 10 * time.Second})
	fi, _ := testFile(t, "v/clip.mp4", 300<<10)
	mustRegister(t, tr, fi)
	ih := fi.InfoHash
	a := netip.MustParseAddrPort("127.0.0.1:7001")
	b := netip.MustParseAddrPort("127.0.0.1:7002")

	for _, step := range []struct {
		name                 string
		id                   string
		port                 int
		extra                string
		complete, incomplete int64
		peers                []netip.AddrPort
	}{
		{"leecher starts alone", "a", 7001, "event=started&left=1000", 0, 1, nil},
		{"seeder sees leecher", "b", 7002, "event=started&left=0", 1, 1, []netip.AddrPort{a}},
		{"leecher sees seeder", "a", 7001, "left=1000", 1, 1, []netip.AddrPort{b}},
		{"the ip parameter is ignored", "a", 7001, "left=1000&ip=10.9.9.9", 1, 1, []netip.AddrPort{b}},
		{"numwant 0", "a", 7001, "left=1000&numwant=0", 1, 1, nil},
		{"a paused partial seed stays listed", "a", 7001, "event=paused&left=1000", 1, 1, []netip.AddrPort{b}},
		{"leecher completes", "a", 7001, "event=completed&left=0", 2, 0, []netip.AddrPort{b}},
		{"seeder stops", "b", 7002, "event=stopped&left=0", 1, 0, []netip.AddrPort{a}},
		{"stopped peer is gone", "a", 7001, "left=0", 1, 0, nil},
	} {
		r := announce(t, tr, ih, step.id, step.port, step.extra)
		if r.Failure != "" {
			t.Fatalf("%s: failure %q", step.name, r.Failure)
		}
		if r.Interval != 10 || r.MinInterval != 5 {
			t.Errorf("%s: interval %d min %d, want 10 and 5", step.name, r.Interval, r.MinInterval)
		}
		if r.Complete != step.complete || r.Incomplete != step.incomplete {
			t.Errorf("%s: complete %d incomplete %d, want %d %d", step.name, r.Complete, r.Incomplete, step.complete, step.incomplete)
		}
		if got := r.compactPeers(t); !slices.Equal(got, step.peers) {
			t.Errorf("%s: peers %v, want %v", step.name, got, step.peers)
		}
	}

	// Non-compact answers list dictionaries with ip, port and peer id.
	announce(t, tr, ih, "b", 7002, "event=started&left=5")
	st, body := do(t, "GET", fileinfo.AnnounceURL(tr.URL, tr.Passkey)+"?"+fmt.Sprintf("info_hash=%s&peer_id=%s&port=7001&left=0&compact=0",
		url.QueryEscape(rawHash(t, ih)), url.QueryEscape(peerID("a"))), "", nil)
	var nc struct {
		Peers []struct {
			IP   string `bencode:"ip"`
			Port int    `bencode:"port"`
			ID   string `bencode:"peer id"`
		} `bencode:"peers"`
	}
	if err := bencode.Unmarshal(body, &nc); st != 200 || err != nil {
		t.Fatalf("non-compact: %d %v %q", st, err, body)
	}
	if len(nc.Peers) != 1 || nc.Peers[0].IP != "127.0.0.1" || nc.Peers[0].Port != 7002 || nc.Peers[0].ID != peerID("b") {
		t.Fatalf("non-compact peers %+v", nc.Peers)
	}

	// The file-info answer carries the live peers, for the swarm's
	// members and the operator only: who watches what is nobody else's
	// business.
	for _, tc := range []struct {
		name, header, value string
		status              int
		peers               bool
	}{
		{"anyone", "", "", http.StatusOK, false},
		{"a member", fileinfo.PasskeyHeader, tr.Passkey, http.StatusOK, true},
		{"a guessed passkey", fileinfo.PasskeyHeader, "guessed", http.StatusOK, false},
		{"the operator", "Authorization", "Bearer " + testToken, http.StatusOK, true},
		{"a wrong token", "Authorization", "Bearer wrong", http.StatusUnauthorized, false},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, tr.URL+"/v1/files/v/clip.mp4", nil)
		if tc.header != "" {
			req.Header.Set(tc.header, tc.value)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		listed := strings.Contains(string(body), `{"ip":"127.0.0.1","port":7001}`) &&
			strings.Contains(string(body), `{"ip":"127.0.0.1","port":7002}`)
		if resp.StatusCode != tc.status || listed != tc.peers || (!tc.peers && strings.Contains(string(body), `"peers"`)) {
			t.Errorf("file info for %s: %d, peers listed %v (want %d, %v): %s", tc.name, resp.StatusCode, listed, tc.status, tc.peers, body)
		}
	}

	// Scrape counts what the announces left behind; unknown hashes are
	// left out.
	unknown := strings.Repeat("\x01", 20)
	st, body = do(t, "GET", tr.URL+"/scrape?info_hash="+url.QueryEscape(rawHash(t, ih))+"&info_hash="+url.QueryEscape(unknown), "", nil)
	var sc struct {
		Files map[string]struct {
			Complete   int `bencode:"complete"`
			Incomplete int `bencode:"incomplete"`
			Downloaded int `bencode:"downloaded"`
		} `bencode:"files"`
	}
	if err := bencode.Unmarshal(body, &sc); st != 200 || err != nil {
		t.Fatalf("scrape: %d %v %q", st, err, body)
	}
	got, ok := sc.Files[rawHash(t, ih)]
	if len(sc.Files) != 1 || !ok || got.Complete != 1 || got.Incomplete != 1 || got.Downloaded != 1 {
		t.Fatalf("scrape files %+v", sc.Files)
	}
	for _, q := range []string{"", "info_hash=short", "info_hash=%zz"} {
		st, body := do(t, "GET", tr.URL+"/scrape?"+q, "", nil)
		var f annResp
		if err := bencode.Unmarshal(body, &f); st != 200 || err != nil || f.Failure == "" {
			t.Errorf("scrape %q: %d %v %q, want a failure reason", q, st, err, body)
		}
	}
}

// TestAnnounceWithAnacrolixClient checks that the tracker client the
// proxies use understands our answers.
func TestAnnounceWithAnacrolixClient(t *testing.T) {
	tr := startTracker(t, Config{})
	fi, _ := testFile(t, "c.mp4", 100<<10)
	mustRegister(t, tr, fi)
	announce(t, tr, fi.InfoHash, "seed", 6999, "left=0")

	u, _ := url.Parse(fileinfo.AnnounceURL(tr.URL, tr.Passkey))
	cl := httpTracker.NewClient(u, httpTracker.NewClientOpts{})
	defer cl.Close()
	var req udp.AnnounceRequest
	copy(req.InfoHash[:], rawHash(t, fi.InfoHash))
	copy(req.PeerId[:], peerID("anacrolix"))
	req.Port, req.Left, req.NumWant = 7777, -1, -1
	resp, err := cl.Announce(t.Context(), req, httpTracker.AnnounceOpt{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Peers) != 1 || resp.Peers[0].Port != 6999 || !resp.Peers[0].IP.Equal([]byte{127, 0, 0, 1}) ||
		resp.Seeders != 1 || resp.Leechers != 1 {
		t.Fatalf("answer %+v", resp)
	}
}

func TestAnnounceExpiry(t *testing.T) {
	const ttl = 300 * time.Millisecond
	tr := startTracker(t, Config{AnnounceInterval: 100 * time.Millisecond, PeerTTL: ttl})
	fi, _ := testFile(t, "e.mp4", 100<<10)
	mustRegister(t, tr, fi)

	announce(t, tr, fi.InfoHash, "a", 7001, "left=0")
	if r := announce(t, tr, fi.InfoHash, "b", 7002, "left=0"); len(r.compactPeers(t)) != 1 {
		t.Fatalf("b does not see a: %+v", r)
	}
	time.Sleep(ttl + 100*time.Millisecond)
	if r := announce(t, tr, fi.InfoHash, "b", 7002, "left=0"); len(r.compactPeers(t)) != 0 || r.Complete != 1 {
		t.Fatalf("a has not expired: complete %d, peers %v", r.Complete, r.compactPeers(t))
	}
	// With nobody announcing, the sweeper empties the swarm.
	waitMetric(t, tr, "p2sp_tracker_peers 0", 5*time.Second)
}

func TestAnnounceBadInput(t *testing.T) {
	tr := startTracker(t, Config{})
	fi, _ := testFile(t, "bad.mp4", 100<<10)
	mustRegister(t, tr, fi)
	ih := url.QueryEscape(rawHash(t, fi.InfoHash))
	id := url.QueryEscape(peerID("x"))
	ok := "info_hash=" + ih + "&peer_id=" + id + "&port=7000&left=0"

	for _, tc := range []struct {
		name, query, reason string
	}{
		{"empty", "", "info_hash is missing"},
		{"missing info_hash", "peer_id=" + id + "&port=1&left=0", "info_hash is missing"},
		{"short info_hash", "info_hash=abc&peer_id=" + id + "&port=1&left=0", "info_hash is 3 bytes"},
		{"info_hash twice", ok + "&info_hash=" + ih, "info_hash given more than once"},
		{"missing peer_id", "info_hash=" + ih + "&port=1&left=0", "peer_id is missing"},
		{"long peer_id", "info_hash=" + ih + "&peer_id=" + id + "x&port=1&left=0", "peer_id is 21 bytes"},
		{"port 0", "info_hash=" + ih + "&peer_id=" + id + "&port=0&left=0", "port"},
		{"port 99999", "info_hash=" + ih + "&peer_id=" + id + "&port=99999&left=0", "port"},
		{"port abc", "info_hash=" + ih + "&peer_id=" + id + "&port=abc&left=0", "port"},
		{"missing port", "info_hash=" + ih + "&peer_id=" + id + "&left=0", "port is missing"},
		{"port of a system service", "info_hash=" + ih + "&peer_id=" + id + "&port=22&left=0", "port is not in 1024..65535"},
		{"port 1023", "info_hash=" + ih + "&peer_id=" + id + "&port=1023&left=0", "port is not in 1024..65535"},
		{"negative left", "info_hash=" + ih + "&peer_id=" + id + "&port=1024&left=-1", "left"},
		{"missing left", "info_hash=" + ih + "&peer_id=" + id + "&port=1024", "left is missing"},
		{"uploaded abc", ok + "&uploaded=abc", "uploaded"},
		{"unknown event", ok + "&event=resumed", "unknown event"},
		{"numwant abc", ok + "&numwant=abc", "numwant"},
		{"compact 2", ok + "&compact=2", "compact"},
		{"bad escape", ok + "&x=%zz", "malformed"},
		{"unregistered", "info_hash=" + url.QueryEscape(strings.Repeat("z", 20)) + "&peer_id=" + id + "&port=1024&left=0", "unregistered torrent"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := announceRaw(t, tr, tc.query)
			if !strings.Contains(r.Failure, tc.reason) {
				t.Fatalf("failure reason %q, want one containing %q", r.Failure, tc.reason)
			}
		})
	}
	if r := announceRaw(t, tr, ok); r.Failure != "" {
		t.Fatalf("good announce failed: %q", r.Failure)
	}
	waitMetric(t, tr, `p2sp_tracker_announces_total{result="failed"} 19`, time.Second)
	waitMetric(t, tr, `p2sp_tracker_announces_total{result="unregistered"} 1`, time.Second)
	waitMetric(t, tr, `p2sp_tracker_announces_total{result="ok"} 1`, time.Second)
}

func TestAnnounceRateLimit(t *testing.T) {
	tr := startTracker(t, Config{})
	fi, _ := testFile(t, "r.mp4", 100<<10)
	mustRegister(t, tr, fi)
	limited := false
	for i := 0; i < 1000 && !limited; i++ {
		r := announce(t, tr, fi.InfoHash, "flood", 7000, "left=0")
		limited = strings.Contains(r.Failure, "rate limited")
	}
	if !limited {
		t.Fatal("1000 announces in a row were never rate-limited")
	}
	waitMetric(t, tr, `p2sp_tracker_announces_total{result="rate_limited"} 1`, time.Second)
}

func TestParseAnnounce(t *testing.T) {
	ih := url.QueryEscape(strings.Repeat("\xff", 20))
	id := url.QueryEscape(peerID("p"))
	base := "info_hash=" + ih + "&peer_id=" + id + "&port=6881&left=7"
	for _, tc := range []struct {
		name   string
		query  string
		remote netip.Addr
		check  func(Announce) bool
	}{
		{"defaults", base, netip.MustParseAddr("10.0.0.1"), func(a Announce) bool {
			return a.NumWant == DefaultNumWant && a.Compact && a.Event == EventNone && a.Left == 7 &&
				a.Addr == netip.MustParseAddrPort("10.0.0.1:6881") && a.InfoHash == [20]byte(bytesOf(0xff))
		}},
		{"numwant capped", base + "&numwant=100000", netip.MustParseAddr("10.0.0.1"), func(a Announce) bool { return a.NumWant == MaxNumWant }},
		{"negative numwant is the default", base + "&numwant=-1", netip.MustParseAddr("10.0.0.1"), func(a Announce) bool { return a.NumWant == DefaultNumWant }},
		{"mapped IPv4 unmapped", base, netip.MustParseAddr("::ffff:10.0.0.2"), func(a Announce) bool { return a.Addr.Addr() == netip.MustParseAddr("10.0.0.2") }},
		{"IPv6 remote", base + "&ip=1.2.3.4", netip.MustParseAddr("2001:db8::1"), func(a Announce) bool { return a.Addr.Addr() == netip.MustParseAddr("2001:db8::1") }},
		{"compact 0, no peer id", base + "&compact=0&no_peer_id=1&event=stopped", netip.MustParseAddr("10.0.0.1"), func(a Announce) bool {
			return !a.Compact && a.NoPeerID && a.Event == EventStopped
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := ParseAnnounce(tc.query, tc.remote)
			if err != nil {
				t.Fatal(err)
			}
			if !tc.check(a) {
				t.Fatalf("unexpected %+v", a)
			}
		})
	}
	if _, err := ParseAnnounce(base, netip.Addr{}); err == nil {
		t.Fatal("accepted an announce without a remote address")
	}
}

func bytesOf(b byte) []byte { return []byte(strings.Repeat(string([]byte{b}), 20)) }

// waitMetric polls /metrics until it has the exact line want.
func waitMetric(t *testing.T, tr *testTracker, want string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		_, b := do(t, "GET", tr.URL+"/metrics", "", nil)
		if slices.Contains(strings.Split(string(b), "\n"), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics never had %q", want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
