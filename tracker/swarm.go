package tracker

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"time"
)

// member is a peer as a swarm keeps it: with the passkey that registered
// it and when it was last heard of.
type member struct {
	peer
	owner credID
	seen  time.Time
}

// swarm is one registered infohash's peers. refs counts the registered
// paths with this infohash: two paths holding the same bytes under the same
// file name share one swarm.
type swarm struct {
	refs       int
	downloaded int
	peers      map[peerKey]*member
	perIP      map[netip.Addr]int // listed peers per source address
}

// swarms is the in-memory peer state of every registered infohash. An
// infohash has a swarm exactly while at least one registered path has it,
// which is how announces for unregistered torrents are refused.
type swarms struct {
	ttl     time.Duration
	limit   int // peers per swarm
	perAddr int // peers per swarm and source address

	mu    sync.Mutex
	m     map[[20]byte]*swarm
	total int // live peers over all swarms, for the gauge
	// creds are the live passkeys: checked under mu, so that a revocation
	// and the drop of its peers are one step for every announce.
	creds map[credID]bool
}

func newSwarms(ttl time.Duration, limit, perAddr int) *swarms {
	return &swarms{ttl: ttl, limit: limit, perAddr: perAddr, m: make(map[[20]byte]*swarm), creds: make(map[credID]bool)}
}

// allow lets passkey id announce.
func (s *swarms) allow(id credID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creds[id] = true
}

// revoke refuses the passkeys ids from now on and drops every peer they
// registered.
func (s *swarms) revoke(ids []credID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gone := make(map[credID]bool, len(ids))
	for _, id := range ids {
		delete(s.creds, id)
		gone[id] = true
	}
	for _, sw := range s.m {
		for k, p := range sw.peers {
			if gone[p.owner] {
				s.removeLocked(sw, k)
			}
		}
	}
}

// retain adds a registered path with infohash h.
func (s *swarms) retain(h [20]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.m[h]
	if sw == nil {
		sw = &swarm{peers: make(map[peerKey]*member), perIP: make(map[netip.Addr]int)}
		s.m[h] = sw
	}
	sw.refs++
}

// release removes a registered path with infohash h; the last one drops
// the swarm and its peers, who were sharing bytes nobody serves any more.
func (s *swarms) release(h [20]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.m[h]
	if sw == nil {
		return
	}
	if sw.refs--; sw.refs > 0 {
		return
	}
	s.total -= len(sw.peers)
	delete(s.m, h)
}

// announce records a's peer (or removes it on EventStopped) and returns
// the swarm's counts and up to a.NumWant other live peers, picked at
// random. ok is false when a.InfoHash is not registered; err is
// errUnknownPasskey when a.Cred is not a live passkey. A peer is listed
// only while the swarm and its source address are under their caps, and
// only the passkey that registered it may refresh, change or stop it.
func (s *swarms) announce(a *Announce, now time.Time) (res announceResult, ok bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.creds[a.Cred] {
		return res, false, errUnknownPasskey
	}
	sw := s.m[a.InfoHash]
	if sw == nil {
		return res, false, nil
	}
	s.expireLocked(sw, now)
	key := peerKey{id: a.PeerID, ip: a.Addr.Addr()}
	p := sw.peers[key]
	switch {
	case p != nil && p.owner != a.Cred:
		// Somebody else's entry: answered, never touched.
	case a.Event == EventStopped:
		if p != nil {
			s.removeLocked(sw, key)
		}
	case p != nil:
		if a.Event == EventCompleted && !p.complete {
			sw.downloaded++
		}
		p.addr, p.complete, p.seen = a.Addr, a.Left == 0, now
		res.listed = true
	case len(sw.peers) < s.limit && sw.perIP[key.ip] < s.perAddr:
		if a.Event == EventCompleted {
			sw.downloaded++
		}
		sw.peers[key] = &member{peer: peer{id: a.PeerID, addr: a.Addr, complete: a.Left == 0}, owner: a.Cred, seen: now}
		sw.perIP[key.ip]++
		s.total++
		res.listed = true
	}

	cand := make([]peer, 0, len(sw.peers))
	for _, q := range sw.peers {
		if q.complete {
			res.complete++
		} else {
			res.incomplete++
		}
		cand = append(cand, q.peer)
	}
	res.peers = pickAnswer(cand, a.PeerID, a.NumWant)
	return res, true, nil
}

// sample returns up to n live peers of infohash h, for file-info answers.
func (s *swarms) sample(h [20]byte, n int, now time.Time) []peer {
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.m[h]
	if sw == nil {
		return nil
	}
	s.expireLocked(sw, now)
	cand := make([]peer, 0, len(sw.peers))
	for _, q := range sw.peers {
		cand = append(cand, q.peer)
	}
	return pick(cand, n)
}

// scrape returns infohash h's BEP 48 counts; ok is false when h is not
// registered.
func (s *swarms) scrape(h [20]byte, now time.Time) (sc scrapeCounts, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sw := s.m[h]
	if sw == nil {
		return sc, false
	}
	s.expireLocked(sw, now)
	for _, q := range sw.peers {
		if q.complete {
			sc.complete++
		} else {
			sc.incomplete++
		}
	}
	sc.downloaded = sw.downloaded
	return sc, true
}

// sweep drops every peer not heard of for the TTL, so that swarms nobody
// announces to any more do not hold memory or inflate the gauge, and
// returns how many live peers are left.
func (s *swarms) sweep(now time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sw := range s.m {
		s.expireLocked(sw, now)
	}
	return s.total
}

func (s *swarms) expireLocked(sw *swarm, now time.Time) {
	dead := now.Add(-s.ttl)
	for k, p := range sw.peers {
		if p.seen.Before(dead) {
			s.removeLocked(sw, k)
		}
	}
}

func (s *swarms) removeLocked(sw *swarm, k peerKey) {
	delete(sw.peers, k)
	if sw.perIP[k.ip]--; sw.perIP[k.ip] <= 0 {
		delete(sw.perIP, k.ip)
	}
	s.total--
}

// pick returns n of cand at random (all of them if there are fewer),
// reordering cand.
func pick(cand []peer, n int) []peer {
	if n >= len(cand) {
		return cand
	}
	for i := range n {
		j := i + rand.IntN(len(cand)-i)
		cand[i], cand[j] = cand[j], cand[i]
	}
	return cand[:n]
}
