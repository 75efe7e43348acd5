package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"
)

var (
	_ storage.ClientImpl = (*Cache)(nil)
	_ storage.PieceImpl  = piece{}
)

// OpenTorrent returns the storage of an entry created with Create; the
// BitTorrent client then reads and writes that entry's data file. It fails
// for an unknown infohash or an info dictionary that does not describe the
// entry's file. The storage does not pin the entry: the proxy drops the
// torrent when OnEvict reports the entry gone.
func (c *Cache) OpenTorrent(_ context.Context, info *metainfo.Info, infoHash metainfo.Hash) (storage.TorrentImpl, error) {
	ih := infoHash.HexString()
	c.mu.Lock()
	e, ok := c.lru.Peek(ih)
	c.mu.Unlock()
	if !ok {
		return storage.TorrentImpl{}, fmt.Errorf("cache: no entry for infohash %s", ih)
	}
	if info == nil || info.TotalLength() != e.size || info.PieceLength != e.info.PieceLength || !bytes.Equal(info.Pieces, e.info.Pieces) {
		return storage.TorrentImpl{}, fmt.Errorf("cache: info for %s does not describe the cached file %s", ih, e.info.Path)
	}
	return storage.TorrentImpl{
		// Piece serves v1 torrents, which is all we make; the hash the
		// client could pass to PieceWithHash is in the entry's info already.
		Piece: func(p metainfo.Piece) storage.PieceImpl {
			return e.storagePiece(p.Index())
		},
		// The cache owns the data file; closing the torrent leaves it open.
		Close: func() error { return nil },
	}, nil
}

func (e *Entry) storagePiece(i int) piece {
	off, _ := e.info.PieceBounds(i)
	return piece{e: e, i: i, off: off}
}

// piece is one piece of an entry as the BitTorrent client sees it. Offsets
// are relative to the piece.
type piece struct {
	e   *Entry
	i   int
	off int64
}

// ReadAt reads the data file, under the piece's read lock so that the
// client never hashes a piece halfway through WritePiece.
func (p piece) ReadAt(b []byte, off int64) (int, error) {
	mu := p.e.pieceLock(p.i)
	mu.RLock()
	defer mu.RUnlock()
	return p.e.f.ReadAt(b, p.off+off)
}

// WriteTo hands the whole piece to the client's hash: one read into a
// reused buffer, where the client's own loop would read it in small ones.
// A piece near the whole-file hash's frontier keeps its bytes for that
// hash, so it is not read again (see whole).
func (p piece) WriteTo(w io.Writer) (int64, error) {
	_, n := p.e.info.PieceBounds(p.i)
	bp := pieceBuf(int(n))
	b := *bp
	mu := p.e.pieceLock(p.i)
	mu.RLock()
	_, err := p.e.f.ReadAt(b, p.off)
	mu.RUnlock()
	if err != nil {
		hashBufs.Put(bp)
		return 0, fmt.Errorf("cache: read %s piece %d: %w", p.e.info.Path, p.i, err)
	}
	k, err := w.Write(b)
	if err != nil || !p.e.hold(p.i, bp) {
		hashBufs.Put(bp)
	}
	return int64(k), err
}

// WriteAt writes a peer's chunk, unless the piece is sealed: then the bytes
// are dropped, so a late or hostile chunk can never overwrite verified data.
func (p piece) WriteAt(b []byte, off int64) (int, error) {
	mu := p.e.pieceLock(p.i)
	mu.Lock()
	defer mu.Unlock()
	if p.e.Have(p.i) {
		return len(b), nil
	}
	return p.e.f.WriteAt(b, p.off+off)
}

// MarkComplete seals the piece: the client has checked its SHA-1.
func (p piece) MarkComplete() error {
	mu := p.e.pieceLock(p.i)
	mu.Lock()
	defer mu.Unlock()
	p.e.seal(p.i)
	return nil
}

// MarkNotComplete does nothing: only sealed pieces are ever marked, and a
// sealed piece stays sealed (the client calls this after a failed hash,
// which may race with WritePiece sealing the piece from the origin).
func (p piece) MarkNotComplete() error { return nil }

// Completion reports the piece's bit; the cache always knows it.
func (p piece) Completion() storage.Completion {
	return storage.Completion{Ok: true, Complete: p.e.Have(p.i)}
}
