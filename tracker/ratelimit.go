package tracker

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiters is a bounded set of per-address token buckets. IPv6 addresses
// share one bucket per /64, since one host usually owns a whole /64.
type limiters struct {
	limit rate.Limit
	burst int
	max   int

	mu sync.Mutex
	m  map[netip.Addr]*rate.Limiter
}

func newLimiters(limit rate.Limit, burst, max int) *limiters {
	return &limiters{limit: limit, burst: burst, max: max, m: make(map[netip.Addr]*rate.Limiter)}
}

// allow takes one token from a's bucket.
func (l *limiters) allow(a netip.Addr, now time.Time) bool {
	key := a.Unmap()
	if key.Is6() {
		if p, err := key.Prefix(64); err == nil {
			key = p.Addr()
		}
	}
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

// prune forgets buckets that have refilled: a new bucket would behave the
// same.
func (l *limiters) prune(now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.pruneLocked(now, l.max)
}

// pruneLocked drops full buckets, then arbitrary ones until at most keep
// remain: under a flood from many addresses, forgetting some buckets early
// is better than growing without bound.
func (l *limiters) pruneLocked(now time.Time, keep int) {
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
