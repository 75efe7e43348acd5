package plan

import (
	"slices"
	"time"
)

// Priority says how soon a piece is wanted from peers.
type Priority int8

// Priorities, lowest first.
const (
	None Priority = iota
	Normal
	Readahead
	Now
)

// Config holds the planner's constants, the same for every call.
type Config struct {
	// UrgentPieces at and after a playhead are wanted from peers at once.
	UrgentPieces int
	// ReadaheadBytes past those are wanted soon.
	ReadaheadBytes int64
	// HeadBytes of the file, where players look for the container's index,
	// are wanted from peers (only) while anyone reads.
	HeadBytes int64
	// MaxRuns bounds the origin requests under way for the file.
	MaxRuns int
	// MaxRunBytes bounds a request for pieces a reader waits on; FillRunBytes
	// one that fills the file for a reader without a deadline while peers
	// are connected: short, so that what peers announce meanwhile counts.
	MaxRunBytes, FillRunBytes int64
	// Lead: a piece whose deadline is this close goes to the origin.
	Lead time.Duration
	// FirstGrace is how long the piece under a new playhead waits for the
	// connected peers that have it.
	FirstGrace time.Duration
	// PeerStall: connected peers that delivered nothing for this long do
	// not count as delivering.
	PeerStall time.Duration
	// OriginUplinks is the origin's rate in proxies' uplinks (100 Mbit/s
	// against 10 Mbit/s: 10), 0 to ignore it. A crowd of N downloading a
	// file of F bytes with a budget of B copies needs (N-B)·F/(N·up) for
	// what the uplinks carry; the origin alone would serve it in
	// N·F/(U·up). The swarm is no slower than the origin alone when
	// B >= N·(1-N/U): a small swarm (N < U) gets at least that budget
	// (at most U/4 copies, at N = U/2), a large one OriginCopies.
	OriginUplinks float64
	// PaceProbe: a reader without a pace whose playhead started less than
	// this long ago may be a player whose bitrate is not known yet (it
	// reads fast while the player's and the sockets' buffers fill): it is
	// asked for its window only, like a player, not for the whole file, so
	// that a new viewer neither floods its peers' uplinks nor has the
	// origin fill pieces it may never watch. 0: no probe.
	PaceProbe time.Duration
	// MaxBitrate is the fastest a player is expected to consume, bytes
	// per second (0: no limit). A reader whose pace is not known and that
	// read slower than this on average since its playhead started stays a
	// possible player after PaceProbe too: a viewer fed by the swarm
	// barely faster than its bitrate waits for pieces nearly all the time,
	// so its pace shows only once its buffers are full (about 30 s for
	// viewers 2 s apart); taken for a download meanwhile, it had the
	// origin send its share of the whole file. A download is served
	// faster than any bitrate as soon as the origin or a few uplinks feed
	// it.
	MaxBitrate float64
	// OriginCopies is how many copies of the file the proxies connected
	// together take from the origin for readers without a deadline, beyond
	// the pieces no peer has.
	OriginCopies float64
}

// Reader is one response being read.
type Reader struct {
	// Pos is the next byte it reads; Start the byte its playhead started
	// at (a new request or a seek), at Since.
	Pos, Start int64
	Since      time.Time
	// Pace is the bytes per second it consumes, 0 when it reads as fast as
	// it is served (no deadline).
	Pace float64
	// Peak is the highest average rate (bytes per second) it read at
	// since its playhead started, measured from PaceProbe on; 0 if none.
	// A download's average dips while it waits on a gap in the pieces
	// held; a starving player's never rose.
	Peak float64
	// End is the byte its response ends before (0: the file's end): no
	// piece past it is asked for this reader.
	End int64
	// Due, if set, says its range is wanted whole by then: a live
	// segment, prefetched or read by a player (see the package doc for
	// what it holds back). Such a reader has no playhead rule of its own.
	Due time.Time
}

// holds says whether the reader r with a Due keeps the origin from the file now:
// its Due is ahead, a piece of its range is missing, and the tracker
// counted other proxies in the swarm, or has not answered yet (Swarm is
// not 1). Alone, it is the swarm's supply and takes the origin at once.
func (r *Reader) holds(st *State) bool {
	if r.Due.IsZero() || !st.Now.Before(r.Due) || st.Swarm == 1 {
		return false
	}
	return slices.Contains(st.Have[int(min(r.Pos, st.Size-1)/st.PieceLength):r.last(st)], false)
}

// last is the piece after the reader's response's last one.
func (r *Reader) last(st *State) int {
	n := len(st.Have)
	if r.End <= 0 || r.End >= st.Size {
		return n
	}
	return int((r.End + st.PieceLength - 1) / st.PieceLength)
}

// Run is an origin request under way, for pieces [Next, End); Next is
// arriving.
type Run struct {
	Next, End int
	Urgent    bool
}

// State is what the planner knows about a file now.
type State struct {
	Now               time.Time
	Size, PieceLength int64
	// Have marks the verified pieces; Avail counts the connected peers
	// that have each piece.
	Have  []bool
	Avail []int
	// Peers is how many peers are connected; Connecting says the tracker
	// named peers that are not connected yet. Rank is this proxy's place
	// among the connected peers and itself (0 to Peers), the same order
	// at every one of them; Swarm is how many proxies the tracker counts
	// in the swarm, this one included (0: unknown).
	Peers      int
	Connecting bool
	Rank       int
	Swarm      int
	// LastPeerData is when peers last delivered data (or when they
	// connected).
	LastPeerData time.Time
	Readers      []Reader
	Runs         []Run
	// OriginPieces is how many pieces' worth of bytes the origin sent so
	// far.
	OriginPieces int
	// RetryAt: no new origin request before then (the last one failed).
	RetryAt time.Time
	// Seed makes this proxy's order of origin pieces its own.
	Seed uint64
}

// Start is an origin request to start for pieces [First, End), from byte
// Offset (First's first byte, or a new playhead inside First).
type Start struct {
	First, End int
	Offset     int64
	Urgent     bool
}

// Cut shortens State.Runs[Run]: it ends before piece End. End equal to the
// run's Next abandons the piece arriving (the swarm completed it).
type Cut struct {
	Run, End int
}

// Decision is what the proxy does: set every piece's Priority in the
// swarm, start and cut origin requests. Reuse one across calls: Plan
// keeps its slices.
type Decision struct {
	Priority []Priority
	Start    []Start
	Cut      []Cut

	// scratch
	origin, due, fill, withheld []bool
	class                       []int8
	left                        int // origin budget left, in pieces
	from                        int // the first download's playhead
	copies, swarm, owners       float64
	urgent                      []candidate
}

type candidate struct {
	piece  int
	offset int64
	order  float64
}

// Plan decides for st; d is overwritten.
func Plan(c *Config, st *State, d *Decision) {
	n := len(st.Have)
	d.reset(n)
	for _, r := range st.Runs {
		for i := r.Next; i < r.End; i++ {
			d.origin[i] = true
		}
	}
	d.budget(c, st)
	d.prioritise(c, st)
	urgentBusy, active := d.cut(st)
	// A held live segment is the swarm's to supply until Due: no piece of
	// it is withheld from peers for the origin.
	hold := slices.ContainsFunc(st.Readers, func(r Reader) bool { return r.holds(st) })
	if !hold {
		d.ownership(c, st)
	}
	if st.Now.Before(st.RetryAt) || hold {
		d.finish(n)
		return
	}
	free := c.MaxRuns - active
	d.urgentCandidates(c, st)
	if len(d.urgent) > 0 && free <= 0 {
		// A reader waits: runs that fill the file give their slot back
		// after the piece they are receiving.
		for k, r := range st.Runs {
			if !r.Urgent && r.End > r.Next+1 && !d.cutAlready(k) {
				d.Cut = append(d.Cut, Cut{Run: k, End: r.Next + 1})
			}
		}
	}
	for _, u := range d.urgent {
		if free <= 0 {
			break
		}
		if d.origin[u.piece] {
			continue
		}
		end := d.extend(u.piece, c.MaxRunBytes, st, func(i int) bool {
			return d.due[i] || (st.Avail[i] == 0 && d.Priority[i] >= Readahead)
		})
		d.Start = append(d.Start, Start{First: u.piece, End: end, Offset: max(u.offset, int64(u.piece)*st.PieceLength), Urgent: true})
		urgentBusy = true
		free--
	}
	if !urgentBusy {
		d.fillOrigin(c, st, free)
	}
	d.finish(n)
}

func (d *Decision) reset(n int) {
	d.Priority = resize(d.Priority, n)
	d.origin = resize(d.origin, n)
	d.due = resize(d.due, n)
	d.fill = resize(d.fill, n)
	d.withheld = resize(d.withheld, n)
	d.class = resize(d.class, n)
	d.Start = d.Start[:0]
	d.Cut = d.Cut[:0]
	d.urgent = d.urgent[:0]
}

// resize returns s with n zero elements, reusing its array.
func resize[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}

func (d *Decision) raise(st *State, i int, p Priority) {
	if !st.Have[i] && d.Priority[i] < p {
		d.Priority[i] = p
	}
}

// prioritise asks peers for each reader's window and, for readers without
// a deadline, for the rest of the file; it marks the pieces the origin may
// fill for them.
func (d *Decision) prioritise(c *Config, st *State) {
	n := len(st.Have)
	d.from = n
	noPeers := st.Peers == 0 && !st.Connecting
	ra := int((c.ReadaheadBytes + st.PieceLength - 1) / st.PieceLength)
	for _, r := range st.Readers {
		if r.Pos >= st.Size {
			continue
		}
		h := int(r.Pos / st.PieceLength)
		last := r.last(st)
		window := min(last, h+c.UrgentPieces+ra)
		end := last
		probing := c.probing(st, &r)
		if r.Pace > 0 || probing {
			end = window
		}
		for i := h; i < end; i++ {
			p := Normal
			switch {
			case i < h+c.UrgentPieces:
				p = Now
			case i < window:
				p = Readahead
			}
			d.raise(st, i, p)
			// A player ahead of every connected peer has the origin fill
			// its window, not only what is due: the viewers behind it then
			// have the window's time to take those pieces from it. A
			// reader that may be a player takes only the pieces it owns of
			// what nobody has: peers, or the proxies that own a piece,
			// supply the rest of its window.
			absent := st.Avail[i] == 0
			fill := r.Pace > 0 && absent ||
				r.Pace == 0 && (!probing || absent && st.owns(i, d.owners))
			d.fill[i] = d.fill[i] || fill || noPeers
		}
		if r.Pace == 0 && !probing {
			d.from = min(d.from, h)
		}
	}
	if len(st.Readers) > 0 {
		for i := range min(n, int(max(1, c.HeadBytes/st.PieceLength))) {
			d.raise(st, i, Normal)
		}
	}
}

// probing says whether r, a reader without a pace, may still be a player
// whose pace is not known yet (see PaceProbe and MaxBitrate) rather than
// a download.
func (c *Config) probing(st *State, r *Reader) bool {
	if r.Pace > 0 {
		return false
	}
	age := st.Now.Sub(r.Since)
	if age < c.PaceProbe {
		return true
	}
	return c.MaxBitrate > 0 && max(r.Peak, float64(r.Pos-r.Start)/age.Seconds()) < c.MaxBitrate
}

// cut ends runs at the first piece the swarm completed or nobody wants; it
// returns whether an urgent run goes on and how many runs do.
func (d *Decision) cut(st *State) (urgentBusy bool, active int) {
	for k, r := range st.Runs {
		end := r.End
		switch {
		case st.Have[r.Next]:
			end = r.Next
		case d.Priority[r.Next] == None:
			// Its bytes may have reached a player already: finish it for
			// the cache.
			end = r.Next + 1
		}
		for i := r.Next + 1; i < end; i++ {
			if st.Have[i] || d.Priority[i] == None {
				end = i
			}
		}
		if end < r.End {
			d.Cut = append(d.Cut, Cut{Run: k, End: end})
			for i := end; i < r.End; i++ {
				d.origin[i] = false
			}
		}
		if end > r.Next {
			active++
			urgentBusy = urgentBusy || r.Urgent
		}
	}
	return urgentBusy, active
}

func (d *Decision) cutAlready(run int) bool {
	for _, c := range d.Cut {
		if c.Run == run {
			return true
		}
	}
	return false
}

// urgentCandidates lists, soonest first, the pieces readers wait on that
// the origin must supply now.
func (d *Decision) urgentCandidates(c *Config, st *State) {
	stalled := st.Peers > 0 && st.Now.Sub(st.LastPeerData) >= c.PeerStall
	noPeers := st.Peers == 0 && !st.Connecting
	missing := func(i int) bool { return !st.Have[i] && !d.origin[i] }
	for _, r := range st.Readers {
		if r.Pos >= st.Size {
			continue
		}
		h := int(r.Pos / st.PieceLength)
		from := h
		switch {
		case !r.Due.IsZero():
			// A live segment has no playhead. Past Due, all it lacks is
			// late; before, the first proxy of its swarm (alone when it
			// announced) is its supply: it takes from the origin at once
			// what no connected peer has, whatever its rank.
			late, first := !st.Now.Before(r.Due), st.Swarm == 1
			for i := h; i < r.last(st) && (late || first); i++ {
				if missing(i) && (late || st.Avail[i] == 0) {
					d.addUrgent(i, r.Pos, 0)
				}
			}
		case int(r.Start/st.PieceLength) == h:
			// A new playhead: the first bytes never wait on the swarm.
			from = h + 1
			if missing(h) && (st.Avail[h] == 0 && !st.Connecting || st.Now.Sub(r.Since) >= c.FirstGrace) {
				d.addUrgent(h, r.Pos, 0)
			}
		}
		switch {
		case r.Pace > 0:
			for i := from; i < r.last(st); i++ {
				due := float64(int64(i)*st.PieceLength-r.Pos) / r.Pace
				if due >= c.Lead.Seconds() {
					break
				}
				if missing(i) {
					d.addUrgent(i, r.Pos, max(0, due))
				}
			}
		case from == h && missing(h) && stalled:
			// No deadline, but the peers do not deliver what it waits on:
			// those that have it stall, or none has it and the proxies
			// that own it do not fetch it (their readers are elsewhere, or
			// possible players whose windows lie before it). A crowd
			// whose every reader waited on such a piece sat for 26 s
			// with the origin idle.
			d.addUrgent(h, r.Pos, 0)
		}
		if noPeers {
			for i := h; i < min(r.last(st), h+c.UrgentPieces); i++ {
				if missing(i) {
					d.addUrgent(i, r.Pos, float64(i-h))
				}
			}
		}
	}
	slices.SortStableFunc(d.urgent, func(a, b candidate) int {
		switch {
		case a.order < b.order:
			return -1
		case a.order > b.order:
			return 1
		}
		return 0
	})
}

func (d *Decision) addUrgent(i int, pos int64, order float64) {
	d.due[i] = true
	d.urgent = append(d.urgent, candidate{piece: i, offset: pos, order: order})
}

// Classes of the pieces the origin fills for readers without a deadline,
// in the order it takes them (see ownership).
const (
	skip  int8 = iota // not the origin's, or not now
	seed              // nobody has it and it is this proxy's share; with no peers, any
	owned             // this proxy's budget, nobody has it
	rare              // this proxy's budget, peers have it
	other             // another proxy's share nobody has yet
)

// budget sets the copies of the file the swarm takes from the origin for
// readers without a deadline, the swarm they are shared among, and how
// many owners each piece has among the connected proxies.
func (d *Decision) budget(c *Config, st *State) {
	d.swarm = float64(max(st.Peers+1, st.Swarm))
	d.copies = c.OriginCopies
	if u := c.OriginUplinks; u > 0 {
		// A small swarm has few uplinks: it gets what keeps a crowd no
		// slower than the origin alone would serve it (see OriginUplinks).
		d.copies = max(d.copies, d.swarm*(1-d.swarm/u))
	}
	d.owners = d.copies * float64(st.Peers+1) / d.swarm
}

// ownership classes the pieces the origin may fill for readers without a
// deadline, and withholds from peers those it will take. Each piece nobody
// has is one connected proxy's share (by rank); the budget adds owners:
// about copies·(peers+1)/swarm proxies own each piece, the primary and the
// ranks after it, so that what the crowd takes from the origin adds up to
// the budget and the pieces a proxy owns are never asked of peers. (The
// origin taking the rarest pieces peers have, as the swarm does, took the
// very pieces peers were sending: up to seconds of them queued on a slow
// uplink crossed the wire for nothing.)
func (d *Decision) ownership(c *Config, st *State) {
	if st.Connecting && st.Peers == 0 {
		return
	}
	noPeers := st.Peers == 0
	n := len(st.Have)
	budget := int(d.copies * float64(n) / d.swarm)
	used := st.OriginPieces
	for _, o := range d.origin {
		if o {
			used++
		}
	}
	d.left = budget - used
	within := d.left > 0
	for i, ok := range d.fill {
		if !ok || st.Have[i] || d.origin[i] {
			continue
		}
		absent := st.Avail[i] == 0
		var k int8
		own := within && st.owns(i, d.owners)
		switch {
		case noPeers || absent && st.mine(i):
			k = seed
		case own && absent:
			k = owned
		case own:
			k = rare
		case absent:
			k = other
		}
		d.class[i] = k
		// Another's share may still come from its owner: peers are asked
		// for it as well.
		d.withheld[i] = !noPeers && k != skip && k != other
	}
}

// fillOrigin starts up to free requests for readers without a deadline,
// in the order of ownership's classes: what nobody has rarest first, then
// in this proxy's order (Seed); what the budget adds in the download's
// order from its playhead; with no peers at all, the file in order.
func (d *Decision) fillOrigin(c *Config, st *State, free int) {
	noPeers := st.Peers == 0
	runBytes := c.FillRunBytes
	if noPeers {
		runBytes = c.MaxRunBytes
	}
	for ; free > 0; free-- {
		best, bestClass, bestAvail, bestKey := -1, skip, 0, uint64(0)
		for i, k := range d.class {
			if k == skip || d.origin[i] || (k == owned || k == rare) && d.left <= 0 {
				continue
			}
			key, avail := uint64(i), st.Avail[i]
			switch {
			case k == owned || k == rare:
				// Other owners take these too: the download's order, so
				// that its player waits the least.
				key, avail = uint64((i-d.from+len(d.class))%len(d.class)), 0
			case !noPeers:
				key = mix(st.Seed + uint64(i))
			}
			if best < 0 || k < bestClass || k == bestClass && (avail < bestAvail || avail == bestAvail && key < bestKey) {
				best, bestClass, bestAvail, bestKey = i, k, avail, key
			}
		}
		if best < 0 {
			return
		}
		end := d.extend(best, runBytes, st, func(i int) bool { return d.class[i] == bestClass })
		d.Start = append(d.Start, Start{First: best, End: end, Offset: int64(best) * st.PieceLength})
		if bestClass == owned || bestClass == rare {
			d.left -= end - best
		}
	}
}

// owns says whether this proxy is one of piece i's owners (of owners on
// average): the one whose share it is, then the ranks after it.
func (st *State) owns(i int, owners float64) bool {
	n := st.Peers + 1
	k := (st.Rank - int(mix(uint64(i))%uint64(n)) + n) % n
	whole := int(owners)
	return k < whole || k == whole && float64(mix(^uint64(i))>>11)/(1<<53) < owners-float64(whole)
}

// mine says whether piece i is this proxy's share, by rank among the
// proxies connected to each other.
func (st *State) mine(i int) bool {
	return mix(uint64(i))%uint64(st.Peers+1) == uint64(st.Rank)
}

// extend marks [first, end) for the origin, end the first piece after
// first that is held, fetched, not ok, or past maxBytes.
func (d *Decision) extend(first int, maxBytes int64, st *State, ok func(int) bool) int {
	end := first + 1
	for end < len(st.Have) && int64(end+1-first)*st.PieceLength <= maxBytes &&
		!st.Have[end] && !d.origin[end] && ok(end) {
		end++
	}
	for i := first; i < end; i++ {
		d.origin[i] = true
	}
	return end
}

// finish withholds from peers what the origin supplies or will.
func (d *Decision) finish(n int) {
	for i := range n {
		if d.origin[i] || d.withheld[i] {
			d.Priority[i] = None
		}
	}
}

// mix is SplitMix64's finaliser: a per-proxy shuffle of piece indexes.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}
