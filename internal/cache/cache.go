package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// Config configures a Cache.
type Config struct {
	// Dir holds the entries; nothing outside it is written.
	Dir string
	// Capacity is in bytes; each entry counts its full file size from
	// creation (space is reserved).
	Capacity int64
	// OnEvict is called (outside locks) after an entry is evicted or
	// removed, so the proxy can drop the torrent. It is called when the entry
	// leaves the cache's index; if a caller still has it pinned, its files
	// are deleted later, on the last Release. Open does not call it for the
	// entries it evicts itself: nothing outside the cache knows them yet,
	// and the owner of the callback is still being built.
	OnEvict func(infohash string)
	// Logger receives the cache's warnings; nil means slog.Default().
	Logger *slog.Logger
}

var (
	// ErrNoSpace means the file cannot fit even after evicting every
	// unpinned entry.
	ErrNoSpace = errors.New("cache: not enough space, even after evicting every unpinned entry")
	// ErrRemoved means the entry was removed while a caller waited on it.
	ErrRemoved = errors.New("cache: entry removed")
	// ErrHashMismatch means WritePiece's data failed the piece's SHA-1.
	ErrHashMismatch = errors.New("cache: piece data does not match its SHA-1")

	errClosed = errors.New("cache: closed")
)

// flushDelay batches bitfield rewrites: an entry being downloaded seals
// hundreds of pieces a second, and a bitfield that lags by this much only
// costs a re-download after a crash (Open re-verifies what it claims anyway).
const flushDelay = 200 * time.Millisecond

// Cache is a byte-bounded LRU of files on disk. It is safe for concurrent
// use.
type Cache struct {
	cfg Config
	log *slog.Logger

	// ctx ends with Close; it stops the flusher and whole-file checks,
	// which wg tracks.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}

	mu sync.Mutex
	// lru maps lower-case infohash to entry, least recently used first. It
	// is bounded by bytes (below), not by count.
	lru    *lru.Cache[string, *Entry]
	byPath map[string]*Entry
	// bytes is the total size of the entries in lru plus those removed but
	// still pinned, whose files still exist.
	bytes     int64
	evictions int64
	dirty     map[*Entry]struct{}
	trashSeq  int
	closed    bool
}

// Stats is a snapshot of the cache's accounting.
type Stats struct {
	Bytes, Capacity int64
	Entries         int
	Evictions       int64
}

// Open loads the entries under cfg.Dir: each info.json is decoded and
// validated (bad entries are deleted), and every piece marked in a bitfield
// is re-verified by hashing it; pieces that fail are dropped. Entries are
// loaded into the LRU oldest-used first, and evicted as usual if they exceed
// Capacity.
func Open(ctx context.Context, cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("cache: no directory")
	}
	if cfg.Capacity <= 0 {
		return nil, fmt.Errorf("cache: capacity %d is not positive", cfg.Capacity)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	l, err := lru.New[string, *Entry](1 << 30)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	c := &Cache{
		cfg:    cfg,
		log:    cfg.Logger,
		kick:   make(chan struct{}, 1),
		lru:    l,
		byPath: make(map[string]*Entry),
		dirty:  make(map[*Entry]struct{}),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())

	loaded, err := c.loadAll(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	var out []detached
	c.mu.Lock()
	for _, e := range loaded {
		// Two versions of one path survive only a crash between creating
		// the new one and deleting the old; the later used one wins.
		if old := c.byPath[e.paths[0]]; old != nil {
			out = append(out, c.detachLocked(old))
		}
		c.lru.Add(e.ih, e)
		c.byPath[e.paths[0]] = e
		c.bytes += e.size
		if e.dirtyOnLoad {
			c.markDirtyLocked(e)
		}
	}
	for c.bytes > c.cfg.Capacity {
		_, e, ok := c.lru.GetOldest()
		if !ok {
			break
		}
		c.evictions++
		out = append(out, c.detachLocked(e))
	}
	c.mu.Unlock()
	for _, d := range out {
		c.destroy(d)
	}

	c.wg.Add(1)
	go c.flusher()
	return c, nil
}

// Close stops the cache's goroutines, writes every changed bitfield and
// closes the data files. Entries still pinned can no longer be read.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()

	err := c.flushDirty()
	c.mu.Lock()
	entries := c.lru.Values()
	c.mu.Unlock()
	for _, e := range entries {
		if cerr := e.f.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cache: close %s: %w", e.ih, cerr))
		}
	}
	// Entries removed while pinned are deleted now: nobody can read them any
	// more, and Open would delete them anyway.
	trash, _ := filepath.Glob(filepath.Join(c.cfg.Dir, trashPrefix+"*"))
	for _, d := range trash {
		if rerr := os.RemoveAll(d); rerr != nil {
			err = errors.Join(err, fmt.Errorf("cache: %w", rerr))
		}
	}
	return err
}

// Lookup returns the newest entry for a file path, pinned (the caller must
// Release it), and marks it most recently used.
func (c *Cache) Lookup(path string) (*Entry, bool) { return c.lookup(path, true) }

// Peek is Lookup for a probe (a HEAD): the entry is pinned but not marked
// used, so probing a file does not change which file is evicted next.
func (c *Cache) Peek(path string) (*Entry, bool) { return c.lookup(path, false) }

func (c *Cache) lookup(path string, use bool) (*Entry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.byPath[path]
	if e == nil || c.closed {
		return nil, false
	}
	e.pins++
	if use {
		c.lru.Get(e.ih)
		c.touchLocked(e)
	}
	return e, true
}

// Create returns the entry for info's infohash, pinned (the caller must
// Release it) and most recently used: the existing one, or a new empty one,
// which replaces (removes) any entry holding another version of the same
// path. To make room it evicts least recently used entries that are not
// pinned; if even evicting all of them would not do, it evicts nothing and
// returns ErrNoSpace.
//
// Two paths whose files are identical and share a last element have the same
// infohash, so they share an entry; its Info is the first one's.
func (c *Cache) Create(info *fileinfo.Info) (*Entry, error) {
	if err := info.Validate(); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	ih := strings.ToLower(info.InfoHash)
	var out []detached
	defer func() { c.finish(out) }()

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errClosed
	}
	// The stale version goes even if the new one then does not fit: it
	// must not be served again either way.
	if old := c.byPath[info.Path]; old != nil && old.ih != ih {
		out = append(out, c.unmapPathLocked(old, info.Path)...)
	}
	if e, ok := c.lru.Get(ih); ok {
		if c.byPath[info.Path] != e {
			c.byPath[info.Path] = e
			e.paths = append(e.paths, info.Path)
		}
		e.pins++
		c.touchLocked(e)
		return e, nil
	}

	victims, ok := c.victimsLocked(info.Size)
	if !ok {
		return nil, fmt.Errorf("cache: %s (%d bytes, %d of %d in use): %w", info.Path, info.Size, c.bytes, c.cfg.Capacity, ErrNoSpace)
	}
	for _, v := range victims {
		c.evictions++
		out = append(out, c.detachLocked(v))
	}
	e, err := c.createEntry(info, ih)
	if err != nil {
		return nil, err
	}
	c.lru.Add(ih, e)
	c.byPath[info.Path] = e
	c.bytes += e.size
	e.pins = 1
	c.touchLocked(e)
	if e.info.NumPieces() == 0 {
		c.kickWholeLocked(e)
	}
	return e, nil
}

// Remove deletes the entry for infohash (a stale version, or one that failed
// its whole-file SHA-256): it leaves the index at once, waiters get
// ErrRemoved, and its files are deleted once nobody has it pinned.
func (c *Cache) Remove(infohash string) {
	var out []detached
	c.mu.Lock()
	if e, ok := c.lru.Peek(strings.ToLower(infohash)); ok && !c.closed {
		out = append(out, c.detachLocked(e))
	}
	c.mu.Unlock()
	c.finish(out)
}

// removeEntry removes e if it is still in the index (not a newer entry
// created under the same infohash).
func (c *Cache) removeEntry(e *Entry) {
	var out []detached
	c.mu.Lock()
	if cur, ok := c.lru.Peek(e.ih); ok && cur == e && !c.closed {
		out = append(out, c.detachLocked(e))
	}
	c.mu.Unlock()
	c.finish(out)
}

// Entries returns every entry, least recently used first, for the status
// page. They are not pinned.
func (c *Cache) Entries() []*Entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Values()
}

// Stats returns the cache's accounting.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Bytes: c.bytes, Capacity: c.cfg.Capacity, Entries: c.lru.Len(), Evictions: c.evictions}
}

// victimsLocked picks the least recently used unpinned entries whose
// eviction makes room for size bytes, or reports that there is no way to.
func (c *Cache) victimsLocked(size int64) ([]*Entry, bool) {
	free := c.cfg.Capacity - c.bytes
	var victims []*Entry
	for _, ih := range c.lru.Keys() {
		if free >= size {
			break
		}
		e, _ := c.lru.Peek(ih)
		if e.pins > 0 {
			continue
		}
		victims = append(victims, e)
		free += e.size
	}
	return victims, free >= size
}

// unmapPathLocked takes path away from e, and removes e if no path is left.
func (c *Cache) unmapPathLocked(e *Entry, path string) []detached {
	delete(c.byPath, path)
	for i, p := range e.paths {
		if p == path {
			e.paths = append(e.paths[:i], e.paths[i+1:]...)
			break
		}
	}
	if len(e.paths) > 0 {
		return nil
	}
	return []detached{c.detachLocked(e)}
}

// detached is an entry that left the index; finish completes its removal
// outside the lock.
type detached struct {
	e *Entry
	// destroy is set when nobody had it pinned: its files go now.
	destroy bool
}

// detachLocked takes e out of the index, wakes its waiters and moves its
// directory aside, so that a new entry for the same infohash can be created
// while a pinned reader still holds the old files open. Its bytes stay
// counted until the files are deleted.
func (c *Cache) detachLocked(e *Entry) detached {
	c.lru.Remove(e.ih)
	for _, p := range e.paths {
		if c.byPath[p] == e {
			delete(c.byPath, p)
		}
	}
	delete(c.dirty, e)
	e.removed = true
	close(e.gone)

	e.fileMu.Lock()
	e.detached.Store(true)
	c.trashSeq++
	trash := filepath.Join(c.cfg.Dir, fmt.Sprintf("%s%s-%d", trashPrefix, e.ih, c.trashSeq))
	if err := os.Rename(e.dir, trash); err != nil {
		// Never leave the files where a new entry of the same infohash
		// would be created; open descriptors stay readable after unlink.
		c.log.Warn("cache: moving a removed entry aside failed, deleting it now", "infohash", e.ih, "err", err)
		if err := os.RemoveAll(e.dir); err != nil {
			c.log.Error("cache: deleting a removed entry", "infohash", e.ih, "err", err)
		}
		trash = ""
	}
	e.dir = trash
	e.fileMu.Unlock()

	if e.pins > 0 {
		return detached{e: e}
	}
	c.bytes -= e.size
	return detached{e: e, destroy: true}
}

// finish deletes the files of detached entries nobody has pinned and tells
// the proxy about every one.
func (c *Cache) finish(out []detached) {
	for _, d := range out {
		c.destroy(d)
		if c.cfg.OnEvict != nil {
			c.cfg.OnEvict(d.e.ih)
		}
	}
}

// destroy deletes the files of a detached entry nobody has pinned.
func (c *Cache) destroy(d detached) {
	if d.destroy {
		d.e.destroy()
	}
	c.log.Info("cache: entry removed", "infohash", d.e.ih, "path", d.e.info.Path)
}

// touchLocked records a use of e; the flusher persists it as the
// bitfield's mtime.
func (c *Cache) touchLocked(e *Entry) {
	e.lastUse = time.Now()
	c.markDirtyLocked(e)
}

func (c *Cache) markDirtyLocked(e *Entry) {
	if e.removed {
		return
	}
	c.dirty[e] = struct{}{}
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

func (c *Cache) markDirty(e *Entry) {
	c.mu.Lock()
	c.markDirtyLocked(e)
	c.mu.Unlock()
}

// flusher writes changed bitfields, at most once per flushDelay.
func (c *Cache) flusher() {
	defer c.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-c.kick:
		}
		if err := c.flushDirty(); err != nil {
			c.log.Warn("cache: writing bitfields", "err", err)
		}
		t.Reset(flushDelay)
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// flushDirty writes the bitfield of every entry changed or used since the
// last flush.
func (c *Cache) flushDirty() error {
	type job struct {
		e       *Entry
		lastUse time.Time
	}
	c.mu.Lock()
	jobs := make([]job, 0, len(c.dirty))
	for e := range c.dirty {
		jobs = append(jobs, job{e, e.lastUse})
	}
	clear(c.dirty)
	c.mu.Unlock()
	var err error
	for _, j := range jobs {
		err = errors.Join(err, j.e.writeBitfield(j.lastUse))
	}
	return err
}
