package failover

import (
	"slices"
	"testing"
	"time"
)

func TestSet(t *testing.T) {
	b := Backoff{Base: time.Second, Max: 4 * time.Second}
	t0 := time.Unix(1000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	// A step fails or heals an upstream, or asks for an order and checks it.
	type step struct {
		fail, ok int // upstream+1 to fail or heal; 0: none
		t        float64
		want     []int // the order at t, when not nil
	}
	tests := []struct {
		name   string
		n      int
		spread bool
		steps  []step
	}{
		{"first healthy leads", 3, false, []step{
			{want: []int{0, 1, 2}},
			{want: []int{0, 1, 2}},
			{fail: 1, t: 0, want: []int{1, 2, 0}},
			{t: 0.9, want: []int{1, 2, 0}},
			{t: 1, want: []int{0, 1, 2}}, // its backoff is over: retried first again
		}},
		{"spread rotates over the healthy", 3, true, []step{
			{want: []int{0, 1, 2}},
			{want: []int{1, 2, 0}},
			{want: []int{2, 0, 1}},
			{fail: 1, want: []int{1, 2, 0}},
			{want: []int{2, 1, 0}},
			{want: []int{1, 2, 0}},
		}},
		{"backoff doubles up to its bound", 2, false, []step{
			{fail: 1, t: 0},
			{t: 0.5, want: []int{1, 0}},
			{fail: 1, t: 1},
			{t: 2.9, want: []int{1, 0}}, // second failure: 2 s
			{t: 3, want: []int{0, 1}},
			{fail: 1, t: 3},
			{fail: 1, t: 3},
			{t: 6.9, want: []int{1, 0}}, // fourth: 8 s, bounded at 4 s
			{t: 7, want: []int{0, 1}},
		}},
		{"success heals at once", 2, false, []step{
			{fail: 1, t: 0},
			{fail: 1, t: 0},
			{ok: 1, t: 0, want: []int{0, 1}},
			{fail: 1, t: 0},
			{t: 1, want: []int{0, 1}}, // back to the first backoff
		}},
		{"all down: soonest back first", 3, true, []step{
			{fail: 1, t: 0},
			{fail: 3, t: 0},
			{fail: 3, t: 0},
			{fail: 2, t: 0.5},
			{t: 0.6, want: []int{0, 1, 2}},
			{t: 1.2, want: []int{0, 1, 2}}, // 0 is back, leads
			{t: 1.6, want: []int{1, 0, 2}}, // 1 too: spreading resumes past 0
		}},
		{"one upstream", 1, true, []step{
			{want: []int{0}},
			{fail: 1, want: []int{0}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New(tc.n, tc.spread, b)
			for k, st := range tc.steps {
				if st.fail > 0 {
					s.Failed(st.fail-1, at(st.t))
				}
				if st.ok > 0 {
					s.OK(st.ok - 1)
				}
				if st.want == nil {
					continue
				}
				if got := s.Order(at(st.t)); !slices.Equal(got, st.want) {
					t.Fatalf("step %d: order at %vs = %v, want %v", k, st.t, got, st.want)
				}
			}
		})
	}
}

func TestDown(t *testing.T) {
	s := New(2, false, Backoff{})
	now := time.Unix(1000, 0)
	s.Failed(1, now)
	if got := s.Down(now); !slices.Equal(got, []bool{false, true}) {
		t.Fatalf("down = %v, want [false true]", got)
	}
	if got := s.Down(now.Add(DefaultBackoff.Base)); !slices.Equal(got, []bool{false, false}) {
		t.Fatalf("down after the default backoff = %v, want [false false]", got)
	}
}
