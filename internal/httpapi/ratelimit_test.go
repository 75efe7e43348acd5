package httpapi

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

func TestIPLimiterAllow(t *testing.T) {
	// Each step is one request from addr, at offset after the start; burst
	// 2 at one token a second.
	type step struct {
		addr   string
		offset time.Duration
		want   bool
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"burst then refused", []step{
			{"192.0.2.1", 0, true}, {"192.0.2.1", 0, true}, {"192.0.2.1", 0, false},
		}},
		{"refills with time", []step{
			{"192.0.2.1", 0, true}, {"192.0.2.1", 0, true}, {"192.0.2.1", 0, false},
			{"192.0.2.1", time.Second, true}, {"192.0.2.1", time.Second, false},
		}},
		{"one bucket per IPv4 address", []step{
			{"192.0.2.1", 0, true}, {"192.0.2.1", 0, true}, {"192.0.2.2", 0, true}, {"192.0.2.1", 0, false},
		}},
		{"IPv4-mapped IPv6 is the IPv4 address", []step{
			{"192.0.2.1", 0, true}, {"::ffff:192.0.2.1", 0, true}, {"192.0.2.1", 0, false},
		}},
		{"one bucket per IPv6 /64", []step{
			{"2001:db8:0:1::1", 0, true}, {"2001:db8:0:1:ffff::2", 0, true}, {"2001:db8:0:1::3", 0, false},
			{"2001:db8:0:2::1", 0, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewIPLimiter(rate.Limit(1), 2, 100)
			start := time.Now()
			for i, s := range tc.steps {
				if got := l.allowAt(netip.MustParseAddr(s.addr), start.Add(s.offset)); got != s.want {
					t.Fatalf("step %d (%s at +%v): allowed %v, want %v", i, s.addr, s.offset, got, s.want)
				}
			}
		})
	}
}

func TestIPLimiterBounded(t *testing.T) {
	// A flood from many addresses never holds more than max buckets.
	l := NewIPLimiter(rate.Limit(1), 2, 8)
	now := time.Now()
	for i := range 1000 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		if !l.allowAt(a, now) {
			t.Fatalf("first request from %s refused", a)
		}
		if n := len(l.m); n > 8 {
			t.Fatalf("%d buckets after %d addresses, want at most 8", n, i+1)
		}
	}
}

func TestIPLimiterPrune(t *testing.T) {
	l := NewIPLimiter(rate.Limit(1), 2, 100)
	now := time.Now()
	busy, quiet := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")
	l.allowAt(busy, now)
	l.allowAt(busy, now)
	l.allowAt(quiet, now.Add(-time.Minute))
	l.pruneAt(now)
	// The quiet address's bucket has refilled and is forgotten; the busy
	// one is still empty and must be kept, or pruning would reset a limit.
	if _, ok := l.m[quiet]; ok {
		t.Error("refilled bucket kept")
	}
	if l.allowAt(busy, now) {
		t.Error("pruning gave the busy address its burst back")
	}
	l.pruneAt(now.Add(time.Minute))
	if n := len(l.m); n != 0 {
		t.Errorf("%d buckets after all refilled, want 0", n)
	}
}

func TestRemoteAddr(t *testing.T) {
	for _, tc := range []struct {
		remote string
		want   netip.Addr
	}{
		{"127.0.0.1:8080", netip.MustParseAddr("127.0.0.1")},
		{"[::1]:8080", netip.MustParseAddr("::1")},
		{"[::ffff:192.0.2.1]:8080", netip.MustParseAddr("192.0.2.1")},
		{"192.0.2.1", netip.Addr{}},
		{"", netip.Addr{}},
	} {
		t.Run(tc.remote, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			r.Header.Set("X-Forwarded-For", "203.0.113.9")
			if got := RemoteAddr(r); got != tc.want {
				t.Fatalf("RemoteAddr(%q) = %v, want %v", tc.remote, got, tc.want)
			}
		})
	}

}

func TestIPLimiterExhausted(t *testing.T) {
	l := NewIPLimiter(rate.Limit(1), 2, 100)
	now := time.Now()
	a := netip.MustParseAddr("2001:db8:0:1::1")
	if l.exhaustedAt(a, now) {
		t.Fatal("an address never seen is exhausted")
	}
	l.allowAt(a, now)
	if l.exhaustedAt(a, now) {
		t.Fatal("exhausted with a token left")
	}
	l.allowAt(a, now)
	if !l.exhaustedAt(netip.MustParseAddr("2001:db8:0:1::2"), now) {
		t.Fatal("not exhausted after the burst (same /64)")
	}
	if l.exhaustedAt(a, now.Add(time.Second)) {
		t.Fatal("still exhausted after a refill")
	}
	// Asking takes no token.
	for range 5 {
		l.exhaustedAt(a, now.Add(time.Second))
	}
	if !l.allowAt(a, now.Add(time.Second)) {
		t.Fatal("Exhausted took tokens")
	}
}

func TestCheckToken(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"", "", false},
		{" ", "", false},
		{"x", "", false},
		{"0123456789abcde", "", false},
		{"  0123456789abcde\t\n", "", false},
		{"0123456789abcdef", "0123456789abcdef", true},
		{" 0123456789abcdef\n", "0123456789abcdef", true},
		{"a token with inner spaces", "a token with inner spaces", true},
	} {
		got, err := CheckToken(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("CheckToken(%q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
