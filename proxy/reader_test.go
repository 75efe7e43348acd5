package proxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// TestPaceMeter: a player reading at its bitrate gets that pace, a
// download waiting on every piece gets none, and a player that starts to
// starve keeps the pace it had.
func TestPaceMeter(t *testing.T) {
	const rate = 500_000.0 // bytes a second
	tests := []struct {
		name string
		// waitShare of each 250 ms step spent waiting, per phase
		phases []float64
		want   float64
		// fill: the first steps read at 4x the rate, waiting all along
		// (the buffers filling from fast sources).
		fill int
	}{
		{"player", []float64{0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1}, rate, 0},
		{"download", []float64{0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9}, 0, 0},
		{"player filling its buffers first", []float64{1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, rate, 0},
		{"player filling its buffers fast first", []float64{1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0}, rate, 4},
		{"player starving", []float64{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, rate, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m paceMeter
			now, off, waited := time.Unix(0, 0), int64(0), time.Duration(0)
			got := m.update(now, off, waited)
			for k, share := range tc.phases {
				step := paceSample
				now = now.Add(step)
				r := rate
				if k < tc.fill {
					r *= 4
				}
				off += int64(r * step.Seconds())
				waited += time.Duration(share * float64(step))
				got = m.update(now, off, waited)
			}
			if math.Abs(got-tc.want) > 0.05*rate {
				t.Errorf("pace %.0f B/s, want %.0f", got, tc.want)
			}
		})
	}
}

// TestReaderLastByteWaitsForVerifiedBytes: origin bytes pass to a player
// before their piece verifies, but not the response's last byte: it waits
// until every byte passed early matched its verified piece. Bytes of
// another version (a file changed in place on the origin mid-body, under
// the registered ETag) end the response one byte short, whether the
// origin's piece then fails verification or a peer's verified piece comes
// first; the registered bytes pass whole.
func TestReaderLastByteWaitsForVerifiedBytes(t *testing.T) {
	tests := []struct {
		name          string
		mixed, byPeer bool // the origin's piece 1 is half another version's; a peer supplies it verified
	}{
		{"registered bytes", false, false},
		{"registered bytes, a peer's piece first", false, true},
		{"mixed, the origin's piece fails", true, false},
		{"mixed, a peer's piece first", true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestServer(t)
			data := make([]byte, 100_000)
			rand.Read(data)
			info, err := fileinfo.Compute(t.Context(), "live/seg1.ts", bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			entry, err := s.cache.Create(info)
			if err != nil {
				t.Fatal(err)
			}
			defer entry.Release()
			tor, err := s.swarm.Open(info, nil)
			if err != nil {
				t.Fatal(err)
			}
			// No scheduler: the test is the origin and the peers.
			f := newFile(s, info, entry, tor, s.statsFor(info.Path))
			off1, _ := info.PieceBounds(1)
			piece1 := bytes.Clone(data[off1:])
			if tc.mixed {
				for i := len(piece1) / 2; i < len(piece1); i++ {
					piece1[i] ^= 0xff
				}
			}
			f.mu.Lock()
			f.partial[0] = &partialPiece{buf: data[:off1], n: int(off1)}
			f.partial[1] = &partialPiece{buf: piece1, n: len(piece1)}
			f.mu.Unlock()

			r := f.newReader(t.Context(), 0, info.Size)
			defer r.Close()
			var read atomic.Int64
			type result struct {
				got []byte
				err error
			}
			done := make(chan result, 1)
			go func() {
				var got []byte
				buf := make([]byte, 16<<10)
				for {
					n, err := r.Read(buf)
					got = append(got, buf[:n]...)
					read.Add(int64(n))
					if err != nil {
						if err == io.EOF {
							err = nil
						}
						done <- result{got, err}
						return
					}
				}
			}()
			for deadline := time.Now().Add(5 * time.Second); read.Load() < info.Size-1; time.Sleep(time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("the player got %d bytes of the arrived %d", read.Load(), info.Size)
				}
			}
			select {
			case res := <-done:
				t.Fatalf("the response ended (%d bytes, %v) before its pieces verified", len(res.got), res.err)
			default:
			}

			if !f.store(t.Context(), 0, data[:off1]) {
				t.Fatal("piece 0 did not verify")
			}
			if tc.byPeer {
				if err := entry.WritePiece(1, data[off1:]); err != nil {
					t.Fatal(err)
				}
			} else {
				f.store(t.Context(), 1, piece1)
			}
			res := <-done
			switch {
			case !tc.mixed && (res.err != nil || !bytes.Equal(res.got, data)):
				t.Fatalf("registered bytes: %d bytes, %v; want all %d", len(res.got), res.err, len(data))
			case tc.mixed && (res.err == nil || int64(len(res.got)) != info.Size-1):
				t.Fatalf("mixed bytes: %d bytes, %v; want %d and an error", len(res.got), res.err, info.Size-1)
			}
			t.Logf("%d bytes, %v", len(res.got), res.err)
		})
	}
}
