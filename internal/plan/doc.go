// Package plan decides, for one file, which source supplies which piece
// and when: the priorities the swarm gets, the origin ranges to start, and
// the origin runs to cut short. It is pure: a State in, a Decision out, no
// goroutines, no I/O, no clock (the time is part of the State).
//
// The rules, in the order Plan applies them:
//
//   - A piece the proxy holds is wanted from nobody, and nothing past the
//     end of a reader's range is asked for it.
//   - The piece under a new playhead never waits on the swarm: if no
//     connected peer has it, the origin is asked at once; if one has it
//     (or peers the tracker named are still connecting), peers get
//     FirstGrace to deliver it.
//   - A reader with a pace (a player reading at a bitrate) has a deadline
//     per piece; the origin takes only the pieces whose deadline is within
//     Lead and that nobody has delivered. Peers are asked for its
//     read-ahead window; of that window the origin fills early the pieces
//     no connected peer has, so that a player ahead of the swarm holds its
//     window before it reads it and the viewers behind it have that time
//     to take those pieces from it.
//   - A reader without a pace for less than PaceProbe since its playhead
//     started, or that read no faster than MaxBitrate on average since
//     then, may be a player whose bitrate is not known yet: it is asked
//     for its window only, not for the whole file, and the origin takes
//     for it only the window's pieces no connected peer has that this
//     proxy owns (see the budget below): a new viewer neither floods its
//     peers' uplinks nor has the origin send what the swarm holds or it
//     may never watch, and a crowd's downloads still take the origin's
//     share of their window meanwhile.
//   - A reader without a pace (a download reading as fast as it can) has no
//     deadline: the swarm is asked for the rest of the file, and the origin
//     serves what no connected peer has: first this proxy's share of it
//     (pieces split by Rank among proxies connected to each other), then
//     the rest in an order of its own (Seed), so that a crowd's origin
//     fetches add up to about one copy that the swarm spreads, as a
//     BitTorrent initial seeder does. Beyond that the origin supplies,
//     within the proxy's budget, the pieces this proxy owns: the budget is
//     OriginCopies copies of the file shared among the proxies of the
//     swarm, the operator's trade-off between origin egress and speed (a
//     swarm smaller than OriginUplinks gets at least N·(1-N/U) copies,
//     what keeps a crowd of N no slower than the origin alone would serve
//     it; the arithmetic is at Config.OriginUplinks), and each piece has
//     about that many owners among the connected proxies, its share's
//     proxy and the ranks after it. Owned pieces are withheld from peers
//     from the start and fetched in the download's order, so the origin
//     never takes a piece peers are sending. When connected peers deliver
//     nothing for PeerStall, the piece the reader waits on goes to the
//     origin, whether a peer has it or none does (its owners may not be
//     fetching it: no reader waits on a piece nobody fetches).
//   - A reader with a Due (a live segment, prefetched before any player
//     asks or read by a player) in a swarm where the tracker counted other
//     proxies, or has not answered yet, keeps the origin from the whole
//     file until Due, whoever reads it: the proxies of one audience join
//     a new segment's swarm together, the first to announce (alone in the
//     swarm) fetches from the origin at once every piece of it no
//     connected peer has, whatever its rank, and the others, and
//     their players' requests, take it from that one. At Due, every piece
//     it still lacks goes to the origin.
//   - A piece the origin fetches is wanted from no peer, and an origin run
//     stops at the first piece the swarm completed or nobody wants, so no
//     piece crosses the wire twice.
package plan
