package tracker

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/testtool"
)

// storeOpener opens a store on one backing state (a data directory, a
// Redis server); the test's cleanup closes it.
type storeOpener func(t *testing.T, ttl time.Duration, limit int) Store

// storeImpls are the stores the contract tests run against. shared says
// whether two stores may be open on one backing state at once (replicas).
var storeImpls = []struct {
	name    string
	shared  bool
	backing func(t *testing.T) storeOpener
}{
	{"bbolt", false, func(t *testing.T) storeOpener {
		dir := t.TempDir()
		return func(t *testing.T, ttl time.Duration, limit int) Store {
			s, err := openBoltStore(dir, testLimits(ttl, limit))
			if err != nil {
				t.Fatal(err)
			}
			return closeAtEnd(t, s)
		}
	}},
	{"redis", true, func(t *testing.T) storeOpener {
		url := testtool.StartRedis(t)
		return func(t *testing.T, ttl time.Duration, limit int) Store {
			s, err := openRedisStore(t.Context(), url, testLimits(ttl, limit))
			if err != nil {
				t.Fatal(err)
			}
			return closeAtEnd(t, s)
		}
	}},
}

func testLimits(ttl time.Duration, limit int) swarmLimits {
	return swarmLimits{ttl: ttl, perSwarm: limit, perAddr: DefaultPeersPerAddr}
}

// testCred is the passkey every store test announces with unless it says
// otherwise; closeAtEnd issues it.
var testCred = Credential{ID: passkeyID("test passkey"), Name: "test"}

func closeAtEnd(t *testing.T, s Store) Store {
	if err := s.AddPasskey(t.Context(), testCred); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// forEachStore runs test against every store implementation.
func forEachStore(t *testing.T, test func(t *testing.T, open storeOpener, shared bool)) {
	for _, impl := range storeImpls {
		t.Run(impl.name, func(t *testing.T) { test(t, impl.backing(t), impl.shared) })
	}
}

func hashOf(t *testing.T, fi *fileinfo.Info) [20]byte {
	t.Helper()
	h, err := parseHash(fi.InfoHash)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func register(t *testing.T, s Store, fi *fileinfo.Info) *fileinfo.Info {
	t.Helper()
	old, err := s.Register(t.Context(), fi)
	if err != nil {
		t.Fatalf("register %s: %v", fi.Path, err)
	}
	return old
}

// ann announces peer id from addr on fi's infohash with testCred.
func ann(t *testing.T, s Store, h [20]byte, id, addr string, left int64, ev Event) (announceResult, bool) {
	t.Helper()
	res, ok, err := annAs(t, s, testCred.ID, h, id, addr, left, ev)
	if err != nil {
		t.Fatalf("announce %s from %s: %v", id, addr, err)
	}
	return res, ok
}

// annAs announces peer id from addr on fi's infohash with passkey cred.
func annAs(t *testing.T, s Store, cred credID, h [20]byte, id, addr string, left int64, ev Event) (announceResult, bool, error) {
	t.Helper()
	a := Announce{InfoHash: h, PeerID: [20]byte([]byte(peerID(id))), Addr: netip.MustParseAddrPort(addr),
		Left: left, Event: ev, NumWant: DefaultNumWant, Cred: cred}
	return s.Announce(t.Context(), &a)
}

func addrs(ps []peer) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, p.addr.String())
	}
	slices.Sort(out)
	return out
}

func TestStoreRegistry(t *testing.T) {
	forEachStore(t, func(t *testing.T, open storeOpener, _ bool) {
		s := open(t, time.Minute, maxPeersPerSwarm)
		b, _ := testFile(t, "b/clip.mp4", 100<<10)
		a, _ := testFile(t, "a.mp4", 50<<10)
		if old := register(t, s, b); old != nil {
			t.Fatalf("new path replaced %+v", old)
		}
		register(t, s, a)
		if old := register(t, s, b); old == nil || !old.Equal(b) {
			t.Fatalf("re-registration replaced %+v, want the first record", old)
		}
		got, err := s.Lookup(t.Context(), "b/clip.mp4")
		if err != nil || !got.Equal(b) || got.ETag != b.ETag || len(got.Origins) != 2 {
			t.Fatalf("lookup: %+v %v", got, err)
		}
		if _, err := s.Lookup(t.Context(), "nope.mp4"); !errors.Is(err, errNotFound) {
			t.Fatalf("lookup of an unknown path: %v, want errNotFound", err)
		}
		all, err := s.Files(t.Context())
		if err != nil || len(all) != 2 || all[0].Path != "a.mp4" || all[1].Path != "b/clip.mp4" {
			t.Fatalf("files (want path order): %v %v", all, err)
		}
		st, err := s.Sweep(t.Context())
		if err != nil || st.files != 2 || st.peers != 0 {
			t.Fatalf("sweep stats %+v %v, want 2 files and no peers", st, err)
		}
		if err := s.Ping(t.Context()); err != nil {
			t.Fatalf("ping: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		// What was registered survives, and so do its swarms.
		s = open(t, time.Minute, maxPeersPerSwarm)
		if got, err := s.Lookup(t.Context(), "a.mp4"); err != nil || !got.Equal(a) {
			t.Fatalf("after reopening: %+v %v", got, err)
		}
		if _, ok := ann(t, s, hashOf(t, a), "p", "127.0.0.1:7000", 0, EventStarted); !ok {
			t.Fatal("after reopening, announces for a registered file are refused")
		}
	})
}

func TestStoreSwarm(t *testing.T) {
	forEachStore(t, func(t *testing.T, open storeOpener, _ bool) {
		s := open(t, time.Minute, maxPeersPerSwarm)
		fi, _ := testFile(t, "v/clip.mp4", 100<<10)
		register(t, s, fi)
		h := hashOf(t, fi)
		for _, step := range []struct {
			name                 string
			id, addr             string
			left                 int64
			ev                   Event
			complete, incomplete int
			peers                []string
		}{
			{"leecher starts alone", "a", "127.0.0.1:7001", 1000, EventStarted, 0, 1, []string{}},
			{"seeder sees leecher", "b", "127.0.0.1:7002", 0, EventStarted, 1, 1, []string{"127.0.0.1:7001"}},
			{"leecher sees seeder", "a", "127.0.0.1:7001", 1000, EventNone, 1, 1, []string{"127.0.0.1:7002"}},
			{"leecher completes", "a", "127.0.0.1:7001", 0, EventCompleted, 2, 0, []string{"127.0.0.1:7002"}},
			{"completed twice counts once", "a", "127.0.0.1:7001", 0, EventCompleted, 2, 0, []string{"127.0.0.1:7002"}},
			{"an IPv6 peer", "c", "[::1]:7003", 5, EventStarted, 2, 1, []string{"127.0.0.1:7001", "127.0.0.1:7002"}},
			{"seeder stops", "b", "127.0.0.1:7002", 0, EventStopped, 1, 1, []string{"127.0.0.1:7001", "[::1]:7003"}},
			{"stopping twice is harmless", "b", "127.0.0.1:7002", 0, EventStopped, 1, 1, []string{"127.0.0.1:7001", "[::1]:7003"}},
		} {
			res, ok := ann(t, s, h, step.id, step.addr, step.left, step.ev)
			if !ok {
				t.Fatalf("%s: refused", step.name)
			}
			if res.complete != step.complete || res.incomplete != step.incomplete {
				t.Errorf("%s: complete %d incomplete %d, want %d %d", step.name, res.complete, res.incomplete, step.complete, step.incomplete)
			}
			if got := addrs(res.peers); !slices.Equal(got, step.peers) {
				t.Errorf("%s: peers %v, want %v", step.name, got, step.peers)
			}
		}
		sc, ok, err := s.Scrape(t.Context(), h)
		if err != nil || !ok || sc != (scrapeCounts{complete: 1, incomplete: 1, downloaded: 1}) {
			t.Fatalf("scrape %+v %v %v", sc, ok, err)
		}
		ps, err := s.Peers(t.Context(), h, 10)
		if err != nil || !slices.Equal(addrs(ps), []string{"127.0.0.1:7001", "[::1]:7003"}) {
			t.Fatalf("peers %v %v", addrs(ps), err)
		}
		for _, p := range ps {
			if p.addr.Port() == 7001 && (!p.complete || p.id != [20]byte([]byte(peerID("a")))) {
				t.Fatalf("peer a read back as %+v", p)
			}
		}
		if ps, err := s.Peers(t.Context(), h, 1); err != nil || len(ps) != 1 {
			t.Fatalf("one peer asked for: %v %v", addrs(ps), err)
		}
		// numwant 0 counts but lists nobody.
		a := Announce{InfoHash: h, PeerID: [20]byte([]byte(peerID("z"))), Addr: netip.MustParseAddrPort("127.0.0.9:1"), Left: 1, Cred: testCred.ID}
		if res, ok, err := s.Announce(t.Context(), &a); err != nil || !ok || len(res.peers) != 0 || res.incomplete != 2 {
			t.Fatalf("numwant 0: %+v %v %v", res, ok, err)
		}
		if st, err := s.Sweep(t.Context()); err != nil || st.peers != 3 {
			t.Fatalf("sweep stats %+v %v, want 3 peers", st, err)
		}
	})
}

// TestStoreInvariants: an infohash has a swarm exactly while a registered
// path has it; a peer is its id and IP together; a swarm holds at most its
// cap of peers.
func TestStoreInvariants(t *testing.T) {
	forEachStore(t, func(t *testing.T, open storeOpener, _ bool) {
		const limit = 3
		s := open(t, time.Minute, limit)
		v1, data := testFile(t, "x/clip.mp4", 200<<10)
		h1 := hashOf(t, v1)

		if _, ok := ann(t, s, h1, "early", "127.0.0.1:7000", 0, EventStarted); ok {
			t.Fatal("an announce for an unregistered infohash was accepted")
		}
		if _, ok, err := s.Scrape(t.Context(), h1); ok || err != nil {
			t.Fatalf("scrape of an unregistered infohash: ok %v, %v", ok, err)
		}
		if ps, err := s.Peers(t.Context(), h1, 10); len(ps) != 0 || err != nil {
			t.Fatalf("peers of an unregistered infohash: %v %v", ps, err)
		}

		// The same bytes under two paths share one swarm: changing one
		// path keeps it, changing the other drops it and its peers.
		register(t, s, v1)
		y := *v1
		y.Path = "y/clip.mp4"
		register(t, s, &y)
		ann(t, s, h1, "p1", "127.0.0.1:7001", 0, EventStarted)
		c, err := fileinfo.Compute(t.Context(), "x/clip.mp4", bytes.NewReader(data[:100<<10]), 100<<10)
		if err != nil {
			t.Fatal(err)
		}
		register(t, s, c)
		if res, ok := ann(t, s, h1, "p2", "127.0.0.1:7002", 0, EventStarted); !ok || len(res.peers) != 1 {
			t.Fatalf("shared infohash after one path changed: ok %v, %+v", ok, res)
		}
		y2, _ := testFile(t, "y/clip.mp4", 10<<10)
		register(t, s, y2)
		if _, ok := ann(t, s, h1, "p1", "127.0.0.1:7001", 0, EventNone); ok {
			t.Fatal("announces for bytes no path has any more are accepted")
		}
		// Registering the old bytes again starts their swarm afresh.
		register(t, s, v1)
		if res, ok := ann(t, s, h1, "p3", "127.0.0.1:7003", 0, EventStarted); !ok || len(res.peers) != 0 || res.complete != 1 {
			t.Fatalf("re-registered bytes: ok %v, %+v (the old peers must be gone)", ok, res)
		}

		// peerKey: the same id from another IP is another peer; from the
		// same IP with another port it replaces the entry; a stop from
		// another IP does not remove it.
		ann(t, s, h1, "same", "127.0.0.1:8001", 0, EventStarted)
		if res, _ := ann(t, s, h1, "same", "127.0.0.2:8001", 0, EventStarted); res.complete != 3 {
			t.Fatalf("same id, other IP: %d peers, want 3", res.complete)
		}
		// The cap (3) is reached: a new peer is answered, not kept.
		res, ok := ann(t, s, h1, "late", "127.0.0.1:8002", 1, EventStarted)
		if !ok || res.complete != 3 || res.incomplete != 0 || len(res.peers) != 3 {
			t.Fatalf("past the cap: ok %v, %+v", ok, res)
		}
		ann(t, s, h1, "same", "127.0.0.1:8009", 0, EventNone)
		ann(t, s, h1, "same", "127.0.0.3:8001", 0, EventStopped)
		ps, err := s.Peers(t.Context(), h1, 10)
		if want := []string{"127.0.0.1:7003", "127.0.0.1:8009", "127.0.0.2:8001"}; err != nil || !slices.Equal(addrs(ps), want) {
			t.Fatalf("peers %v %v, want %v", addrs(ps), err, want)
		}
	})
}

func TestStoreExpiry(t *testing.T) {
	forEachStore(t, func(t *testing.T, open storeOpener, _ bool) {
		const ttl = 200 * time.Millisecond
		s := open(t, ttl, maxPeersPerSwarm)
		fi, _ := testFile(t, "e.mp4", 10<<10)
		register(t, s, fi)
		h := hashOf(t, fi)
		ann(t, s, h, "a", "127.0.0.1:7001", 0, EventStarted)
		start := time.Now()
		if st, err := s.Sweep(t.Context()); err != nil || st.peers != 1 {
			t.Fatalf("sweep before the TTL: %+v %v", st, err)
		}
		// Wait for the peer to go, then check it did not go early.
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			st, err := s.Sweep(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if st.peers == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("peer still live %s after its last announce (TTL %s)", time.Since(start), ttl)
			}
		}
		if el := time.Since(start); el < ttl/2 {
			t.Fatalf("peer expired after %s, TTL %s", el, ttl)
		}
		if sc, ok, err := s.Scrape(t.Context(), h); err != nil || !ok || sc.complete+sc.incomplete != 0 {
			t.Fatalf("scrape after expiry: %+v %v %v", sc, ok, err)
		}
		// The swarm stays registered: the peer may come back.
		if res, ok := ann(t, s, h, "b", "127.0.0.1:7002", 0, EventStarted); !ok || len(res.peers) != 0 {
			t.Fatalf("after expiry: ok %v, %+v", ok, res)
		}
	})
}

// TestStoreReplicas: two stores on one backing state (two tracker
// replicas on one Redis) see each other's registrations and peers at once.
func TestStoreReplicas(t *testing.T) {
	forEachStore(t, func(t *testing.T, open storeOpener, shared bool) {
		if !shared {
			t.Skip("an embedded store belongs to one process")
		}
		a, b := open(t, time.Minute, maxPeersPerSwarm), open(t, time.Minute, maxPeersPerSwarm)
		fi, _ := testFile(t, "r.mp4", 10<<10)
		register(t, a, fi)
		if got, err := b.Lookup(t.Context(), fi.Path); err != nil || !got.Equal(fi) {
			t.Fatalf("registered through a, looked up through b: %+v %v", got, err)
		}
		h := hashOf(t, fi)
		ann(t, a, h, "pa", "127.0.0.1:7001", 0, EventStarted)
		if res, ok := ann(t, b, h, "pb", "127.0.0.1:7002", 1, EventStarted); !ok || !slices.Equal(addrs(res.peers), []string{"127.0.0.1:7001"}) {
			t.Fatalf("b's answer: ok %v, %+v", ok, res)
		}
		if ps, err := a.Peers(t.Context(), h, 10); err != nil || len(ps) != 2 {
			t.Fatalf("a's peers: %v %v", addrs(ps), err)
		}
		// Closing one replica loses nothing.
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		if ps, err := b.Peers(t.Context(), h, 10); err != nil || len(ps) != 2 {
			t.Fatalf("b's peers after a closed: %v %v", addrs(ps), err)
		}
	})
}

// TestRedisStoreUnreachable: a Redis that does not answer is a clear
// error when opening, within the store's timeout.
func TestRedisStoreUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := openRedisStore(ctx, "redis://"+closedAddr(t)+"/0", testLimits(time.Minute, 1))
	if err == nil {
		t.Fatal("opened a store on a port nobody listens on")
	}
	if _, err := openRedisStore(ctx, "redis://host:notaport/x", testLimits(time.Minute, 1)); err == nil {
		t.Fatal("accepted a malformed store URL")
	}
}

// closedAddr is a loopback address nobody listens on any more.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
