package httpapi

import (
	"net/http"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// IPLimiter is a bounded set of per-address token buckets. IPv6 addresses
// share one bucket per /64, since one host usually owns a whole /64.
type IPLimiter struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[netip.Addr]*rate.Limiter
}

// NewIPLimiter returns a limiter that gives each address (or IPv6 /64)
// limit tokens a second and bursts of up to burst, and keeps at most max
// buckets.
func NewIPLimiter(limit rate.Limit, burst, max int) *IPLimiter {
	return &IPLimiter{limit: limit, burst: burst, max: max, m: make(map[netip.Addr]*rate.Limiter)}
}

// Allow takes one token from a's bucket and reports whether there was one.
func (l *IPLimiter) Allow(a netip.Addr) bool {
	return l.allowAt(a, time.Now())
}

// Exhausted reports whether a's bucket holds less than one token, without
// taking any.
func (l *IPLimiter) Exhausted(a netip.Addr) bool {
	return l.exhaustedAt(a, time.Now())
}

func (l *IPLimiter) exhaustedAt(a netip.Addr, now time.Time) bool {
	key := bucketKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[key]
	return lim != nil && lim.TokensAt(now) < 1
}

// bucketKey is the address whose bucket a uses: a itself, or its /64.
func bucketKey(a netip.Addr) netip.Addr {
	key := a.Unmap()
	if key.Is6() {
		if p, err := key.Prefix(64); err == nil {
			key = p.Addr()
		}
	}
	return key
}

func (l *IPLimiter) allowAt(a netip.Addr, now time.Time) bool {
	key := bucketKey(a)
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.m[key]
	if lim == nil {
		if len(l.m) >= l.max {
			l.pruneLocked(now, l.max*3/4)
		}
		lim = rate.NewLimiter(l.limit, l.burst)
		l.m[key] = lim
	}
	return lim.AllowN(now, 1)
}

// Prune forgets buckets that have refilled: a new bucket would behave the
// same. Allow keeps the set bounded on its own; calling Prune now and then
// only frees the memory of addresses that went quiet.
func (l *IPLimiter) Prune() {
	l.pruneAt(time.Now())
}

func (l *IPLimiter) pruneAt(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now, l.max)
}

// pruneLocked drops full buckets, then arbitrary ones until at most keep
// remain: under a flood from many addresses, forgetting some buckets early
// is better than growing without bound.
func (l *IPLimiter) pruneLocked(now time.Time, keep int) {
	for k, lim := range l.m {
		if lim.TokensAt(now) >= float64(l.burst) {
			delete(l.m, k)
		}
	}
	for k := range l.m {
		if len(l.m) <= keep {
			break
		}
		delete(l.m, k)
	}
}

// RemoteAddr is the IP the request came from; the zero Addr if the server
// did not set RemoteAddr to an IP and port. X-Forwarded-For is not
// trusted, or anyone could spread requests over made-up addresses.
func RemoteAddr(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
