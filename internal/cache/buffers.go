package cache

import (
	"fmt"
	"sync"
)

// Peers move a piece in 16 KiB chunks: unbuffered, a piece of 256 KiB
// costs the leecher 16 writes and the hash's reads, and the seeder 16 reads
// per peer. Whole pieces in memory make that one write when the piece
// verifies and one read when a sealed piece is first asked for; the hash
// and the player read memory.
const (
	// bufferBudget bounds the bytes of all entries' piece buffers, and
	// entryBudget those of one entry: beyond it, the entry's oldest
	// unsealed buffers (pieces abandoned after a seek) go to disk.
	bufferBudget = 64 << 20
	entryBudget  = 16 << 20
	// readCopies is how many sealed pieces an entry keeps in memory, at
	// most a quarter of its budget.
	readCopies = 16
)

// pieceBuf is one piece in memory. An unsealed buffer is the piece's
// current bytes (what the disk held when it was made, plus the chunks
// written since); it reaches the disk in MarkComplete. A sealed one is a
// read-only copy of verified bytes on disk. An unsealed buffer is touched
// only under its piece's lock.
type pieceBuf struct {
	b      []byte
	sealed bool
}

// buffers are an entry's piece buffers.
type buffers struct {
	mu     sync.Mutex
	m      map[int]*pieceBuf
	bytes  int64 // of the buffers in m
	sealed []int // pieces with a sealed copy, oldest first
	order  []int // pieces with an unsealed buffer, oldest first
}

// bufferFor returns piece i's buffer, nil if there is none, and whether
// it is a sealed copy.
func (e *Entry) bufferFor(i int) (*pieceBuf, bool) {
	e.bufs.mu.Lock()
	defer e.bufs.mu.Unlock()
	pb := e.bufs.m[i]
	return pb, pb != nil && pb.sealed
}

// newBuffer makes piece i's buffer with the bytes on disk, within the
// budget; nil when there is no room or the disk read fails (the caller then
// uses the disk). The caller holds the piece's lock.
func (e *Entry) newBuffer(i int, sealed bool) *pieceBuf {
	off, n := e.info.PieceBounds(i)
	if !sealed {
		e.spill(i, n)
	}
	e.bufs.mu.Lock()
	full := e.bufs.bytes+n > entryBudget
	e.bufs.mu.Unlock()
	if full || e.c.bufBytes.Add(n) > bufferBudget {
		if !full {
			e.c.bufBytes.Add(-n)
		}
		return nil
	}
	b := make([]byte, n)
	if e.onDisk[i] || sealed { // else the sparse file holds zeros there
		if _, err := e.f.ReadAt(b, off); err != nil {
			e.c.bufBytes.Add(-n)
			return nil
		}
	}
	pb := &pieceBuf{b: b, sealed: sealed}
	e.bufs.mu.Lock()
	defer e.bufs.mu.Unlock()
	if old := e.bufs.m[i]; old != nil { // another reader was first
		e.c.bufBytes.Add(-n)
		return old
	}
	if e.bufs.m == nil {
		e.bufs.m = map[int]*pieceBuf{}
	}
	e.bufs.m[i] = pb
	e.bufs.bytes += n
	if sealed {
		e.keptLocked(i)
	} else {
		e.bufs.order = append(e.bufs.order, i)
	}
	return pb
}

// spill writes the entry's oldest unsealed buffers to disk until a buffer
// of n more bytes fits its budget. It holds piece i's lock, so it takes
// another piece's only if that is free (TryLock): two writers spilling
// each other's pieces must not wait on each other.
func (e *Entry) spill(i int, n int64) {
	own := e.pieceLock(i)
	for {
		e.bufs.mu.Lock()
		if e.bufs.bytes+n <= entryBudget || len(e.bufs.order) == 0 {
			e.bufs.mu.Unlock()
			return
		}
		j := e.bufs.order[0]
		e.bufs.order = e.bufs.order[1:]
		pb := e.bufs.m[j]
		e.bufs.mu.Unlock()
		mu := e.pieceLock(j)
		if pb == nil || pb.sealed || mu == own || !mu.TryLock() {
			continue
		}
		if cur, _ := e.bufferFor(j); cur == pb && !e.Have(j) {
			off, _ := e.info.PieceBounds(j)
			e.onDisk[j] = true
			if _, err := e.f.WriteAt(pb.b, off); err == nil {
				e.dropBuffer(j)
			}
		}
		mu.Unlock()
	}
}

// keptLocked records that piece i's buffer is now a sealed copy, dropping
// the oldest copies beyond readCopies. e.bufs.mu is held.
func (e *Entry) keptLocked(i int) {
	e.bufs.sealed = append(e.bufs.sealed, i)
	keep := int(min(readCopies, entryBudget/4/e.info.PieceLength))
	for len(e.bufs.sealed) > keep {
		j := e.bufs.sealed[0]
		e.bufs.sealed = e.bufs.sealed[1:]
		if pb := e.bufs.m[j]; pb != nil && pb.sealed {
			delete(e.bufs.m, j)
			e.bufs.bytes -= int64(len(pb.b))
			e.c.bufBytes.Add(-int64(len(pb.b)))
		}
	}
}

// dropBuffer forgets piece i's buffer. The caller holds the piece's lock.
func (e *Entry) dropBuffer(i int) {
	e.bufs.mu.Lock()
	defer e.bufs.mu.Unlock()
	if pb := e.bufs.m[i]; pb != nil {
		delete(e.bufs.m, i)
		e.bufs.bytes -= int64(len(pb.b))
		e.c.bufBytes.Add(-int64(len(pb.b)))
	}
}

// dropBuffers forgets every buffer of a removed entry.
func (e *Entry) dropBuffers() {
	e.bufs.mu.Lock()
	defer e.bufs.mu.Unlock()
	for i, pb := range e.bufs.m {
		delete(e.bufs.m, i)
		e.c.bufBytes.Add(-int64(len(pb.b)))
	}
	e.bufs.bytes, e.bufs.sealed, e.bufs.order = 0, nil, nil
}

// flushBuffer writes piece i's unsealed buffer to disk and keeps it as a
// sealed copy. The caller holds the piece's lock and seals the piece after.
func (e *Entry) flushBuffer(i int) error {
	pb, sealed := e.bufferFor(i)
	if pb == nil || sealed {
		return nil
	}
	off, _ := e.info.PieceBounds(i)
	if _, err := e.f.WriteAt(pb.b, off); err != nil {
		e.dropBuffer(i)
		return fmt.Errorf("cache: write %s piece %d: %w", e.info.Path, i, err)
	}
	e.bufs.mu.Lock()
	defer e.bufs.mu.Unlock()
	pb.sealed = true
	e.keptLocked(i)
	return nil
}

// readSealed copies verified bytes at off from a sealed piece's copy in
// memory; ok is false when the range is not in one.
func (e *Entry) readSealed(p []byte, off int64) (int, bool) {
	i := int(off / e.info.PieceLength)
	pOff, n := e.info.PieceBounds(i)
	if off+int64(len(p)) > pOff+n {
		return 0, false
	}
	pb, sealed := e.bufferFor(i)
	if !sealed {
		return 0, false
	}
	return copy(p, pb.b[off-pOff:]), true
}
