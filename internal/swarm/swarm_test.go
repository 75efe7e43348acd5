package swarm

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
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
