package cache

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// Names inside Dir. Removed entries still pinned by a reader wait under a
// trashPrefix name until their last Release.
const (
	infoName    = "info.json"
	dataName    = "data"
	piecesName  = "pieces"
	trashPrefix = ".removed-"
)

// createEntry makes the directory and files of a new, empty entry. The data
// file is extended to the full size at once (sparse), so a read of a piece
// not yet written gives zeros rather than a short read, which the torrent
// client would take as lost data.
func (c *Cache) createEntry(info *fileinfo.Info, ih string) (*Entry, error) {
	ci := *info
	ci.InfoHash = ih
	ci.Pieces = bytes.Clone(info.Pieces)
	ci.Origins = slices.Clone(info.Origins)
	ci.Peers = nil // tracker answers only; stale by the time anyone reads them

	dir := filepath.Join(c.cfg.Dir, ih)
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("cache: clear %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	fail := func(err error) (*Entry, error) {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	b, err := json.Marshal(&ci)
	if err != nil {
		return fail(fmt.Errorf("cache: encode %s: %w", infoName, err))
	}
	if err := writeFileAtomic(filepath.Join(dir, infoName), b, time.Time{}); err != nil {
		return fail(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, dataName), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fail(fmt.Errorf("cache: %w", err))
	}
	if err := f.Truncate(ci.Size); err != nil {
		f.Close()
		return fail(fmt.Errorf("cache: size %s: %w", dir, err))
	}
	e := newEntry(c, &ci, ih, dir, f)
	if err := e.writeBitfield(time.Now()); err != nil {
		f.Close()
		return fail(err)
	}
	return e, nil
}

// writeBitfield replaces the entry's bitfield file with the current bits,
// stamped with the last use, unless the entry has been removed.
func (e *Entry) writeBitfield(lastUse time.Time) error {
	e.fileMu.Lock()
	defer e.fileMu.Unlock()
	if e.detached.Load() {
		return nil
	}
	e.mu.Lock()
	bits := bytes.Clone(e.bits)
	e.mu.Unlock()
	return writeFileAtomic(filepath.Join(e.dir, piecesName), bits, lastUse)
}

// writeFileAtomic writes name through a temporary file and a rename, so a
// crash leaves the old or the new content, never a mix. A non-zero mtime is
// set on the file.
func writeFileAtomic(name string, b []byte, mtime time.Time) error {
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	if !mtime.IsZero() {
		if err := os.Chtimes(tmp, mtime, mtime); err != nil {
			return fmt.Errorf("cache: %w", err)
		}
	}
	if err := os.Rename(tmp, name); err != nil {
		return fmt.Errorf("cache: %w", err)
	}
	return nil
}

// destroy closes and deletes the files of an entry that left the index and
// that nobody has pinned.
func (e *Entry) destroy() {
	e.fileMu.Lock()
	dir := e.dir
	e.dir = ""
	e.fileMu.Unlock()
	if err := e.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		e.c.log.Warn("cache: close removed entry", "infohash", e.ih, "err", err)
	}
	if dir == "" {
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		e.c.log.Error("cache: delete removed entry", "infohash", e.ih, "dir", dir, "err", err)
	}
}

// loadAll loads every entry under Dir, several at a time since each one
// re-hashes its pieces, and returns them least recently used first. Anything
// that is not a valid entry is deleted.
func (c *Cache) loadAll(ctx context.Context) ([]*Entry, error) {
	des, err := os.ReadDir(c.cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	var (
		mu     sync.Mutex
		loaded []*Entry
		wg     sync.WaitGroup
		sem    = make(chan struct{}, runtime.GOMAXPROCS(0))
	)
	for _, de := range des {
		if !de.IsDir() {
			continue
		}
		dir := filepath.Join(c.cfg.Dir, de.Name())
		if strings.HasPrefix(de.Name(), trashPrefix) {
			if err := os.RemoveAll(dir); err != nil {
				c.log.Warn("cache: delete leftover of a removed entry", "dir", dir, "err", err)
			}
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			e, err := c.loadEntry(ctx, dir, de.Name())
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				c.log.Warn("cache: deleting a bad entry", "dir", dir, "err", err)
				if err := os.RemoveAll(dir); err != nil {
					c.log.Error("cache: delete bad entry", "dir", dir, "err", err)
				}
				return
			}
			mu.Lock()
			loaded = append(loaded, e)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		for _, e := range loaded {
			e.f.Close()
		}
		return nil, fmt.Errorf("cache: open %s: %w", c.cfg.Dir, err)
	}
	slices.SortFunc(loaded, func(a, b *Entry) int { return a.lastUse.Compare(b.lastUse) })
	return loaded, nil
}

// loadEntry reads one entry directory and re-verifies every piece its
// bitfield claims. When all pieces are there, the same pass checks the
// whole-file SHA-256; a file that fails it is a bad entry.
func (c *Cache) loadEntry(ctx context.Context, dir, name string) (*Entry, error) {
	b, err := os.ReadFile(filepath.Join(dir, infoName))
	if err != nil {
		return nil, err
	}
	info := new(fileinfo.Info)
	if err := json.Unmarshal(b, info); err != nil {
		return nil, fmt.Errorf("decode %s: %w", infoName, err)
	}
	if err := info.Validate(); err != nil {
		return nil, err
	}
	ih := strings.ToLower(info.InfoHash)
	if ih != name {
		return nil, fmt.Errorf("infohash %s in a directory named %s", ih, name)
	}
	info.InfoHash = ih
	f, err := os.OpenFile(filepath.Join(dir, dataName), os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	e, err := c.verifyEntry(ctx, info, dir, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return e, nil
}

func (c *Cache) verifyEntry(ctx context.Context, info *fileinfo.Info, dir string, f *os.File) (*Entry, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() != info.Size {
		// Pieces past a short file fail verification below.
		if err := f.Truncate(info.Size); err != nil {
			return nil, err
		}
	}
	e := newEntry(c, info, info.InfoHash, dir, f)
	n := info.NumPieces()

	bits, err := os.ReadFile(filepath.Join(dir, piecesName))
	if pst, serr := os.Stat(filepath.Join(dir, piecesName)); err == nil && serr == nil && len(bits) == len(e.bits) {
		e.lastUse = pst.ModTime()
	} else {
		bits = make([]byte, len(e.bits))
		e.lastUse = st.ModTime()
		e.dirtyOnLoad = true
	}
	// The whole-file hash goes on from this pass: over the pieces that
	// pass from the first one on, without a gap. Once it covers every
	// piece, it must match.
	whole := e.whole.h
	buf := make([]byte, info.PieceLength)
	for i := range n {
		if bits[i/8]&(0x80>>(i%8)) == 0 {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		off, l := info.PieceBounds(i)
		if _, err := f.ReadAt(buf[:l], off); err != nil || sha1.Sum(buf[:l]) != info.PieceHash(i) {
			c.log.Warn("cache: dropping a piece that fails its SHA-1 on disk", "infohash", e.ih, "path", info.Path, "piece", i, "err", err)
			e.dirtyOnLoad = true
			continue
		}
		e.bits[i/8] |= 0x80 >> (i % 8)
		e.haveN++
		if i == e.whole.next {
			whole.Write(buf[:l])
			e.whole.next++
		}
	}
	if e.whole.next == n {
		if sum := hex.EncodeToString(whole.Sum(nil)); sum != info.SHA256 {
			return nil, fmt.Errorf("whole-file SHA-256 is %s, want %s", sum, info.SHA256)
		}
		e.complete, e.whole.finished = true, true
	}
	return e, nil
}
