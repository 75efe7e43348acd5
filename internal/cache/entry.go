package cache

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// pieceStripes is how many locks guard the pieces of one entry (piece i uses
// stripe i%pieceStripes): enough that writers of different pieces rarely
// wait on each other, without a lock per piece for a file of a million.
const pieceStripes = 64

// Entry is one cached file. Every verified piece is sealed: its bytes are
// never written again, whoever offers them.
type Entry struct {
	c    *Cache
	info *fileinfo.Info
	ih   string
	size int64
	f    *os.File

	// gone is closed when the entry leaves the index.
	gone chan struct{}
	// detached is set, under fileMu, when the entry's directory is moved
	// aside; from then on nothing is written to it.
	detached atomic.Bool

	// pieceMu serializes writing and sealing a piece, so that a peer's
	// WriteAt can never land between WritePiece's write and its seal.
	pieceMu [pieceStripes]sync.RWMutex

	// Guarded by c.mu.
	pins    int
	removed bool
	lastUse time.Time
	paths   []string
	// dirtyOnLoad is set by Open when the bitfield on disk must be
	// rewritten.
	dirtyOnLoad bool

	// fileMu guards dir and orders bitfield writes against removal.
	fileMu sync.Mutex
	dir    string

	mu    sync.Mutex
	bits  []byte // BEP 3 bitfield of sealed pieces
	haveN int
	// changed is closed and replaced each time a piece is sealed.
	changed  chan struct{}
	complete bool
	failed   error

	whole whole
}

func newEntry(c *Cache, info *fileinfo.Info, ih, dir string, f *os.File) *Entry {
	n := info.NumPieces()
	return &Entry{
		c:       c,
		info:    info,
		ih:      ih,
		size:    info.Size,
		f:       f,
		gone:    make(chan struct{}),
		paths:   []string{info.Path},
		dir:     dir,
		bits:    make([]byte, (n+7)/8),
		changed: make(chan struct{}),
		whole:   whole{h: sha256.New()},
	}
}

// Info returns the file's record. Callers must not modify it.
func (e *Entry) Info() *fileinfo.Info { return e.info }

// InfoHash returns the entry's infohash, lower-case hex.
func (e *Entry) InfoHash() string { return e.ih }

// Release unpins the entry; each Lookup or Create that returned it needs one
// Release. A removed entry's files are deleted on its last Release.
func (e *Entry) Release() {
	c := e.c
	c.mu.Lock()
	if e.pins <= 0 {
		c.mu.Unlock()
		c.log.Error("cache: Release of an entry that is not pinned", "infohash", e.ih)
		return
	}
	e.pins--
	destroy := e.removed && e.pins == 0
	if destroy {
		c.bytes -= e.size
	}
	c.mu.Unlock()
	if destroy {
		e.destroy()
	}
}

// Have reports whether piece i is verified.
func (e *Entry) Have(piece int) bool {
	if piece < 0 || piece >= e.info.NumPieces() {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.haveLocked(piece)
}

func (e *Entry) haveLocked(i int) bool {
	return e.bits[i/8]&(0x80>>(i%8)) != 0
}

// HaveCount returns how many pieces are verified.
func (e *Entry) HaveCount() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.haveN
}

// Complete reports that every piece is verified and the whole file's
// SHA-256 matched Info().SHA256.
func (e *Entry) Complete() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.complete
}

// Failed returns the whole-file SHA-256 error, if the check ran and failed.
func (e *Entry) Failed() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.failed
}

// Removed is closed when the entry leaves the cache (evicted, replaced,
// removed or failed): a streaming caller can select on it.
func (e *Entry) Removed() <-chan struct{} { return e.gone }

// Changed returns a channel that is closed the next time any piece of the
// entry is sealed, for callers that wait on other events as well.
func (e *Entry) Changed() <-chan struct{} {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.changed
}

// Wait blocks until piece i is verified (nil), ctx ends (ctx.Err()), or the
// entry is removed (ErrRemoved).
func (e *Entry) Wait(ctx context.Context, piece int) error {
	if piece < 0 || piece >= e.info.NumPieces() {
		return fmt.Errorf("cache: %s has no piece %d", e.info.Path, piece)
	}
	for {
		select {
		case <-e.gone:
			return ErrRemoved
		default:
		}
		e.mu.Lock()
		have, changed := e.haveLocked(piece), e.changed
		e.mu.Unlock()
		if have {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-e.gone:
			return ErrRemoved
		case <-changed:
		}
	}
}

// ReadAt reads the data file. Callers read only verified pieces: other
// bytes may be zeros or a peer's unverified chunks.
func (e *Entry) ReadAt(p []byte, off int64) (int, error) {
	return e.f.ReadAt(p, off)
}

// OpenAt opens the data file read-only, positioned at off, for a caller
// that lets the kernel send it (sendfile) and closes it. Callers read only
// verified pieces.
func (e *Entry) OpenAt(off int64) (*os.File, error) {
	e.fileMu.Lock()
	dir := e.dir
	e.fileMu.Unlock()
	if dir == "" {
		return nil, fmt.Errorf("open cached %s: %w", e.info.Path, ErrRemoved)
	}
	f, err := os.Open(filepath.Join(dir, dataName))
	if err != nil {
		return nil, fmt.Errorf("open cached %s: %w", e.info.Path, err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seek cached %s: %w", e.info.Path, err)
	}
	return f, nil
}

// WritePiece checks data against the piece's SHA-1 (ErrHashMismatch,
// nothing written), writes it, and seals the piece. A piece already sealed
// is left as it is.
func (e *Entry) WritePiece(piece int, data []byte) error {
	if piece < 0 || piece >= e.info.NumPieces() {
		return fmt.Errorf("cache: %s has no piece %d", e.info.Path, piece)
	}
	off, n := e.info.PieceBounds(piece)
	if int64(len(data)) != n {
		return fmt.Errorf("cache: %s piece %d is %d bytes, got %d: %w", e.info.Path, piece, n, len(data), ErrHashMismatch)
	}
	if sha1.Sum(data) != e.info.PieceHash(piece) {
		return fmt.Errorf("cache: %s piece %d: %w", e.info.Path, piece, ErrHashMismatch)
	}
	if e.detached.Load() {
		return ErrRemoved
	}
	mu := e.pieceLock(piece)
	mu.Lock()
	defer mu.Unlock()
	if e.Have(piece) {
		return nil
	}
	if _, err := e.f.WriteAt(data, off); err != nil {
		return fmt.Errorf("cache: write %s piece %d: %w", e.info.Path, piece, err)
	}
	e.holdCopy(piece, data)
	e.seal(piece)
	return nil
}

func (e *Entry) pieceLock(i int) *sync.RWMutex {
	return &e.pieceMu[i%pieceStripes]
}

// seal marks piece i verified, wakes its waiters, schedules a bitfield write
// and moves the whole-file check on. The caller holds the piece's lock.
func (e *Entry) seal(i int) {
	e.mu.Lock()
	if e.haveLocked(i) {
		e.mu.Unlock()
		return
	}
	e.bits[i/8] |= 0x80 >> (i % 8)
	e.haveN++
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()

	e.c.markDirty(e)
	e.kickWhole()
}
