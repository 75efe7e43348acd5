package swarm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anacrolix/torrent"
	"github.com/anacrolix/torrent/metainfo"
	pp "github.com/anacrolix/torrent/peer_protocol"
	"github.com/anacrolix/torrent/storage"
	"github.com/anacrolix/torrent/types"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// Config configures the BitTorrent client.
type Config struct {
	// Listen is the host:port peers connect to; port 0 picks a free one.
	Listen string
	// Storage holds every torrent's pieces.
	Storage storage.ClientImpl
	// DataDir is where the library may keep its own files; nothing of ours
	// goes there.
	DataDir string
	// Logger receives the library's warnings and errors.
	Logger *slog.Logger
	// HTTPClient makes the announces; nil makes one of the swarm's own.
	// It must verify certificates (the library's announce client does
	// not, which is one reason the swarm announces itself).
	HTTPClient *http.Client
}

// Swarm is a running BitTorrent client.
type Swarm struct {
	cl *torrent.Client
	hc *http.Client

	mu sync.Mutex
	// listening holds, per connection, the address its peer listens on, as
	// its extended handshake says. The library skips dialing an address
	// only when a connection has it as its remote address, which for a
	// connection the peer opened is the peer's ephemeral port: so every
	// announce naming a peer that had dialed in opened a second connection
	// to it (19 -> 38 at 20 proxies).
	listening map[*torrent.PeerConn]peerAddr
	// recent holds, per torrent, the peers handed to the library and when
	// (admit); a peer leaves it when its connection closes.
	recent map[*torrent.Torrent]map[netip.AddrPort]time.Time
}

type peerAddr struct {
	t    *torrent.Torrent
	addr netip.AddrPort
}

// New starts the client, listening on cfg.Listen over TCP only.
func New(cfg Config) (*Swarm, error) {
	host, portStr, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("swarm listen address %q: %w", cfg.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("swarm listen port %q: %w", portStr, err)
	}
	tc := torrent.NewDefaultClientConfig()
	tc.ListenHost = func(string) string { return host }
	tc.ListenPort = port
	tc.DataDir = cfg.DataDir
	tc.DefaultStorage = cfg.Storage
	tc.NoDHT = true
	tc.DisablePEX = true
	// uTP on loopback took 31 s instead of 1 s in one of two runs (notes).
	tc.DisableUTP = true
	tc.DisableIPv6 = true
	tc.DisableWebseeds = true
	tc.DisableWebtorrent = true
	tc.NoDefaultPortForwarding = true
	tc.Seed = true
	// The 1 MiB default stalls a download after a few MiB (notes, pitfall 1).
	tc.MaxAllocPeerRequestDataPerConn = 32 << 20
	// Two peers that dial each other at once keep the same one of the two
	// connections (the library orders them by peer ID).
	tc.DropDuplicatePeerIds = true
	if cfg.Logger != nil {
		tc.Slogger = cfg.Logger
	}
	s := &Swarm{listening: map[*torrent.PeerConn]peerAddr{}, recent: map[*torrent.Torrent]map[netip.AddrPort]time.Time{}}
	tc.Callbacks.ReadExtendedHandshake = func(pc *torrent.PeerConn, m *pp.ExtendedHandshakeMessage) {
		remote, err := netip.ParseAddrPort(pc.RemoteAddr.String())
		if err != nil || m.Port <= 0 || m.Port > 65535 {
			return
		}
		s.mu.Lock()
		s.listening[pc] = peerAddr{t: pc.Torrent(), addr: netip.AddrPortFrom(remote.Addr().Unmap(), uint16(m.Port))}
		s.mu.Unlock()
	}
	tc.Callbacks.PeerConnClosed = func(pc *torrent.PeerConn) {
		s.mu.Lock()
		if pa, ok := s.listening[pc]; ok {
			// Connected once, so not a tarpit: it may be dialed again at
			// once (after a restart, say).
			delete(s.recent[pa.t], pa.addr)
		}
		delete(s.listening, pc)
		s.mu.Unlock()
	}
	cl, err := torrent.NewClient(tc)
	if err != nil {
		return nil, fmt.Errorf("start bittorrent client on %s: %w", cfg.Listen, err)
	}
	s.cl = cl
	s.hc = cfg.HTTPClient
	if s.hc == nil {
		s.hc = newHTTPClient()
	}
	return s, nil
}

// Close stops the client and every torrent in it.
func (s *Swarm) Close() error {
	return errors.Join(s.cl.Close()...)
}

// Port is the TCP port peers connect to.
func (s *Swarm) Port() int { return s.cl.LocalPort() }

// BannedIPs lists the peers banned for sending data that failed its hash.
func (s *Swarm) BannedIPs() []string { return s.cl.BadPeerIPs() }

// Open joins the torrent of info, connecting to peers at once. Opening a
// torrent twice returns the same one. It fails when the storage cannot
// open the torrent (the cache has no entry for it, say), and then leaves
// nothing behind in the client. The caller announces it (Announce): the
// library's own announcer waits a minute after a failed announce, so a
// tracker that restarts would not hear from its peers for that long.
func (s *Swarm) Open(info *fileinfo.Info, peers []fileinfo.Peer) (*Torrent, error) {
	ib, err := infoBytes(info)
	if err != nil {
		return nil, err
	}
	var ih metainfo.Hash
	if err := ih.FromHexString(info.InfoHash); err != nil {
		return nil, fmt.Errorf("infohash %q: %w", info.InfoHash, err)
	}
	// The info goes in separately: AddTorrentOpt drops the storage's
	// error on the floor and keeps a torrent that never gets its info.
	t, added := s.cl.AddTorrentOpt(torrent.AddTorrentOpts{InfoHash: ih})
	if err := t.SetInfoBytes(ib); err != nil {
		if added {
			t.Drop()
		}
		return nil, fmt.Errorf("open torrent %s: %w", info.Path, err)
	}
	tt := &Torrent{t: t, s: s}
	tt.AddPeers(peers)
	return tt, nil
}

// Drop leaves the torrent with the given hex infohash, if open.
func (s *Swarm) Drop(infohash string) {
	var ih metainfo.Hash
	if ih.FromHexString(infohash) != nil {
		return
	}
	if t, ok := s.cl.Torrent(ih); ok {
		t.Drop()
		s.mu.Lock()
		delete(s.recent, t)
		s.mu.Unlock()
	}
}

func infoBytes(info *fileinfo.Info) ([]byte, error) {
	mi, err := info.MetaInfo("")
	if err != nil {
		return nil, err
	}
	return mi.InfoBytes, nil
}

// Torrent is one file's swarm.
type Torrent struct {
	t    *torrent.Torrent
	s    *Swarm
	size atomic.Int64 // SwarmSize
}

// AddPeers connects to peers the tracker named, except those connected
// already (whichever side dialed) or handed to the library within
// admitTTL, and at most maxPeersPerIP of one IP.
func (t *Torrent) AddPeers(peers []fileinfo.Peer) {
	var connected []netip.AddrPort
	t.s.mu.Lock()
	for _, pa := range t.s.listening {
		if pa.t == t.t {
			connected = append(connected, pa.addr)
		}
	}
	recent := t.s.recent[t.t]
	if recent == nil {
		recent = map[netip.AddrPort]time.Time{}
		t.s.recent[t.t] = recent
	}
	fresh := admit(peers, connected, recent, time.Now())
	t.s.mu.Unlock()
	pis := make([]torrent.PeerInfo, 0, len(fresh))
	for _, a := range fresh {
		pis = append(pis, torrent.PeerInfo{Addr: net.TCPAddrFromAddrPort(a), Source: torrent.PeerSourceTracker})
	}
	t.t.AddPeers(pis)
}

// maxPeersPerIP is how many peers of one IP a torrent dials in admitTTL,
// as many as the tracker lists by default. The library dials at most 25
// peers of a torrent at once (HalfOpenConnsPerTorrent), 10 a second, and a
// peer that accepts TCP but never answers holds its slot through two 4 s
// handshakes (plain, then obfuscated): 150 such peers of one address,
// listed by a hostile tracker or relay, kept a proxy from ever dialing the
// real peer (0% of a 4 MiB file from peers, 25 tarpit ports dialed; with
// this cap 94%, TestStrangersCannotDiluteTheSwarm). admitTTL lets a
// neighbour behind the same NAT that restarted on a new port back in.
const (
	maxPeersPerIP = 8
	admitTTL      = time.Minute
)

// admit returns the valid addresses of peers to hand to the library now:
// not connected, not handed to it within admitTTL (it holds or has tried
// them), and keeping at most maxPeersPerIP of any one IP among those and
// the connected ones, in the order given (the tracker's random one). It
// records them in recent, from which it drops what is older than
// admitTTL.
func admit(peers []fileinfo.Peer, connected []netip.AddrPort, recent map[netip.AddrPort]time.Time, now time.Time) []netip.AddrPort {
	for a, at := range recent {
		if now.Sub(at) >= admitTTL {
			delete(recent, a)
		}
	}
	seen := make(map[netip.AddrPort]bool, len(connected)+len(recent))
	count := map[netip.Addr]int{}
	note := func(a netip.AddrPort) {
		if !seen[a] {
			seen[a] = true
			count[a.Addr()]++
		}
	}
	for _, a := range connected {
		note(a)
	}
	for a := range recent {
		note(a)
	}
	var out []netip.AddrPort
	for _, p := range peers {
		ip, err := netip.ParseAddr(p.IP)
		if err != nil || p.Port <= 0 || p.Port > 65535 {
			continue
		}
		a := netip.AddrPortFrom(ip.Unmap(), uint16(p.Port))
		if seen[a] || count[a.Addr()] >= maxPeersPerIP {
			continue
		}
		note(a)
		recent[a] = now
		out = append(out, a)
	}
	return out
}

// Priority says how soon a piece is wanted from peers.
type Priority = types.PiecePriority

// Piece priorities, lowest first.
const (
	PriorityNone      = torrent.PiecePriorityNone
	PriorityNormal    = torrent.PiecePriorityNormal
	PriorityReadahead = torrent.PiecePriorityReadahead
	PriorityNow       = torrent.PiecePriorityNow
)

// SetPriority asks peers for piece i with the given urgency; PriorityNone
// stops asking.
func (t *Torrent) SetPriority(i int, p Priority) { t.t.Piece(i).SetPriority(p) }

// Availability counts into avail, for each piece, the connected peers
// that said they have it (bitfield, have-all and have messages). It
// returns how many peers are connected and this client's rank among them
// and itself, ordered by peer ID: connected to each other, the proxies of
// a swarm agree on their ranks, which lets them split the origin's pieces
// between them.
func (t *Torrent) Availability(avail []int) (peers, rank int) {
	clear(avail)
	self := t.s.cl.PeerID()
	for _, c := range t.t.PeerConns() {
		c.PeerPieces().Iterate(func(i uint32) bool {
			if int(i) < len(avail) {
				avail[i]++
			}
			return true
		})
		peers++
		if bytes.Compare(c.PeerID[:], self[:]) < 0 {
			rank++
		}
	}
	return peers, rank
}

// SwarmSize is how many clients the tracker counted in the swarm at the
// last announce, this one included; 0 before the first.
func (t *Torrent) SwarmSize() int { return int(t.size.Load()) }

// Sealed tells the client that piece i was completed outside it (by the
// origin fetcher), so it stops requesting it and announces it to peers.
func (t *Torrent) Sealed(i int) { t.t.Piece(i).UpdateCompletion() }

// Stats is a snapshot of a torrent's swarm.
type Stats struct {
	// Peers is the number of connected peers.
	Peers int
	// PeerBytes is the useful data read from peers.
	PeerBytes int64
	// UploadedBytes is the data sent to peers.
	UploadedBytes int64
	// BadPieces counts pieces from peers that failed their hash.
	BadPieces int64
	// GoodPieces counts pieces from peers that passed their hash.
	GoodPieces int64
}

// Stats returns the torrent's counters.
func (t *Torrent) Stats() Stats {
	st := t.t.Stats()
	return statsOf(st.ActivePeers, &st.PeerConns)
}

// Stats returns the whole client's counters: peers connected now over all
// torrents, and byte and piece totals over every torrent since the client
// started, dropped ones included, so that they never decrease.
func (s *Swarm) Stats() Stats {
	st := s.cl.Stats()
	return statsOf(st.ActivePeers, &st.PeerConns)
}

func statsOf(peers int, pc *torrent.ConnStats) Stats {
	return Stats{
		Peers:         peers,
		PeerBytes:     pc.BytesReadUsefulData.Int64(),
		UploadedBytes: pc.BytesWrittenData.Int64(),
		BadPieces:     pc.PiecesDirtiedBad.Int64(),
		GoodPieces:    pc.PiecesDirtiedGood.Int64(),
	}
}

// Closed reports whether the torrent was dropped.
func (t *Torrent) Closed() bool {
	select {
	case <-t.t.Closed():
		return true
	default:
		return false
	}
}

// InfoHash is the torrent's hex infohash.
func (t *Torrent) InfoHash() string { return t.t.InfoHash().HexString() }

// Announce tells the tracker at announceURL that this client takes part in
// t's swarm, connects to the peers it answers with, and returns the
// interval it asks for. The answer is decoded within bounds (announce.go):
// whoever answers, it costs at most a few MiB.
func (s *Swarm) Announce(ctx context.Context, t *Torrent, announceURL string, event Event) (time.Duration, error) {
	st := t.t.Stats()
	a, err := announce(ctx, s.hc, announceURL, &announceRequest{
		infoHash: t.t.InfoHash(),
		peerID:   s.cl.PeerID(),
		port:     s.Port(),
		uploaded: st.BytesWrittenData.Int64(),
		left:     t.t.BytesMissing(),
		event:    event,
	})
	if err != nil {
		return 0, fmt.Errorf("announce %s to %s: %w", t.InfoHash(), announceURL, err)
	}
	t.size.Store(a.swarm)
	t.AddPeers(a.peers)
	return a.interval, nil
}
