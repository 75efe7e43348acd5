package e2e

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anacrolix/torrent/bencode"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/proxy"
	"github.com/p2sp/p2sp/tracker"
)

// maxDialedPerIP is how many peers of one IP a proxy dials for a torrent
// (internal/swarm's maxPeersPerIP).
const maxDialedPerIP = 8

// strangerAddr is the one address the attacker announces from, and where
// its tarpit listens.
const strangerAddr = "127.0.0.7"

// TestStrangersCannotDiluteTheSwarm: 150 fake peers announced from one
// address (distinct peer ids, each port on a tarpit that accepts TCP and
// never answers), once without a passkey and once with one the operator
// issued to the attacker. Without, none is listed; with, at most the
// per-address cap; either way the next proxy takes most of the file from
// the real peer and dials at most that many tarpit ports. (Before the
// private swarm, all 150 were listed, the next proxy took 0 bytes from
// peers, and 23-37 of its connections were stuck in the tarpit.)
func TestStrangersCannotDiluteTheSwarm(t *testing.T) {
	const (
		size  = 4<<20 + 99
		fakes = 150
	)
	for _, tc := range []struct {
		name    string
		passkey bool // the attacker holds one the operator issued
		perAddr int  // the tracker's --peers-per-addr (0: the default)
		listed  int  // tarpit peers the tracker may list
	}{
		{"without a passkey", false, 0, 0},
		{"with an issued passkey", true, 0, tracker.DefaultPeersPerAddr},
		// A tracker that lists them all (a hostile relay, or one told to
		// list 1000 per address): the proxy dials at most 8 of one IP.
		{"listed by the tracker", true, 1000, fakes},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Each case has its own tracker and tarpit, and mostly waits on
			// the tracker's rate limit.
			t.Parallel()
			// The origin is slow, so that the swarm matters to the next proxy.
			c := start(t, demo.Config{Proxies: 1, RateLimit: 2_000_000, ScanInterval: 200 * time.Millisecond, PeersPerAddr: tc.perAddr})
			tp := startTarpit(t, fakes)
			attacker := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
				DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(strangerAddr)}}).DialContext,
			}}
			announce := fileinfo.AnnounceURL(c.Tracker.URL, "")
			if tc.passkey {
				pk, err := c.IssuePasskey(t.Context(), "mallory")
				if err != nil {
					t.Fatal(err)
				}
				announce = fileinfo.AnnounceURL(c.Tracker.URL, pk)
			}
			const path = "private/film.bin"
			data := writeMedia(t, c, path, size)
			fi := waitInfo(t, c, path, "")
			real := c.Proxies[0]
			if got := mustGet(t, streamURL(real, path), "", http.StatusOK); !bytes.Equal(got, data) {
				t.Fatal("the real peer: bytes differ")
			}
			waitComplete(t, real, path)
			waitAnnounced(t, c.Tracker.URL, c.Token, path, real.Proxy.BTPort(), 10*time.Second)

			refused := 0
			for i, port := range tp.ports {
				if r := strangerAnnounce(t, attacker, announce, fi.InfoHash, i, port); r.Failure != "" {
					refused++
				}
			}
			listed := tarpitListed(t, c, path)
			t.Logf("%d fake announces: %d refused, %d tarpit peers listed", fakes, refused, listed)
			if listed > tc.listed || (tc.passkey && listed < min(tc.listed, tracker.MaxNumWant)) {
				t.Fatalf("the tracker lists %d tarpit peers, want %d", listed, tc.listed)
			}
			if tc.listed == 0 && refused != fakes {
				t.Fatalf("%d of %d announces without a valid passkey were accepted", fakes-refused, fakes)
			}

			next := startTestProxy(t, c, proxy.Config{})
			if got := mustGet(t, next.URL+"/stream/"+fileinfo.EscapePath(path), "", http.StatusOK); !bytes.Equal(got, data) {
				t.Fatal("the next proxy: bytes differ")
			}
			f := fileStatusAt(t, next.URL, path)
			share := float64(f.PeerBytes) / size
			// Both proxies dial what the tracker lists; a port counts once.
			dialed := tp.dialed()
			t.Logf("next proxy: %s from peers (%.0f%%), %s from the origin; %d tarpit ports dialed",
				mib(float64(f.PeerBytes)), 100*share, mib(float64(f.OriginBytes)), dialed)
			if share <= 0.5 {
				t.Errorf("the next proxy took %.0f%% of the file from peers, want most of it", 100*share)
			}
			if want := min(tc.listed, 2*maxDialedPerIP); dialed > want {
				t.Errorf("the proxies dialed %d tarpit ports, want at most %d", dialed, want)
			}
		})
	}
}

// strangerAnnounce announces fake peer i (port on the tarpit) as a seeder
// from strangerAddr, retrying while the tracker's per-address rate limit
// refuses it (an attacker would too).
func strangerAnnounce(t *testing.T, hc *http.Client, announce, infohash string, i, port int) annAnswer {
	t.Helper()
	ih, err := hex.DecodeString(infohash)
	if err != nil {
		t.Fatal(err)
	}
	q := "?info_hash=" + url.QueryEscape(string(ih)) + "&peer_id=" + url.QueryEscape(fmt.Sprintf("-FAKE-%014d", i)) +
		"&port=" + strconv.Itoa(port) + "&uploaded=0&downloaded=0&left=0&event=started&compact=1"
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := hc.Get(announce + q)
		if err != nil {
			t.Fatalf("fake announce %d: %v", i, err)
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		var r annAnswer
		if err := bencode.Unmarshal(b, &r); err != nil {
			t.Fatalf("fake announce %d: answer %q: %v", i, b, err)
		}
		if !strings.Contains(r.Failure, "rate limited") {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("fake announce %d still rate limited after 20 s", i)
		}
	}
}

// annAnswer is what the test reads of an announce answer.
type annAnswer struct {
	Failure string `bencode:"failure reason"`
}

// tarpitListed counts the peers at strangerAddr in the tracker's file info,
// which lists up to 200 of a swarm's peers.
func tarpitListed(t *testing.T, c *demo.Cluster, path string) int {
	t.Helper()
	fi := waitInfo(t, c, path, "")
	n := 0
	for _, p := range fi.Peers {
		if a, err := netip.ParseAddr(p.IP); err == nil && a.String() == strangerAddr {
			n++
		}
	}
	return n
}

// tarpit is n listeners on strangerAddr that accept every connection and
// never send or read a byte, until the test ends.
type tarpit struct {
	ports []int
	hit   []atomic.Bool // per port: somebody connected
	mu    sync.Mutex
	conns []net.Conn
}

func startTarpit(t *testing.T, n int) *tarpit {
	t.Helper()
	tp := &tarpit{hit: make([]atomic.Bool, n)}
	var wg sync.WaitGroup
	var lns []net.Listener
	for i := range n {
		ln, err := net.Listen("tcp", strangerAddr+":0")
		if err != nil {
			t.Fatalf("tarpit on %s: %v", strangerAddr, err)
		}
		lns = append(lns, ln)
		tp.ports = append(tp.ports, ln.Addr().(*net.TCPAddr).Port)
		wg.Go(func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				tp.hit[i].Store(true)
				tp.mu.Lock()
				tp.conns = append(tp.conns, conn)
				tp.mu.Unlock()
			}
		})
	}
	t.Cleanup(func() {
		for _, ln := range lns {
			ln.Close()
		}
		wg.Wait()
		tp.mu.Lock()
		for _, c := range tp.conns {
			c.Close()
		}
		tp.mu.Unlock()
	})
	return tp
}

// dialed is how many tarpit ports somebody has connected to.
func (tp *tarpit) dialed() int {
	n := 0
	for i := range tp.hit {
		if tp.hit[i].Load() {
			n++
		}
	}
	return n
}
