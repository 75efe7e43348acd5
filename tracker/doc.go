// Package tracker is p2sp's tracker role: the file-info registry that
// origins register their files with and proxies look files up in, a
// standard BitTorrent HTTP tracker (BEP 3 announce with BEP 23 compact
// peers, BEP 48 scrape) for the registered files only, the .torrent of each
// file with the origins as BEP 19 web seeds, and a sink for the problems
// proxies report.
//
// The registry lives in a bbolt file and survives restarts; swarms (who
// announced what) live in memory only and are rebuilt by the next round of
// announces. Writes to the registry and reading reports need the shared
// token; everything a proxy or a BitTorrent client needs is open, bounded
// and rate-limited per remote address.
package tracker
