// Package tracker is p2sp's tracker role: the file-info registry that
// origins register their files with and proxies look files up in, a
// standard BitTorrent HTTP tracker (BEP 3 announce with BEP 23 compact
// peers, BEP 48 scrape) for the registered files only, the .torrent of each
// file with the origins as BEP 19 web seeds, and a sink for the problems
// proxies report.
//
// Its state sits behind Store. By default the registry lives in a bbolt
// file and survives restarts, and swarms (who announced what) live in
// memory only and are rebuilt by the next round of announces. With a
// redis:// store both live in Redis, so that several tracker replicas serve
// one fleet and any of them can go away. Writes to the registry and reading
// reports need the shared token; everything a proxy or a BitTorrent client
// needs is open, bounded and rate-limited per remote address. Reports are
// kept in each replica's memory.
package tracker
