package origin

import (
	"fmt"
	"testing"
	"time"
)

func TestReportBook(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	piece := func(i int) *int { return &i }
	type rep struct {
		infohash, remote, user string
		piece                  *int
		at                     time.Duration
		want                   reportAction
	}
	for _, tc := range []struct {
		name string
		reps []rep
	}{
		{"a piece is checked once", []rep{
			{"h1", "a", "", piece(3), 0, actionCheckPiece},
			{"h1", "b", "", piece(3), time.Second, actionRegister},
		}},
		{"one piece check per address", []rep{
			{"h1", "a", "", piece(3), 0, actionCheckPiece},
			{"h1", "a", "", piece(4), time.Second, actionRegister},
			{"h1", "b", "", piece(4), time.Second, actionCheckPiece},
		}},
		{"again after the window", []rep{
			{"h1", "a", "", piece(3), 0, actionCheckPiece},
			{"h1", "a", "", piece(3), time.Minute, actionCheckPiece},
		}},
		{"a new version starts afresh", []rep{
			{"h1", "a", "", piece(3), 0, actionCheckPiece},
			{"h2", "a", "", piece(3), time.Second, actionCheckPiece},
		}},
		{"no piece, no credential: never a rehash", []rep{
			{"h1", "a", "", nil, 0, actionRegister},
			{"h1", "b", "", nil, 0, actionRegister},
			{"h1", "c", "", nil, 0, actionRegister},
			{"h1", "d", "", nil, 0, actionRegister},
		}},
		{"three users rehash the whole file", []rep{
			{"h1", "a", "ann", nil, 0, actionRegister},
			{"h1", "a", "ann", nil, time.Second, actionRegister},
			{"h1", "b", "bob", nil, 2 * time.Second, actionRegister},
			{"h1", "c", "cy", nil, 3 * time.Second, actionRehash},
			{"h1", "c", "cy", nil, 4 * time.Second, actionRegister},
		}},
		{"votes expire", []rep{
			{"h1", "a", "ann", nil, 0, actionRegister},
			{"h1", "b", "bob", nil, time.Second, actionRegister},
			{"h1", "c", "cy", nil, time.Minute + time.Second, actionRegister},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newReportBook(time.Minute, 3, 100)
			for i, r := range tc.reps {
				if got := b.decide("f.mp4", r.infohash, r.piece, r.remote, r.user, t0.Add(r.at)); got != r.want {
					t.Errorf("report %d: %v, want %v", i, got, r.want)
				}
			}
		})
	}
	// 100 reports from 20 addresses, each naming a piece of its own:
	// 20 checks.
	b := newReportBook(time.Minute, 3, 100)
	checks := 0
	for i := range 100 {
		if b.decide("f.mp4", "h1", piece(i), fmt.Sprint(i%20), "", t0) == actionCheckPiece {
			checks++
		}
	}
	if checks != 20 {
		t.Errorf("%d piece checks, want 20", checks)
	}
	// The book's memory is bounded by maxAddr per file.
	b = newReportBook(time.Minute, 3, 5)
	checks = 0
	for i := range 50 {
		if b.decide("f.mp4", "h1", piece(i), fmt.Sprint(i), "", t0) == actionCheckPiece {
			checks++
		}
	}
	if checks != 5 {
		t.Errorf("%d piece checks with room for 5 addresses", checks)
	}
}
