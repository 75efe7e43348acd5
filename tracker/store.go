package tracker

import (
	"context"
	"errors"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// errNotFound is returned for a path nobody registered.
var errNotFound = errors.New("file not registered")

// maxPeersPerSwarm bounds one swarm's memory: past it, new peers still get
// answers but are not remembered until others leave or expire.
const maxPeersPerSwarm = 10000

// storeTimeout bounds one request's work on the store: a Redis that stops
// answering turns into failed requests, not piled-up ones.
const storeTimeout = 3 * time.Second

// Store is the tracker's state: the file registry and every registered
// infohash's swarm. Two implementations: the embedded one (a bbolt file
// and swarms in memory, for one process) and Redis (shared by every tracker
// replica on it, so that any replica answers any request the same way).
//
// Every implementation keeps these invariants: an infohash has a swarm
// exactly while a registered path has it, so announces for anything else
// are refused; a peer is its id and IP together (peerKey); a swarm holds at
// most its cap of peers, and of those at most perAddr from one IP; only a
// live passkey announces, and a peer belongs to the passkey that
// registered it; a peer not heard of for the TTL is gone.
type Store interface {
	// Register stores fi under fi.Path and moves the path from its old
	// swarm, if the bytes changed, to fi's. It returns the record it
	// replaced, nil for a new path.
	Register(ctx context.Context, fi *fileinfo.Info) (old *fileinfo.Info, err error)
	// Lookup returns path p's record, or an error wrapping errNotFound.
	Lookup(ctx context.Context, p string) (*fileinfo.Info, error)
	// Files returns every record, in path order.
	Files(ctx context.Context) ([]*fileinfo.Info, error)
	// Announce records a's peer (or removes it on EventStopped) and
	// returns the swarm's counts and up to a.NumWant other live peers,
	// picked at random. ok is false when a.InfoHash is not registered;
	// err wraps errUnknownPasskey when a.Cred is not a live passkey. The
	// swarm lists the peer only while it and the peer's IP are under their
	// caps, and only a.Cred's own entries change: a peer is refreshed or
	// stopped only by the passkey that registered it.
	Announce(ctx context.Context, a *Announce) (res announceResult, ok bool, err error)
	// AddPasskey lets credential c's passkey announce.
	AddPasskey(ctx context.Context, c Credential) error
	// Passkey returns the live credential id, ok false when there is none
	// (never issued, or revoked).
	Passkey(ctx context.Context, id credID) (c Credential, ok bool, err error)
	// Passkeys returns every live credential, by name.
	Passkeys(ctx context.Context) ([]Credential, error)
	// Revoke removes every credential named name, drops the peers that
	// announced with one, and returns how many credentials it removed.
	Revoke(ctx context.Context, name string) (int, error)
	// Peers returns up to n live peers of infohash h (none when h is not
	// registered), for file-info answers.
	Peers(ctx context.Context, h [20]byte, n int) ([]peer, error)
	// Scrape returns infohash h's BEP 48 counts; ok is false when h is not
	// registered.
	Scrape(ctx context.Context, h [20]byte) (sc scrapeCounts, ok bool, err error)
	// Sweep drops every expired peer and returns the store's totals.
	Sweep(ctx context.Context) (storeStats, error)
	// Ping reports whether the store can answer, for /readyz.
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// swarmLimits are a store's bounds on its swarms.
type swarmLimits struct {
	ttl      time.Duration // a peer not heard of for ttl is gone
	perSwarm int
	perAddr  int // peers of one IP in one swarm
}

// peerKey identifies a peer by its id and IP together, so that nobody can
// replace or stop another host's entry by sending its peer id.
type peerKey struct {
	id [20]byte
	ip netip.Addr
}

type peer struct {
	id       [20]byte
	addr     netip.AddrPort
	complete bool
}

// announceResult is what an announce answer needs.
type announceResult struct {
	complete, incomplete int
	peers                []peer
	// listed: the swarm lists the announcing peer now (false once it
	// stopped, or when a cap or another passkey's entry kept it out).
	listed bool
}

// scrapeCounts are one swarm's BEP 48 counts.
type scrapeCounts struct {
	complete, incomplete, downloaded int
}

// storeStats are a store's totals, for the gauges. A Redis store's are
// the whole fleet's, whichever replica reports them.
type storeStats struct {
	files, peers int
}

// openStore opens the store cfg names: Redis for a redis:// URL, the
// embedded store in cfg.DataDir otherwise.
func openStore(ctx context.Context, cfg Config) (Store, error) {
	lim := swarmLimits{ttl: cfg.PeerTTL, perSwarm: maxPeersPerSwarm, perAddr: cfg.PeersPerAddr}
	if isRedisURL(cfg.Store) {
		return openRedisStore(ctx, cfg.Store, lim)
	}
	return openBoltStore(cfg.DataDir, lim)
}

// storeName names a store for the log, without its password.
func storeName(store string) string {
	if store == "" {
		return "bbolt"
	}
	if u, err := url.Parse(store); err == nil {
		return u.Redacted()
	}
	return "redis"
}

func isRedisURL(s string) bool {
	return strings.HasPrefix(s, "redis://") || strings.HasPrefix(s, "rediss://")
}

// pickAnswer is the answer's share of a swarm's peers: up to n of cand at
// random, leaving out the announcing peer's own id.
func pickAnswer(cand []peer, self [20]byte, n int) []peer {
	out := cand[:0]
	for _, q := range cand {
		if q.id != self {
			out = append(out, q)
		}
	}
	return pick(out, n)
}
