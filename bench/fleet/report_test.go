package main

import (
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/netlab"
)

// The ideal times: 27 s at N=5 and 53 s at N=20 for 100 MB.
func TestIdealCrowd(t *testing.T) {
	for _, tc := range []struct {
		n    int
		size int64
		want time.Duration
	}{
		{5, 100e6, 26_666 * time.Millisecond},
		{20, 100e6, 53_333 * time.Millisecond},
		{1, 100e6, 16 * time.Second}, // the downlink alone
	} {
		o := options{n: tc.n, size: tc.size, originRate: 12_500_000, up: netlab.DefaultUp, down: netlab.DefaultDown}
		if got := idealCrowd(o); got.Round(time.Millisecond) != tc.want && (got-tc.want).Abs() > time.Millisecond {
			t.Errorf("N=%d: ideal %v, want %v", tc.n, got, tc.want)
		}
	}
}

func TestQuantile(t *testing.T) {
	xs := []int{5, 1, 4, 2, 3}
	for _, tc := range []struct {
		q    float64
		want int
	}{{0, 1}, {.5, 3}, {.95, 5}, {1, 5}} {
		if got := quantile(xs, tc.q); got != tc.want {
			t.Errorf("quantile(%v, %v) = %d, want %d", xs, tc.q, got, tc.want)
		}
	}
	if quantile([]int(nil), .5) != 0 {
		t.Error("quantile of nothing is not 0")
	}
}

func TestPlans(t *testing.T) {
	o := options{n: 3, size: 100e6, bitrate: 4e6, duration: 120 * time.Second, join: 2 * time.Second, seeks: 2, seekPlay: 10 * time.Second, seed: 1}
	for _, tc := range []struct {
		scenario  string
		segs      int
		length    int64
		rate      float64
		lastJoin  time.Duration
		wantError bool
	}{
		{"crowd", 1, 100e6, 0, 0, false},
		{"viewers", 1, 60e6, 500e3, 4 * time.Second, false},
		{"seek", 3, 5e6, 500e3, 4 * time.Second, false},
		{"nope", 0, 0, 0, 0, true},
	} {
		o.scenario = tc.scenario
		plans, joins, err := o.plans("u")
		if tc.wantError {
			if err == nil {
				t.Errorf("%s: no error", tc.scenario)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range plans {
			if len(p.Segments) != tc.segs || p.Rate != tc.rate {
				t.Errorf("%s: plan %+v", tc.scenario, p)
			}
			for _, s := range p.Segments {
				if s.Length != tc.length || s.Offset < 0 || s.Offset+s.Length > o.size {
					t.Errorf("%s: segment %+v", tc.scenario, s)
				}
			}
		}
		if joins[len(joins)-1] != tc.lastJoin {
			t.Errorf("%s: joins %v", tc.scenario, joins)
		}
	}
}
