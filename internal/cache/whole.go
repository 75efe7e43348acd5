package cache

import (
	"encoding/hex"
	"fmt"
	"hash"
	"sync"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// whole is an entry's whole-file SHA-256, computed while the file arrives,
// piece after piece in order, rather than by reading the whole file again
// once it is complete. The bytes of pieces at and just past the frontier
// are hashed from memory when their seal comes with them (the origin's
// pieces, which WritePiece has in hand, and the BitTorrent client's hash
// pass, which reads the piece whole); a piece sealed further ahead is read
// back when the frontier reaches it.
type whole struct {
	mu sync.Mutex
	// h has hashed pieces [0, next); only the running hasher touches it.
	h        hash.Hash
	next     int
	running  bool
	finished bool
	// held maps pieces in [next, next+wholeWindow(info)) to their bytes
	// (from hashBufs), kept for the hasher.
	held map[int]*[]byte
}

// wholeWindowBytes bounds the bytes held for the whole-file hash. Holding
// only the frontier piece missed most pieces from peers: the next one
// passes its SHA-1 while the hasher is still on the frontier, and was read
// back from the disk (a piece's worth of pread per piece). A window of
// pieces ahead catches them.
const wholeWindowBytes = 8 << 20

// wholeWindow is how many pieces from the frontier on may be held: at
// least two, so that the hasher's piece and the next fit.
func wholeWindow(info *fileinfo.Info) int {
	return int(max(2, wholeWindowBytes/info.PieceLength))
}

// hold keeps a piece's bytes for the whole-file hash if the piece is
// within the window from the frontier; it reports whether it took bp (from
// hashBufs), which must not change afterwards. Bytes held for the piece
// before (of a hash pass that failed, say) are replaced.
func (e *Entry) hold(piece int, bp *[]byte) bool {
	w := &e.whole
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.inWindowLocked(e, piece) {
		return false
	}
	if old := w.held[piece]; old != nil {
		hashBufs.Put(old)
	}
	if w.held == nil {
		w.held = make(map[int]*[]byte, wholeWindow(e.info))
	}
	w.held[piece] = bp
	return true
}

func (w *whole) inWindowLocked(e *Entry, piece int) bool {
	return !w.finished && piece >= w.next && piece < w.next+wholeWindow(e.info)
}

// holdCopy is hold for bytes the caller keeps.
func (e *Entry) holdCopy(piece int, data []byte) {
	w := &e.whole
	w.mu.Lock()
	in := w.inWindowLocked(e, piece)
	w.mu.Unlock()
	if !in {
		return
	}
	bp := pieceBuf(len(data))
	copy(*bp, data)
	if !e.hold(piece, bp) {
		hashBufs.Put(bp)
	}
}

// pieceBuf returns a buffer of n bytes from hashBufs.
func pieceBuf(n int) *[]byte {
	bp := hashBufs.Get().(*[]byte)
	if cap(*bp) < n {
		*bp = make([]byte, n)
	}
	*bp = (*bp)[:n]
	return bp
}

// hashBufs are the buffers of whole pieces being hashed.
var hashBufs = sync.Pool{New: func() any { return new([]byte) }}

// kickWhole starts the whole-file hasher when the piece at its frontier
// is sealed (or, with no piece, at once).
func (e *Entry) kickWhole() {
	e.c.mu.Lock()
	defer e.c.mu.Unlock()
	e.c.kickWholeLocked(e)
}

func (c *Cache) kickWholeLocked(e *Entry) {
	w := &e.whole
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.running || w.finished || c.closed || e.removed || (w.next < e.info.NumPieces() && !e.Have(w.next)) {
		return
	}
	w.running = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.hashWhole(e)
	}()
}

// hashWhole hashes sealed pieces from the frontier on, and stops at the
// first piece not sealed yet; after the last one it compares the sum with
// Info().SHA256: a match completes the entry, a mismatch fails and removes
// it.
func (c *Cache) hashWhole(e *Entry) {
	w := &e.whole
	n := e.info.NumPieces()
	for {
		w.mu.Lock()
		i := w.next
		if i < n && (!e.Have(i) || c.ctx.Err() != nil || e.detached.Load()) {
			w.running = false
			w.mu.Unlock()
			return
		}
		if i == n {
			w.running, w.finished = false, true
			for _, bp := range w.held {
				hashBufs.Put(bp)
			}
			w.held = nil
			w.mu.Unlock()
			c.finishWhole(e, hex.EncodeToString(w.h.Sum(nil)))
			return
		}
		bp := w.held[i]
		delete(w.held, i)
		w.mu.Unlock()
		if bp == nil {
			off, l := e.info.PieceBounds(i)
			bp = pieceBuf(int(l))
			if _, err := e.f.ReadAt(*bp, off); err != nil {
				hashBufs.Put(bp)
				w.mu.Lock()
				w.running = false
				w.mu.Unlock()
				if c.ctx.Err() == nil && !e.detached.Load() {
					c.log.Warn("cache: whole-file check could not read the data", "infohash", e.ih, "path", e.info.Path, "piece", i, "err", err)
				}
				return
			}
		}
		w.h.Write(*bp)
		hashBufs.Put(bp)
		w.mu.Lock()
		w.next = i + 1
		w.mu.Unlock()
	}
}

// finishWhole settles the entry on its whole-file SHA-256.
func (c *Cache) finishWhole(e *Entry, sum string) {
	if sum != e.info.SHA256 {
		ferr := fmt.Errorf("cache: %s: whole-file SHA-256 is %s, want %s", e.info.Path, sum, e.info.SHA256)
		e.mu.Lock()
		e.failed = ferr
		e.mu.Unlock()
		c.log.Warn("cache: whole-file SHA-256 mismatch, removing the entry", "infohash", e.ih, "path", e.info.Path, "got", sum, "want", e.info.SHA256)
		c.removeEntry(e)
		return
	}
	e.mu.Lock()
	e.complete = true
	e.mu.Unlock()
	c.log.Info("cache: file complete", "infohash", e.ih, "path", e.info.Path, "size", e.size)
}
