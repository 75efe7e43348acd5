// Package swarm wraps the anacrolix/torrent client for the proxy: one
// client per proxy, configured once with the settings measured in
// shared/notes/anacrolix.md (a 32 MiB request allowance per connection,
// no DHT, PEX or uTP), storing every piece in the cache it is given.
//
// The proxy never reads through the library's Reader: it serves bytes from
// the cache once they are verified, and uses the swarm only as a supplier,
// steering it with piece priorities. The library's web seeds are not used;
// the proxy fetches from the origin itself (see the notes: the web-seed
// timer makes a cold start take five seconds).
package swarm

//
// Announces are the swarm's own too (announce.go): the library's HTTP
// tracker client reads a whole answer with no limit, decodes it with no
// depth limit and skips certificate checks. The swarm keeps one HTTP client,
// reads at most 2 MiB of an answer and decodes it with a bounded decoder
// (bencode.go) that builds nothing but the peers it returns.
