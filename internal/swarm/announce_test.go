package swarm

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

func TestParseAnnounceAnswer(t *testing.T) {
	peer := func(ip string, port int) fileinfo.Peer { return fileinfo.Peer{IP: ip, Port: port} }
	// The answer's dictionary is the first level.
	deep := strings.Repeat("l", maxDepth-1) + strings.Repeat("e", maxDepth-1)
	tooDeep := strings.Repeat("l", maxDepth) + strings.Repeat("e", maxDepth)
	for _, tc := range []struct {
		name     string
		in       string
		interval time.Duration
		peers    []fileinfo.Peer
		err      string // substring; "" means success
	}{
		{name: "compact", in: "d8:intervali30e5:peers12:\x7f\x00\x00\x01\x1f\x90\x0a\x00\x00\x02\x00\x50e",
			interval: 30 * time.Second, peers: []fileinfo.Peer{peer("127.0.0.1", 8080), peer("10.0.0.2", 80)}},
		{name: "compact ipv6", in: "d8:intervali5e5:peers0:6:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x16e",
			interval: 5 * time.Second, peers: []fileinfo.Peer{peer("::1", 22)}},
		{name: "dictionary peers", in: "d8:intervali10e5:peersld2:ip9:127.0.0.17:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881eed2:ip3:bad4:porti1eed2:ip8:10.0.0.14:porti0eeee",
			interval: 10 * time.Second, peers: []fileinfo.Peer{peer("127.0.0.1", 6881)}},
		{name: "unknown keys skipped, nested", in: "d8:completei3e5:extrald1:ali1ei2eeee1:x" + "i-7e" + "8:intervali1ee", interval: time.Second},
		{name: "nesting at the cap", in: "d1:a" + deep + "e"},
		{name: "no peers", in: "de"},
		{name: "failure reason", in: "d14:failure reason20:unregistered torrente", err: `refused the announce: "unregistered torrent"`},
		{name: "too deep", in: "d1:a" + tooDeep + "e", err: "nested deeper"},
		{name: "20 million deep", in: strings.Repeat("l", 20_000_000), err: "want 'd'"},
		{name: "deep inside the answer", in: "d1:a" + strings.Repeat("l", 1_000_000), err: "nested deeper"},
		{name: "not a dictionary", in: "li1ee", err: "want 'd'"},
		{name: "trailing bytes", in: "dex", err: "after the value"},
		{name: "truncated", in: "d8:intervali30e", err: "unexpected end"},
		{name: "string past the end", in: "d5:peers999999:abce", err: "past the end"},
		{name: "huge string length", in: "d5:peers99999999999:e", err: "bad string length"},
		{name: "negative length", in: "d5:peers-1:e", err: "want a string"},
		{name: "leading zero length", in: "d5:peers06:\x7f\x00\x00\x01\x00\x01e", err: "bad string length"},
		{name: "compact peers not multiple of 6", in: "d5:peers5:abcdee", err: "not a multiple of 6"},
		{name: "bad integer", in: "d8:intervali3xee", err: "integer"},
		{name: "non-canonical integer", in: "d8:intervali030ee", err: "not canonical"},
		{name: "negative zero", in: "d8:intervali-0ee", err: "not canonical"},
		{name: "integer overflow", in: "d8:intervali99999999999999999999ee", err: "integer"},
		{name: "negative interval", in: "d8:intervali-1ee", err: "out of range"},
		{name: "interval of a year", in: "d8:intervali31536000ee", err: "out of range"},
		{name: "unterminated integer", in: "d8:intervali30", err: "unterminated"},
		{name: "interval not an integer", in: "d8:interval2:30e", err: "want an integer"},
		{name: "empty", in: "", err: "want 'd'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := parseAnnounceAnswer([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.interval != tc.interval || !reflect.DeepEqual(a.peers, tc.peers) {
				t.Errorf("got interval %v peers %v, want %v %v", a.interval, a.peers, tc.interval, tc.peers)
			}
		})
	}
}

// TestParseAnnounceAnswerLibraryEncoding decodes what the tracker's own
// encoder (the library's bencode) writes, as the tracker writes it.
func TestParseAnnounceAnswerLibraryEncoding(t *testing.T) {
	b, err := bencode.Marshal(map[string]any{
		"interval": 30, "min interval": 15, "complete": 1, "incomplete": 0,
		"peers": string([]byte{127, 0, 0, 1, 0x1a, 0xe1}),
	})
	if err != nil {
		t.Fatal(err)
	}
	a, err := parseAnnounceAnswer(b)
	if err != nil {
		t.Fatal(err)
	}
	if a.interval != 30*time.Second || len(a.peers) != 1 || a.peers[0] != (fileinfo.Peer{IP: "127.0.0.1", Port: 6881}) {
		t.Errorf("got %+v", a)
	}
}

func TestParseAnnounceAnswerPeerCap(t *testing.T) {
	var peers []byte
	for i := range maxAnswerPeers + 100 {
		peers = append(peers, 10, 0, byte(i>>8), byte(i), 0x1a, 0xe1)
	}
	a, err := parseAnnounceAnswer([]byte("d5:peers" + strconv.Itoa(len(peers)) + ":" + string(peers) + "e"))
	if err != nil {
		t.Fatal(err)
	}
	if len(a.peers) != maxAnswerPeers {
		t.Errorf("%d peers kept, want %d", len(a.peers), maxAnswerPeers)
	}
}

// endless is an answer that never ends: the bytes of a huge peers string.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	return len(p), nil
}

func TestAnnounceBoundsTheAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if len(q.Get("info_hash")) != 20 || len(q.Get("peer_id")) != 20 || q.Get("port") != "6881" ||
			q.Get("left") != "7" || q.Get("event") != "started" || q.Get("compact") != "1" {
			http.Error(w, "bad query "+r.URL.RawQuery, http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case "/ok":
			io.WriteString(w, "d8:intervali7e5:peers6:\x7f\x00\x00\x01\x1a\xe1e")
		case "/endless":
			io.WriteString(w, "d5:peers536870912:")
			io.Copy(w, io.LimitReader(endless{}, 512<<20))
		case "/declared":
			w.Header().Set("Content-Length", strconv.Itoa(512<<20))
		}
	}))
	defer srv.Close()
	req := &announceRequest{port: 6881, left: 7, event: EventStarted}
	a, err := announce(t.Context(), srv.Client(), srv.URL+"/ok", req)
	if err != nil {
		t.Fatal(err)
	}
	if a.interval != 7*time.Second || len(a.peers) != 1 {
		t.Errorf("got %+v", a)
	}
	for _, path := range []string{"/endless", "/declared"} {
		_, err := announce(t.Context(), srv.Client(), srv.URL+path, req)
		if err == nil || !strings.Contains(err.Error(), "more than") && !strings.Contains(err.Error(), "longer than") {
			t.Errorf("%s: err = %v, want a size error", path, err)
		}
	}
	if _, err := announce(t.Context(), srv.Client(), "ftp://x/announce", req); err == nil {
		t.Error("an ftp announce URL was accepted")
	}
	_, err = announce(t.Context(), srv.Client(), srv.URL+"/missing-params", &announceRequest{})
	if err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("a 400 answer: err = %v", err)
	}
	if errors.Is(err, errBencode) {
		t.Error("an HTTP error was reported as malformed bencode")
	}
}

func FuzzParseAnnounceAnswer(f *testing.F) {
	for _, s := range []string{
		"d8:intervali30e5:peers6:\x7f\x00\x00\x01\x1f\x90e",
		"d8:intervali10e5:peersld2:ip9:127.0.0.14:porti6881eeee",
		"d6:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x16e",
		"d14:failure reason3:no!e",
		"d1:a" + strings.Repeat("l", 40) + "e",
		"d1:xi-5e1:yli1e2:abdeee",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := parseAnnounceAnswer(b)
		if err != nil {
			return
		}
		if len(a.peers) > maxAnswerPeers || a.interval < 0 {
			t.Fatalf("answer out of bounds: %d peers, interval %v", len(a.peers), a.interval)
		}
		for _, p := range a.peers {
			if p.Port <= 0 || p.Port > 65535 || p.IP == "" {
				t.Fatalf("bad peer %+v", p)
			}
		}
	})
}
