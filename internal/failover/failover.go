package failover

import (
	"slices"
	"sync"
	"time"
)

// Backoff bounds how long an upstream that failed is passed over: Base
// after its first failure in a row, doubling with each further one, at
// most Max. Small, so that an upstream back from a restart is used again
// within seconds.
type Backoff struct {
	Base, Max time.Duration
}

// DefaultBackoff is what New uses for a zero Backoff.
var DefaultBackoff = Backoff{Base: time.Second, Max: 30 * time.Second}

// Set is the health of n upstreams, numbered 0 to n-1 in the order the
// operator listed them. It is safe for concurrent use.
type Set struct {
	backoff Backoff
	// spread: successive orders start at successive healthy upstreams, so
	// that requests share the load; otherwise the first healthy one in the
	// operator's order leads (BEP 12: the first tracker that answers).
	spread bool

	mu     sync.Mutex
	health []health
	next   int // where the next spread order starts
}

type health struct {
	failures  int       // in a row
	downUntil time.Time // passed over until then
}

// New returns a set of n upstreams, all healthy. spread shares requests
// among the healthy ones; without it they go to the first healthy one.
func New(n int, spread bool, b Backoff) *Set {
	if b.Base <= 0 {
		b = DefaultBackoff
	}
	return &Set{backoff: b, spread: spread, health: make([]health, n)}
}

// Len is how many upstreams the set holds.
func (s *Set) Len() int { return len(s.health) }

// Order is the upstreams one request tries, in turn, at time now: the
// healthy ones first (rotated when spreading), then those passed over,
// the one due back soonest first. A request whose every upstream is down
// still tries them all rather than fail without asking.
func (s *Set) Order(now time.Time) []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var up, down []int
	for k := range s.health {
		i := k
		if s.spread {
			i = (s.next + k) % len(s.health)
		}
		if now.Before(s.health[i].downUntil) {
			down = append(down, i)
		} else {
			up = append(up, i)
		}
	}
	if s.spread && len(up) > 0 {
		s.next = (up[0] + 1) % len(s.health)
	}
	slices.SortStableFunc(down, func(a, b int) int { return s.health[a].downUntil.Compare(s.health[b].downUntil) })
	return append(up, down...)
}

// Failed records that upstream i did not answer at now: it is passed
// over for the backoff of its failures in a row.
func (s *Set) Failed(i int, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &s.health[i]
	d := s.backoff.Base << min(h.failures, 30)
	if d <= 0 || d > s.backoff.Max {
		d = s.backoff.Max
	}
	h.failures++
	h.downUntil = now.Add(d)
}

// OK records that upstream i answered: it is healthy again.
func (s *Set) OK(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.health[i] = health{}
}

// Down reports, for each upstream, whether it is passed over at now.
func (s *Set) Down(now time.Time) []bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]bool, len(s.health))
	for i, h := range s.health {
		out[i] = now.Before(h.downUntil)
	}
	return out
}
