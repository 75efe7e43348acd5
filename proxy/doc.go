// Package proxy is the localhost sidecar players talk to: one seekable
// HTTP file per media path at /stream/{path}, answered from the local cache,
// the BitTorrent swarm of other proxies and the origin at once.
//
// A request follows the same method every time. A complete, verified cache
// entry is served from disk with no network at all. Otherwise the tracker's
// file info (or, when the tracker is unreachable, the info the cache kept)
// opens the file's torrent; a scheduler per file puts the pieces under each
// player's playhead first, asks peers for them and, when no peer can supply
// a piece in time, fetches it from the origin with a range request of its
// own. Every piece, from peers or origin, is checked against its SHA-1 by
// the cache before a byte of it is served, cached or seeded. A file the
// tracker does not know is streamed from the origin alone, kept aside, and
// reported; once the origin has registered it the kept bytes are verified
// into the cache and seeded.
//
// The proxy also serves a player page at / (embedded HTML, CSS and
// JavaScript under web/): the origin's catalog with search, a <video> or
// <audio> element on /stream/{path}, the bytes' sources from /v1/status,
// and the configured user's favourites and recent plays. The page talks
// to this proxy only: /v1/catalog and /v1/lists/* are relayed to the
// origin, the lists with the user's token, which never reaches the browser.
package proxy
