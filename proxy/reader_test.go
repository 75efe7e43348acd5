package proxy

import (
	"math"
	"testing"
	"time"
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
