package cache

import (
	"bytes"
	"context"
	"crypto/sha1"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/anacrolix/torrent/storage"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/swarm"
)

func TestPieceStorage(t *testing.T) {
	info, data := randomFile(t, "films/s.mp4", 1<<20, 600)
	c := openCache(t, t.TempDir(), 10<<20, nil)
	e, err := c.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Release()
	dict := info.InfoDict()
	ih, err := info.ComputeInfoHash()
	if err != nil {
		t.Fatal(err)
	}
	ti, err := c.OpenTorrent(t.Context(), &dict, ih)
	if err != nil {
		t.Fatal(err)
	}
	st := storage.Torrent{TorrentImpl: ti}
	piece := func(i int) storage.Piece { return st.Piece(dict.Piece(i)) }
	read := func(i int) []byte {
		t.Helper()
		b := make([]byte, dict.Piece(i).Length())
		if _, err := piece(i).ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		return b
	}
	garbage := bytes.Repeat([]byte{0xAA}, 16<<10)

	tests := []struct {
		name string
		// seal verifies the piece before the peer chunk arrives, or not.
		seal      func(i int) error
		wantBytes func(i int) []byte
		wantHave  bool
	}{
		{"unsealed piece takes peer chunks", nil, func(i int) []byte {
			want := make([]byte, dict.Piece(i).Length())
			copy(want[16<<10:], garbage)
			return want
		}, false},
		{"sealed by WritePiece drops them", func(i int) error {
			return e.WritePiece(i, pieceOf(info, data, i))
		}, func(i int) []byte { return pieceOf(info, data, i) }, true},
		{"sealed by MarkComplete drops them", func(i int) error {
			if _, err := piece(i).WriteAt(pieceOf(info, data, i), 0); err != nil {
				return err
			}
			return piece(i).MarkComplete()
		}, func(i int) []byte { return pieceOf(info, data, i) }, true},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.seal != nil {
				if err := tt.seal(i); err != nil {
					t.Fatal(err)
				}
			}
			n, err := piece(i).WriteAt(garbage, 16<<10)
			if err != nil || n != len(garbage) {
				t.Fatalf("WriteAt = %d, %v; want %d, nil", n, err, len(garbage))
			}
			// A failed hash elsewhere in the client must not unseal.
			if err := piece(i).MarkNotComplete(); err != nil {
				t.Fatal(err)
			}
			if got := piece(i).Completion(); !got.Ok || got.Complete != tt.wantHave {
				t.Errorf("Completion = %+v, want Ok and Complete %v", got, tt.wantHave)
			}
			if e.Have(i) != tt.wantHave {
				t.Errorf("Have = %v, want %v", e.Have(i), tt.wantHave)
			}
			if !bytes.Equal(read(i), tt.wantBytes(i)) {
				t.Error("piece bytes are not what they should be")
			}
		})
	}

	t.Run("unknown infohash", func(t *testing.T) {
		other, _ := randomFile(t, "other.mp4", 1<<20, 601)
		od := other.InfoDict()
		oh, _ := other.ComputeInfoHash()
		if _, err := c.OpenTorrent(t.Context(), &od, oh); err == nil {
			t.Error("OpenTorrent of an infohash the cache has no entry for succeeded")
		}
	})
}

// newSwarm starts the project's BitTorrent client on loopback, storing in c.
func newSwarm(t testing.TB, c *Cache) *swarm.Swarm {
	t.Helper()
	sw, err := swarm.New(swarm.Config{
		Listen:  "127.0.0.1:0",
		Storage: c,
		DataDir: t.TempDir(),
		Logger:  slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := sw.Close(); err != nil {
			t.Error(err)
		}
	})
	return sw
}

// TestSwarmThroughCache moves a file from one cache to another over a real
// BitTorrent connection, each client storing through its cache.
func TestSwarmThroughCache(t *testing.T) {
	info, data := randomFile(t, "films/swarm.mp4", 8<<20+4321, 700)
	seeder := newSeeder(t, info, data)
	le := leech(t, info, seeder.Port())
	if !bytes.Equal(readAll(t, le), data) {
		t.Fatal("the leecher's cached bytes differ from the seeder's file")
	}
}

// BenchmarkSwarmThroughCache is TestSwarmThroughCache's transfer, both
// clients in this process, for a CPU profile of the peer path without the
// proxy around it:
//
//	go test -run '^$' -bench SwarmThroughCache -benchtime 4x -cpuprofile cpu.out ./internal/cache
//
// It reports the process's CPU time (both clients together) per GB moved.
func BenchmarkSwarmThroughCache(b *testing.B) {
	info, data := randomFile(b, "films/bench.mp4", 256<<20, 701)
	seeder := newSeeder(b, info, data)
	var cpu time.Duration
	b.SetBytes(info.Size)
	for b.Loop() {
		c0 := processCPU(b)
		leech(b, info, seeder.Port())
		cpu += processCPU(b) - c0
	}
	b.ReportMetric(cpu.Seconds()/(float64(b.N)*float64(info.Size)/1e9), "cpu-s/GB")
}

// processCPU is the user and system CPU time of this process so far.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// newSeeder starts a client that seeds data from a complete cache entry.
func newSeeder(tb testing.TB, info *fileinfo.Info, data []byte) *swarm.Swarm {
	tb.Helper()
	c := openCache(tb, tb.TempDir(), 2*info.Size, nil)
	e, err := c.Create(info)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Release)
	writeAll(tb, e, data)
	waitFor(tb, "seeder's entry Complete", e.Complete)
	s := newSwarm(tb, c)
	if _, err := s.Open(info, nil); err != nil {
		tb.Fatal(err)
	}
	return s
}

// leech downloads info's file from the peer on port into a fresh cache and
// returns its entry once complete: every piece verified and the whole
// file's SHA-256 matched.
func leech(tb testing.TB, info *fileinfo.Info, port int) *Entry {
	tb.Helper()
	ctx, cancel := context.WithTimeout(tb.Context(), time.Minute)
	defer cancel()
	c := openCache(tb, tb.TempDir(), 2*info.Size, nil)
	e, err := c.Create(info)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(e.Release)
	sw := newSwarm(tb, c)
	t, err := sw.Open(info, []fileinfo.Peer{{IP: "127.0.0.1", Port: port}})
	if err != nil {
		tb.Fatal(err)
	}
	for i := range info.NumPieces() {
		t.SetPriority(i, swarm.PriorityNormal)
	}
	for i := range info.NumPieces() {
		if err := e.Wait(ctx, i); err != nil {
			tb.Fatalf("waiting for piece %d: %v", i, err)
		}
	}
	waitFor(tb, "leecher's entry Complete", func() bool { return e.Complete() || e.Failed() != nil })
	if err := e.Failed(); err != nil {
		tb.Fatal(err)
	}
	return e
}

// TestPieceChunks: pieces a peer delivers in chunks, many at once and
// interleaved, hash whole (WriteTo) before they are marked complete, and
// read back the same, also after a restart.
func TestPieceChunks(t *testing.T) {
	info, data := randomFile(t, "films/b.mp4", 8<<20, 602)
	dir := t.TempDir()
	c := openCache(t, dir, 100<<20, nil)
	e, err := c.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	dict := info.InfoDict()
	ih, _ := info.ComputeInfoHash()
	ti, err := c.OpenTorrent(t.Context(), &dict, ih)
	if err != nil {
		t.Fatal(err)
	}
	st := storage.Torrent{TorrentImpl: ti}
	piece := func(i int) storage.Piece { return st.Piece(dict.Piece(i)) }
	const chunk = 16 << 10
	n := info.NumPieces()
	// Every piece but the last half-written, interleaved, then finished.
	for half := range 2 {
		for i := range n - 1 {
			want := pieceOf(info, data, i)
			for off := half * len(want) / 2; off < (half+1)*len(want)/2; off += chunk {
				if _, err := piece(i).WriteAt(want[off:off+chunk], int64(off)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	for i := range n - 1 {
		h := sha1.New()
		if _, err := piece(i).WriteTo(h); err != nil {
			t.Fatal(err)
		}
		if [20]byte(h.Sum(nil)) != info.PieceHash(i) {
			t.Fatalf("piece %d hashes wrong before MarkComplete", i)
		}
		if err := piece(i).MarkComplete(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.WritePiece(n-1, pieceOf(info, data, n-1)); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data))
	for off := 0; off < len(got); off += chunk {
		if _, err := e.ReadAt(got[off:off+chunk], int64(off)); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the entry reads other bytes than were written")
	}
	e.Release()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// After a restart, every piece re-verifies from the disk.
	c2 := openCache(t, dir, 100<<20, nil)
	e2, ok := c2.Lookup(info.Path)
	if !ok {
		t.Fatal("entry gone after a restart")
	}
	defer e2.Release()
	if e2.HaveCount() != n {
		t.Fatalf("%d of %d pieces verified from disk after a restart", e2.HaveCount(), n)
	}
}
