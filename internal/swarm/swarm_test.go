package swarm

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/anacrolix/torrent/storage"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

func newTestSwarm(t *testing.T) *Swarm {
	t.Helper()
	s, err := New(Config{
		Listen:  "127.0.0.1:0",
		Storage: storage.NewFile(t.TempDir()),
		DataDir: t.TempDir(),
		Logger:  slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func (s *Swarm) knowsListenPort(t *Torrent) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pa := range s.listening {
		if pa.t == t.t {
			return true
		}
	}
	return false
}

// TestOneConnectionPerPeer: a proxy that a peer dialed, told of that peer
// again (the tracker names it at every re-announce), keeps the one
// connection and dials nothing.
func TestOneConnectionPerPeer(t *testing.T) {
	data := make([]byte, 1<<20)
	rand.Read(data)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	info, err := fileinfo.Compute(ctx, "one/conn.bin", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	ih, err := info.ComputeInfoHash()
	if err != nil {
		t.Fatal(err)
	}
	info.InfoHash = ih.HexString()

	// Two leechers that want the file (the library connects only torrents
	// that want data or have some to give) and hold none of it.
	a, b := newTestSwarm(t), newTestSwarm(t)
	ta, err := a.Open(info, nil)
	if err != nil {
		t.Fatal(err)
	}
	tb, err := b.Open(info, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range info.NumPieces() {
		ta.SetPriority(i, PriorityNormal)
		tb.SetPriority(i, PriorityNormal)
	}
	tb.AddPeers([]fileinfo.Peer{{IP: "127.0.0.1", Port: a.Port()}})
	waitFor(t, "b's connection and its extended handshake at a", func() bool {
		return ta.Stats().Peers == 1 && tb.Stats().Peers == 1 && a.knowsListenPort(ta)
	})

	ta.AddPeers([]fileinfo.Peer{{IP: "127.0.0.1", Port: b.Port()}}) // a re-announce names b
	// A dial would be under way now: the library starts it within AddPeers.
	if st := ta.t.Stats(); st.HalfOpenPeers != 0 || st.ActivePeers != 1 {
		t.Errorf("after a re-announce naming the connected peer: %d connections, %d being dialed; want 1 and 0",
			st.ActivePeers, st.HalfOpenPeers)
	}
	tb.AddPeers([]fileinfo.Peer{{IP: "127.0.0.1", Port: a.Port()}}) // b dialed a: the library knows
	if st := tb.t.Stats(); st.HalfOpenPeers != 0 || st.ActivePeers != 1 {
		t.Errorf("at the dialing side: %d connections, %d being dialed; want 1 and 0", st.ActivePeers, st.HalfOpenPeers)
	}
}

// TestAdmit: which of a tracker's peers go to the library.
func TestAdmit(t *testing.T) {
	now := time.Now()
	ap := netip.MustParseAddrPort
	peersOf := func(ip string, from, n int) []fileinfo.Peer {
		var ps []fileinfo.Peer
		for i := range n {
			ps = append(ps, fileinfo.Peer{IP: ip, Port: from + i})
		}
		return ps
	}
	for _, tc := range []struct {
		name      string
		peers     []fileinfo.Peer
		connected []netip.AddrPort
		recent    map[netip.AddrPort]time.Time
		want      int // admitted
	}{
		{"150 of one IP: the cap", peersOf("10.0.0.7", 2000, 150), nil, nil, maxPeersPerIP},
		{"other IPs are not held back", append(peersOf("10.0.0.7", 2000, 150), peersOf("10.0.0.8", 2000, 3)...), nil, nil, maxPeersPerIP + 3},
		{"connected ones count", peersOf("10.0.0.7", 2000, 150), []netip.AddrPort{ap("10.0.0.7:1"), ap("10.0.0.7:2")}, nil, maxPeersPerIP - 2},
		{"a connected peer is not added again", peersOf("10.0.0.7", 2000, 1), []netip.AddrPort{ap("10.0.0.7:2000")}, nil, 0},
		{"recently handed ones count", peersOf("10.0.0.7", 2000, 150), nil,
			map[netip.AddrPort]time.Time{ap("10.0.0.7:1"): now.Add(-admitTTL / 2)}, maxPeersPerIP - 1},
		{"and come back after admitTTL", peersOf("10.0.0.7", 2000, 1), nil,
			map[netip.AddrPort]time.Time{ap("10.0.0.7:2000"): now.Add(-admitTTL)}, 1},
		{"invalid addresses are skipped", []fileinfo.Peer{{IP: "nope", Port: 1}, {IP: "10.0.0.1", Port: 0}, {IP: "10.0.0.1", Port: 70000}}, nil, nil, 0},
		{"IPv4-mapped IPv6 is the IPv4 address", append(peersOf("::ffff:10.0.0.7", 2000, 8), peersOf("10.0.0.7", 3000, 8)...), nil, nil, maxPeersPerIP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recent := tc.recent
			if recent == nil {
				recent = map[netip.AddrPort]time.Time{}
			}
			got := admit(tc.peers, tc.connected, recent, now)
			if len(got) != tc.want {
				t.Fatalf("admitted %d (%v), want %d", len(got), got, tc.want)
			}
			for _, a := range got {
				if recent[a] != now {
					t.Fatalf("%s admitted but not recorded", a)
				}
			}
			// Asking again at once admits nothing new.
			if again := admit(tc.peers, tc.connected, recent, now); len(again) != 0 {
				t.Fatalf("the same answer again admitted %v", again)
			}
		})
	}
}
