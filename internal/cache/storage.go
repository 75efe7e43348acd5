package cache

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync"

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

// ReadAt reads the piece, under its read lock so that the client never
// hashes a piece halfway through WritePiece: from its buffer when it has
// one; a sealed piece read in chunks (a peer's requests) is read whole
// into memory once.
func (p piece) ReadAt(b []byte, off int64) (int, error) {
	mu := p.e.pieceLock(p.i)
	mu.RLock()
	defer mu.RUnlock()
	pb, _ := p.e.bufferFor(p.i)
	if pb == nil && int64(len(b)) < p.length() && p.e.Have(p.i) {
		pb = p.e.newBuffer(p.i, true)
	}
	if pb != nil {
		if off >= int64(len(pb.b)) {
			return 0, io.EOF
		}
		n := copy(b, pb.b[off:])
		if n < len(b) {
			return n, io.EOF
		}
		return n, nil
	}
	return p.e.f.ReadAt(b, p.off+off)
}

// WriteTo hands the whole piece to the client's hash in one write.
func (p piece) WriteTo(w io.Writer) (int64, error) {
	mu := p.e.pieceLock(p.i)
	mu.RLock()
	defer mu.RUnlock()
	if pb, _ := p.e.bufferFor(p.i); pb != nil {
		n, err := w.Write(pb.b)
		return int64(n), err
	}
	bp := hashBufs.Get().(*[]byte)
	defer hashBufs.Put(bp)
	if int64(cap(*bp)) < p.length() {
		*bp = make([]byte, p.length())
	}
	b := (*bp)[:p.length()]
	if _, err := p.e.f.ReadAt(b, p.off); err != nil {
		return 0, fmt.Errorf("cache: read %s piece %d: %w", p.e.info.Path, p.i, err)
	}
	n, err := w.Write(b)
	return int64(n), err
}

// hashBufs are WriteTo's buffers for pieces without one of their own.
var hashBufs = sync.Pool{New: func() any { return new([]byte) }}

func (p piece) length() int64 {
	_, n := p.e.info.PieceBounds(p.i)
	return n
}

// WriteAt writes a peer's chunk, into the piece's buffer when there is room
// for one, unless the piece is sealed: then the bytes are dropped, so a
// late or hostile chunk can never overwrite verified data.
func (p piece) WriteAt(b []byte, off int64) (int, error) {
	mu := p.e.pieceLock(p.i)
	mu.Lock()
	defer mu.Unlock()
	if p.e.Have(p.i) {
		return len(b), nil
	}
	pb, _ := p.e.bufferFor(p.i)
	if pb == nil {
		pb = p.e.newBuffer(p.i, false)
	}
	if pb != nil {
		return copy(pb.b[off:], b), nil
	}
	p.e.onDisk[p.i] = true
	return p.e.f.WriteAt(b, p.off+off)
}

// MarkComplete writes the piece's buffer and seals the piece: the client
// has checked its SHA-1.
func (p piece) MarkComplete() error {
	mu := p.e.pieceLock(p.i)
	mu.Lock()
	defer mu.Unlock()
	if p.e.Have(p.i) {
		return nil
	}
	if err := p.e.flushBuffer(p.i); err != nil {
		return err
	}
	p.e.seal(p.i)
	return nil
}

// MarkNotComplete does nothing: only sealed pieces are ever marked, and a
// sealed piece stays sealed (the client calls this after a failed hash,
// which may race with WritePiece sealing the piece from the origin). A
// buffer keeps its chunks: the client may count on those it wrote.
func (p piece) MarkNotComplete() error { return nil }

// Completion reports the piece's bit; the cache always knows it.
func (p piece) Completion() storage.Completion {
	return storage.Completion{Ok: true, Complete: p.e.Have(p.i)}
}
