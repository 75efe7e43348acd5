package plan

import (
	"reflect"
	"testing"
	"time"
)

var testConfig = Config{
	UrgentPieces:   1,
	ReadaheadBytes: 200, // two pieces
	HeadBytes:      100,
	MaxRuns:        2,
	MaxRunBytes:    300,
	FillRunBytes:   100,
	Lead:           2 * time.Second,
	FirstGrace:     300 * time.Millisecond,
	PeerStall:      2 * time.Second,
	OriginCopies:   2,
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// state is a 20-piece file of 100-byte pieces, nothing held, peers
// connected that have every piece, peers delivering.
func state() *State {
	const n = 20
	st := &State{Now: t0, Size: n * 100, PieceLength: 100, Have: make([]bool, n), Avail: make([]int, n),
		Peers: 3, LastPeerData: t0, Seed: 1, OriginPieces: 1000}
	for i := range st.Avail {
		st.Avail[i] = 3
	}
	return st
}

// download is a reader without a pace that started at byte 0 a while ago
// and now reads byte pos (past piece 0, which the tests hold).
func download(pos int64) Reader { return Reader{Pos: pos, Since: t0.Add(-time.Minute)} }

// player reads at 100 bytes a second (a piece a second).
func player(pos int64) Reader {
	return Reader{Pos: pos, Since: t0.Add(-time.Minute), Pace: 100}
}

// prefetch wants pieces 0-2 by due.
func prefetch(due time.Time) Reader { return Reader{Pos: 0, End: 300, Since: t0, Due: due} }

func TestPlan(t *testing.T) {
	tests := []struct {
		name   string
		config func(c *Config) // changes testConfig for this case
		setup  func(st *State)
		start  []Start // nil: no request starts
		cut    []Cut
		prio   map[int]Priority
		check  func(t *testing.T, st *State, d *Decision)
	}{{
		name: "no peers: the origin serves a new playhead and what follows, in order",
		setup: func(st *State) {
			st.Peers, st.Avail = 0, make([]int, 20)
			st.Have[0] = false
			st.Readers = []Reader{{Pos: 0, Since: t0}}
		},
		start: []Start{{First: 0, End: 3, Offset: 0, Urgent: true}},
		prio:  map[int]Priority{0: None, 2: None, 3: Normal, 19: Normal},
	}, {
		name: "no peers, run full: the rest fills in order from the playhead",
		setup: func(st *State) {
			st.Peers, st.Avail = 0, make([]int, 20)
			st.Readers = []Reader{download(500)}
			st.Have[5] = true
			st.Runs = []Run{{Next: 5, End: 6}}
			st.Have[5] = false
		},
		start: []Start{{First: 6, End: 9, Offset: 600}},
	}, {
		name: "the first bytes never wait on the swarm: no connected peer has them",
		setup: func(st *State) {
			st.Avail[5] = 0
			st.Readers = []Reader{{Pos: 550, Start: 550, Since: t0}}
		},
		start: []Start{{First: 5, End: 6, Offset: 550, Urgent: true}},
		prio:  map[int]Priority{5: None, 6: Readahead, 8: Normal},
	}, {
		name: "a new playhead a peer has waits FirstGrace for it",
		setup: func(st *State) {
			st.Readers = []Reader{{Pos: 550, Start: 550, Since: t0.Add(-100 * time.Millisecond)}}
		},
		prio: map[int]Priority{4: None, 5: Now, 6: Readahead, 8: Normal, 19: Normal},
	}, {
		name: "after FirstGrace the origin takes the piece under a new playhead",
		setup: func(st *State) {
			st.Readers = []Reader{{Pos: 550, Start: 550, Since: t0.Add(-300 * time.Millisecond)}}
		},
		start: []Start{{First: 5, End: 6, Offset: 550, Urgent: true}},
	}, {
		name: "the tracker named peers not connected yet: a new playhead waits FirstGrace, nothing else starts",
		setup: func(st *State) {
			st.Peers, st.Connecting, st.Avail = 0, true, make([]int, 20)
			st.Have[0] = false
			st.Readers = []Reader{{Pos: 0, Since: t0.Add(-100 * time.Millisecond)}}
		},
		prio: map[int]Priority{0: Now, 1: Readahead, 3: Normal},
	}, {
		name: "the tracker named peers not connected yet: after FirstGrace the origin takes a new playhead",
		setup: func(st *State) {
			st.Peers, st.Connecting, st.Avail = 0, true, make([]int, 20)
			st.Have[0] = false
			st.Readers = []Reader{{Pos: 0, Since: t0.Add(-300 * time.Millisecond)}}
		},
		start: []Start{{First: 0, End: 3, Offset: 0, Urgent: true}},
	}, {
		name: "download, budget spent: the origin takes only what no connected peer has",
		setup: func(st *State) {
			st.Avail[7], st.Avail[12] = 0, 0
			st.Readers = []Reader{download(0)}
		},
		check: func(t *testing.T, st *State, d *Decision) {
			got := map[int]bool{}
			for _, s := range d.Start {
				if s.End != s.First+1 || s.Urgent {
					t.Errorf("start %+v: want a one-piece fill", s)
				}
				got[s.First] = true
			}
			if !reflect.DeepEqual(got, map[int]bool{7: true, 12: true}) {
				t.Errorf("origin pieces %v, want 7 and 12", got)
			}
			if d.Priority[7] != None || d.Priority[12] != None || d.Priority[8] != Normal {
				t.Errorf("priorities 7, 12, 8 = %v %v %v: the origin's pieces are wanted from no peer", d.Priority[7], d.Priority[12], d.Priority[8])
			}
		},
	}, {
		name: "download waits for peers while they deliver what it reads",
		setup: func(st *State) {
			st.Readers = []Reader{download(550)}
		},
		prio: map[int]Priority{5: Now, 6: Readahead, 7: Readahead, 8: Normal},
	}, {
		name: "download: peers that have its piece but deliver nothing for PeerStall lose it to the origin",
		setup: func(st *State) {
			st.LastPeerData = t0.Add(-2 * time.Second)
			st.Readers = []Reader{download(550)}
		},
		start: []Start{{First: 5, End: 6, Offset: 550, Urgent: true}},
	}, {
		name: "download: a piece no connected peer has and this proxy does not own, with peers delivering nothing for PeerStall, goes to the origin",
		setup: func(st *State) {
			st.OriginPieces = 0
			st.LastPeerData = t0.Add(-2 * time.Second)
			st.Readers = []Reader{{Pos: 0, Since: t0.Add(-time.Second)}} // probing: the window only
			h := 1
			for st.owns(h, 2) {
				h++
			}
			for i := range h {
				st.Have[i] = true
			}
			st.Avail[h] = 0
			st.Readers[0].Pos = int64(h) * 100
		},
		check: func(t *testing.T, st *State, d *Decision) {
			h := int(st.Readers[0].Pos / 100)
			if len(d.Start) == 0 || d.Start[0].First != h || !d.Start[0].Urgent {
				t.Errorf("starts %+v, want an urgent run at piece %d first", d.Start, h)
			}
		},
	}, {
		name: "download: a piece no connected peer has and this proxy does not own waits for its owners while peers deliver",
		setup: func(st *State) {
			st.OriginPieces = 0
			st.Readers = []Reader{{Pos: 0, Since: t0.Add(-time.Second)}}
			h := 1
			for st.owns(h, 2) {
				h++
			}
			for i := range h {
				st.Have[i] = true
			}
			st.Avail[h] = 0
			st.Readers[0].Pos = int64(h) * 100
		},
		check: func(t *testing.T, st *State, d *Decision) {
			h := int(st.Readers[0].Pos / 100)
			for _, s := range d.Start {
				if s.First <= h && h < s.End {
					t.Errorf("start %+v takes piece %d, another's to fetch, while peers deliver", s, h)
				}
			}
		},
	}, {
		name: "download within budget: the origin takes the pieces this proxy owns in the download's order and withholds them from peers",
		setup: func(st *State) {
			st.OriginPieces = 0 // budget: 2 copies / 4 proxies = 10 pieces; each piece has 2 owners
			st.Readers = []Reader{download(0)}
			st.Have[0] = true
			for i := 1; i < 20; i++ {
				if !st.owns(i, 2) {
					st.Avail[i] = 1 // rarer than any this proxy owns: left to peers
				}
			}
		},
		check: func(t *testing.T, st *State, d *Decision) {
			first := ownedPiece(st, 2, 1)
			if len(d.Start) != 2 || d.Start[0].First != first || d.Start[1].First <= first {
				t.Fatalf("starts %+v, want two fills, the first at piece %d (the first owned)", d.Start, first)
			}
			for i := 1; i < 20; i++ {
				if own := st.owns(i, 2); own != (d.Priority[i] == None) {
					t.Errorf("piece %d (owned %v) priority %d: the origin's pieces, and only those, are wanted from no peer", i, own, d.Priority[i])
				}
			}
		},
	}, {
		name: "each piece has as many owners as the budget has copies, shared among the ranks",
		setup: func(st *State) {
			st.Readers = []Reader{download(0)}
		},
		check: func(t *testing.T, st *State, d *Decision) {
			for _, owners := range []float64{1, 1.5, 2, 3.5} {
				total := 0
				for i := range 20 {
					n := 0
					for rank := range 4 {
						st.Rank = rank
						if st.owns(i, owners) {
							n++
						}
					}
					if n < int(owners) || n > int(owners)+1 {
						t.Errorf("owners %.1f: piece %d has %d owners", owners, i, n)
					}
					st.Rank = int(mix(uint64(i)) % 4)
					if !st.owns(i, owners) {
						t.Errorf("owners %.1f: piece %d's share is not its owner's", owners, i)
					}
					total += n
				}
				if lo, hi := owners*20*0.75, owners*20*1.25; float64(total) < lo || float64(total) > hi {
					t.Errorf("owners %.1f: %d owned pieces in all, want about %.0f", owners, total, owners*20)
				}
			}
		},
	}, {
		name: "download at its budget: no more pieces peers have",
		setup: func(st *State) {
			st.OriginPieces = 9
			st.Runs = []Run{{Next: 10, End: 11}}
			st.Readers = []Reader{download(0)}
			st.Have[0] = true
		},
	}, {
		name: "connected proxies split the pieces nobody has by rank",
		setup: func(st *State) {
			st.Avail = make([]int, 20)
			st.Readers = []Reader{download(0)}
		},
		check: func(t *testing.T, st *State, d *Decision) {
			taken := map[int]int{}
			for rank := range 4 { // Peers 3: four proxies
				st.Rank, st.Seed = rank, uint64(rank)*7919
				Plan(&testConfig, st, d)
				if len(d.Start) != 2 {
					t.Fatalf("rank %d: starts %+v, want two fills", rank, d.Start)
				}
				for _, s := range d.Start {
					for i := s.First; i < s.End; i++ {
						if other, ok := taken[i]; ok {
							t.Errorf("piece %d taken by ranks %d and %d", i, other, rank)
						}
						taken[i] = rank
					}
				}
			}
		},
	}, {
		name: "its share fetched, a proxy takes any piece nobody has, in its own order",
		setup: func(st *State) {
			st.Avail = make([]int, 20)
			st.Readers = []Reader{download(0)}
			for i := range st.Have {
				st.Have[i] = i == 0 || mix(uint64(i))%4 == 0 // and rank 0's share
			}
		},
		check: func(t *testing.T, st *State, d *Decision) {
			seen := map[int]bool{}
			for seed := range uint64(8) {
				st.Seed = seed
				Plan(&testConfig, st, d)
				if len(d.Start) == 0 {
					t.Fatal("nothing started")
				}
				for _, s := range d.Start {
					seen[s.First] = true
				}
			}
			if len(seen) < 6 {
				t.Errorf("8 seeds' origin pieces cover %d distinct pieces: %v", len(seen), seen)
			}
		},
	}, {
		name:   "a small swarm's budget keeps a crowd no slower than the origin alone (OriginUplinks)",
		config: func(c *Config) { c.OriginUplinks = 10 },
		setup: func(st *State) {
			st.OriginPieces = 11 // budget: max(2, 4·(1-4/10)) = 2.4 copies / 4 proxies = 12 pieces
			st.Readers = []Reader{download(0)}
			st.Have[0] = true
		},
		check: func(t *testing.T, st *State, d *Decision) {
			first := ownedPiece(st, 2.4, 1)
			if want := []Start{{First: first, End: first + 1, Offset: int64(first) * 100}}; !reflect.DeepEqual(d.Start, want) {
				t.Errorf("start %+v, want %+v: one piece left in the budget, the first this proxy owns", d.Start, want)
			}
		},
	}, {
		name:   "a large swarm's budget is OriginCopies, whatever OriginUplinks",
		config: func(c *Config) { c.OriginUplinks = 10 },
		setup: func(st *State) {
			st.OriginPieces, st.Swarm = 2, 20 // max(2, 20·(1-20/10)) = 2 copies / 20 proxies = 2 pieces
			st.Readers = []Reader{download(0)}
		},
	}, {
		name: "the budget is shared among the swarm the tracker counts, not only the peers connected",
		setup: func(st *State) {
			st.OriginPieces, st.Swarm = 2, 20 // budget: 2 copies / 20 proxies = 2 pieces
			st.Readers = []Reader{download(0)}
		},
	}, {
		name: "player: the origin takes only pieces due within Lead",
		setup: func(st *State) {
			st.Readers = []Reader{player(500)}
		},
		start: []Start{{First: 5, End: 7, Offset: 500, Urgent: true}},
		prio:  map[int]Priority{5: None, 6: None, 7: Readahead, 8: None},
	}, {
		name: "the file's head is wanted from peers only",
		setup: func(st *State) {
			st.Have[0] = false
			st.Readers = []Reader{player(1500)}
		},
		start: []Start{{First: 15, End: 17, Offset: 1500, Urgent: true}},
		prio:  map[int]Priority{0: Normal, 1: None},
	}, {
		name: "player whose near pieces arrived: the rest is left to peers",
		setup: func(st *State) {
			st.Have[5], st.Have[6] = true, true
			st.Readers = []Reader{player(500)}
		},
		prio: map[int]Priority{5: None, 7: Readahead, 8: None},
	}, {
		name: "player ahead of every peer: the origin fills its window's pieces nobody has, not only those due",
		setup: func(st *State) {
			st.Have[5], st.Have[6] = true, true
			st.Avail[7], st.Avail[12] = 0, 0
			st.Readers = []Reader{player(500)}
		},
		start: []Start{{First: 7, End: 8, Offset: 700}},
		prio:  map[int]Priority{7: None, 12: None},
	}, {
		name: "player ahead of every peer: a due run extends over pieces nobody has",
		setup: func(st *State) {
			for i := 5; i < 20; i++ {
				st.Avail[i] = 0
			}
			st.Readers = []Reader{player(500)}
		},
		start: []Start{{First: 5, End: 8, Offset: 500, Urgent: true}},
	}, {
		name: "the swarm completed the piece an origin run receives: abandoned",
		setup: func(st *State) {
			st.Readers = []Reader{download(0)}
			st.Runs = []Run{{Next: 3, End: 6}}
			st.Have[3] = true
		},
		cut: []Cut{{Run: 0, End: 3}},
	}, {
		name: "the swarm completed a later piece of a run: the run ends before it",
		setup: func(st *State) {
			st.Readers = []Reader{download(0)}
			st.Runs = []Run{{Next: 3, End: 6}}
			st.Have[4] = true
		},
		cut:  []Cut{{Run: 0, End: 4}},
		prio: map[int]Priority{3: None, 4: None, 5: Normal},
	}, {
		name:  "nobody reads: runs finish the piece under way and stop",
		setup: func(st *State) { st.Runs = []Run{{Next: 3, End: 6}} },
		cut:   []Cut{{Run: 0, End: 4}},
		prio:  map[int]Priority{0: None, 5: None},
	}, {
		name: "a waiting reader takes the slots of runs that fill the file",
		setup: func(st *State) {
			st.Avail[15] = 0
			st.Readers = []Reader{download(0), {Pos: 1500, Start: 1500, Since: t0}}
			st.Runs = []Run{{Next: 1, End: 3}, {Next: 10, End: 11}}
		},
		cut: []Cut{{Run: 0, End: 2}},
	}, {
		name: "no filling while a reader waits on the origin",
		setup: func(st *State) {
			st.Avail[15] = 0
			st.Readers = []Reader{download(0)}
			st.Runs = []Run{{Next: 1, End: 2, Urgent: true}}
		},
	}, {
		name: "after a failed request, nothing starts until RetryAt",
		setup: func(st *State) {
			st.Peers, st.Avail = 0, make([]int, 20)
			st.Readers = []Reader{{Pos: 0, Since: t0}}
			st.RetryAt = t0.Add(time.Millisecond)
		},
	}, {
		name: "held pieces and pieces past the end are wanted from nobody",
		setup: func(st *State) {
			st.Have[6] = true
			st.Readers = []Reader{download(550), download(2000)}
		},
		prio: map[int]Priority{6: None, 7: Readahead, 5: Now},
	}, {
		name: "nothing past a reader's range is asked for it",
		setup: func(st *State) {
			st.Avail[7], st.Avail[9] = 0, 0
			st.Readers = []Reader{{Pos: 550, Since: t0.Add(-time.Minute), End: 750}}
		},
		start: []Start{{First: 7, End: 8, Offset: 700}},
		prio:  map[int]Priority{5: Now, 6: Readahead, 7: None, 8: None, 19: None},
	}, {
		name:   "no pace yet, within PaceProbe: peers are asked for the window only",
		config: func(c *Config) { c.PaceProbe = 5 * time.Second },
		setup: func(st *State) {
			st.Readers = []Reader{{Pos: 550, Since: t0.Add(-time.Second)}}
		},
		prio: map[int]Priority{5: Now, 6: Readahead, 7: Readahead, 8: None, 19: None},
	}, {
		name:   "no pace yet, within PaceProbe: the origin fills what no peer has in the window and this proxy owns, nothing past it",
		config: func(c *Config) { c.PaceProbe = 5 * time.Second },
		setup: func(st *State) {
			st.Avail[7], st.Avail[12] = 0, 0
			st.Rank = int(mix(7) % 4)
			st.Readers = []Reader{{Pos: 550, Since: t0.Add(-time.Second)}}
		},
		start: []Start{{First: 7, End: 8, Offset: 700}},
		prio:  map[int]Priority{7: None, 12: None},
	}, {
		name:   "no pace yet, within PaceProbe: what no peer has and this proxy does not own is left to its owners, pieces peers have to peers",
		config: func(c *Config) { c.PaceProbe = 5 * time.Second },
		setup: func(st *State) {
			st.OriginPieces = 0 // within budget
			st.Avail[7] = 0
			st.Rank = int((mix(7) + 2) % 4) // 2 copies among 4: piece 7's owners are the two ranks from its share's
			st.Readers = []Reader{{Pos: 550, Since: t0.Add(-time.Second)}}
		},
		prio: map[int]Priority{6: Readahead, 7: Readahead},
	}, {
		name:   "no pace after PaceProbe: a download, the whole file",
		config: func(c *Config) { c.PaceProbe = 5 * time.Second },
		setup: func(st *State) {
			st.Avail[12] = 0
			st.Readers = []Reader{{Pos: 550, Since: t0.Add(-5 * time.Second)}}
		},
		start: []Start{{First: 12, End: 13, Offset: 1200}},
		prio:  map[int]Priority{8: Normal, 19: Normal},
	}, {
		name: "no pace after PaceProbe, slower than MaxBitrate on average: maybe a starving player, the window only",
		config: func(c *Config) {
			c.PaceProbe, c.MaxBitrate = 5*time.Second, 200 // it read 550 bytes in 5 s
		},
		setup: func(st *State) {
			st.Avail[12] = 0
			st.Rank = int((mix(12) + 1) % 4) // another proxy's share
			st.Readers = []Reader{{Pos: 550, Since: t0.Add(-5 * time.Second)}}
		},
		prio: map[int]Priority{7: Readahead, 8: None, 12: None, 19: None},
	}, {
		name: "a prefetch alone in the swarm is its supply: the origin serves it at once",
		setup: func(st *State) {
			st.Peers, st.Swarm, st.Avail = 0, 1, make([]int, 20)
			st.Have[0] = false
			st.Readers = []Reader{prefetch(t0.Add(2 * time.Second))}
		},
		start: []Start{{First: 0, End: 3, Offset: 0, Urgent: true}},
	}, {
		name: "a prefetch first in the swarm, its peers connected since, fetches what none of them has, whatever its rank",
		setup: func(st *State) {
			st.Swarm, st.Avail[0], st.Avail[2] = 1, 0, 0
			st.Have[0] = false
			st.Readers = []Reader{prefetch(t0.Add(2 * time.Second))}
		},
		start: []Start{{First: 0, End: 1, Offset: 0, Urgent: true}, {First: 2, End: 3, Offset: 200, Urgent: true}},
		prio:  map[int]Priority{1: Readahead},
	}, {
		name: "a prefetch among other proxies waits for them until Due, and so does a player of the same file",
		setup: func(st *State) {
			st.Swarm, st.Avail[0], st.Avail[1], st.Avail[2] = 3, 0, 0, 0
			st.Have[0] = false
			st.Readers = []Reader{prefetch(t0.Add(2 * time.Second)), {Pos: 0, Since: t0.Add(-time.Second)}}
		},
		prio: map[int]Priority{0: Now, 1: Readahead, 2: Readahead},
	}, {
		name: "a prefetch before the tracker answered waits too",
		setup: func(st *State) {
			st.Peers, st.Avail = 0, make([]int, 20)
			st.Have[0] = false
			st.Readers = []Reader{prefetch(t0.Add(2 * time.Second))}
		},
		prio: map[int]Priority{0: Now, 1: Readahead, 2: Readahead},
	}, {
		name: "at Due the origin takes what the prefetch still lacks",
		setup: func(st *State) {
			st.Swarm, st.Avail[0], st.Avail[1], st.Avail[2] = 3, 0, 0, 0
			st.Have[0] = false
			st.Readers = []Reader{prefetch(t0)}
		},
		start: []Start{{First: 0, End: 3, Offset: 0, Urgent: true}},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := state()
			st.Have[0] = true
			tc.setup(st)
			cfg := testConfig
			if tc.config != nil {
				tc.config(&cfg)
			}
			var d Decision
			Plan(&cfg, st, &d)
			if tc.check != nil {
				tc.check(t, st, &d)
				return
			}
			if len(d.Start) > 0 || tc.start != nil {
				if !reflect.DeepEqual(d.Start, tc.start) {
					t.Errorf("start %+v, want %+v", d.Start, tc.start)
				}
			}
			if len(d.Cut) > 0 || tc.cut != nil {
				if !reflect.DeepEqual(d.Cut, tc.cut) {
					t.Errorf("cut %+v, want %+v", d.Cut, tc.cut)
				}
			}
			for i, p := range tc.prio {
				if d.Priority[i] != p {
					t.Errorf("priority of piece %d = %d, want %d", i, d.Priority[i], p)
				}
			}
		})
	}
}

// TestProbing: which readers without a pace may still be players (asked
// for their window only) and which are downloads.
func TestProbing(t *testing.T) {
	c := Config{PaceProbe: 5 * time.Second, MaxBitrate: 200}
	st := &State{Now: t0}
	for _, tc := range []struct {
		name string
		r    Reader
		want bool
	}{
		{"within PaceProbe, however fast", Reader{Pos: 10000, Since: t0.Add(-4 * time.Second)}, true},
		{"after PaceProbe, slower than MaxBitrate on average", Reader{Pos: 1500, Start: 500, Since: t0.Add(-10 * time.Second)}, true},
		{"after PaceProbe, faster than MaxBitrate on average", Reader{Pos: 2500, Start: 0, Since: t0.Add(-10 * time.Second)}, false},
		{"slower now, but faster once (Peak): a download waiting on a gap", Reader{Pos: 1000, Since: t0.Add(-10 * time.Second), Peak: 250}, false},
		{"a pace: a player, not probing", Reader{Pos: 100, Since: t0.Add(-time.Second), Pace: 100}, false},
	} {
		if got := c.probing(st, &tc.r); got != tc.want {
			t.Errorf("%s: probing %v, want %v", tc.name, got, tc.want)
		}
	}
	c.MaxBitrate = 0
	if c.probing(st, &Reader{Pos: 1, Since: t0.Add(-10 * time.Second)}) {
		t.Error("MaxBitrate 0: a reader without a pace after PaceProbe is probing, want a download")
	}
}

// TestPlanReuse: a Decision reused across calls carries nothing over.
func TestPlanReuse(t *testing.T) {
	st := state()
	st.Have[0] = true
	st.Avail[7] = 0
	st.Readers = []Reader{download(0)}
	var d Decision
	Plan(&testConfig, st, &d)
	st.Have[7] = true
	st.Readers = nil
	Plan(&testConfig, st, &d)
	if len(d.Start) != 0 || len(d.Cut) != 0 {
		t.Fatalf("second plan: start %v cut %v, want none", d.Start, d.Cut)
	}
	for i, p := range d.Priority {
		if p != None {
			t.Fatalf("piece %d priority %d with no reader", i, p)
		}
	}
}

// BenchmarkPlan is one scheduling round of a 1024-piece download in a
// swarm of 20, the proxy's every-tick cost.
func BenchmarkPlan(b *testing.B) {
	const n = 1024
	st := &State{Now: t0, Size: n * 100, PieceLength: 100, Have: make([]bool, n), Avail: make([]int, n),
		Peers: 19, Rank: 3, Swarm: 20, LastPeerData: t0, Seed: 1, OriginPieces: 40,
		Readers: []Reader{download(50 * 100)}, Runs: []Run{{Next: 300, End: 302}}}
	for i := range n {
		st.Have[i] = i%3 == 0
		st.Avail[i] = i % 7
	}
	var d Decision
	b.ReportAllocs()
	for b.Loop() {
		Plan(&testConfig, st, &d)
	}
}

// ownedPiece is the k-th piece (from 1) that st's proxy owns.
func ownedPiece(st *State, owners float64, k int) int {
	for i := 1; i < len(st.Have); i++ {
		if st.owns(i, owners) {
			if k--; k == 0 {
				return i
			}
		}
	}
	return -1
}
