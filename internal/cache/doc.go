// Package cache is the proxy's byte-bounded LRU of media files on disk, and
// the one owner of those bytes: the BitTorrent client writes peer pieces into
// it through storage.ClientImpl, the proxy's origin fetcher writes origin
// pieces into it with Entry.WritePiece, and players are served only pieces it
// holds as verified.
//
// Each entry lives in Dir/<infohash hex>/:
//
//	info.json  the fileinfo.Info the entry was created from
//	data       the file's bytes at their offsets, sparse until downloaded
//	pieces     a bitfield of verified pieces (BEP 3 order, high bit first),
//	           replaced atomically; its mtime is the entry's last use
//
// A verified piece is sealed: nothing, peer or origin, writes over it again.
// When the last piece is sealed the whole file is checked against its
// SHA-256; a file that fails is removed. Open re-hashes every piece the
// bitfields claim, so a disk copy that rotted while the proxy was down is
// never served or seeded.
//
// Every entry counts its full size from the moment it is created, so the
// total of those sizes never exceeds Capacity; entries pinned by a caller
// (being streamed) are never evicted.
package cache
