package proxy

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/fetch"
	"github.com/p2sp/p2sp/internal/fileinfo"
)

// staging keeps the bytes of files streamed before the tracker knew them,
// so that once the origin registers such a file its pieces can be verified
// into the cache and seeded, instead of fetched from the origin again.
// Nothing staged is ever served: it enters the cache only through
// Entry.WritePiece, which checks every piece's hash.
type staging struct {
	dir string
	// limit bounds the sizes of the files staged at once: staged bytes
	// are not in the cache's accounting, but must not outgrow it.
	limit int64

	// run runs a function in a goroutine the server owns.
	run func(func())

	mu    sync.Mutex
	files map[string]*stagedFile // by path
}

// stagedFile is one file version's bytes at their offsets, and which
// ranges of it were written.
type stagedFile struct {
	meta fetch.Meta
	name string

	mu       sync.Mutex
	f        *os.File
	ranges   []span // sorted, disjoint, merged
	adopting bool
}

type span struct{ start, end int64 }

// How long the proxy waits for the origin to register a reported file.
const (
	adoptPoll    = 500 * time.Millisecond
	adoptTimeout = 2 * time.Minute
)

func newStaging(dir string, limit int64, run func(func())) (*staging, error) {
	// Staged bytes of an earlier run are not worth the bookkeeping.
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("clear staging: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create staging: %w", err)
	}
	return &staging{dir: dir, limit: limit, run: run, files: map[string]*stagedFile{}}, nil
}

// file returns the staged file for path p at version meta, replacing an
// older version; nil when it cannot be staged (the stream goes on).
func (st *staging) file(p string, meta fetch.Meta) *stagedFile {
	return st.fileFrom(p, meta, nil)
}

// fileFrom is file with the file system's part done beforehand (pf, when
// not nil): see prepare.
func (st *staging) fileFrom(p string, meta fetch.Meta, pf *preparedFile) *stagedFile {
	st.mu.Lock()
	defer st.mu.Unlock()
	if sf, ok := st.files[p]; ok {
		if sf.meta == meta {
			pf.discard()
			return sf
		}
		sf.remove()
		delete(st.files, p)
	}
	total := meta.Size
	for _, sf := range st.files {
		total += sf.meta.Size
	}
	if total > st.limit {
		pf.discard()
		return nil
	}
	var (
		f   *os.File
		err error
	)
	if pf != nil {
		<-pf.done // long done: it was made beside a round trip
		f, err = pf.f, pf.err
	} else {
		f, err = os.CreateTemp(st.dir, stagedPattern)
	}
	if err != nil {
		return nil
	}
	sf := &stagedFile{meta: meta, name: f.Name(), f: f}
	st.files[p] = sf
	return sf
}

// stagedPattern names staged files (os.CreateTemp).
const stagedPattern = "staged-"

// preparedFile is a staging file created in the background.
type preparedFile struct {
	st   *staging
	done chan struct{}
	f    *os.File
	err  error
}

// prepare creates a staging file beside a cold request's origin request,
// which takes a round trip anyway: the player's first bytes then do not
// wait for the file system (creating a file costs 0.2 ms and more on the
// machines measured here). Whoever gets a prepared file passes it to
// fileFrom or discards it.
func (st *staging) prepare() *preparedFile {
	pf := &preparedFile{st: st, done: make(chan struct{})}
	st.run(func() {
		defer close(pf.done)
		pf.f, pf.err = os.CreateTemp(st.dir, stagedPattern)
	})
	return pf
}

// discard deletes a prepared file nobody uses, in the background; a nil
// pf is nothing to discard.
func (pf *preparedFile) discard() {
	if pf == nil {
		return
	}
	pf.st.run(func() {
		<-pf.done
		if pf.err == nil {
			pf.f.Close()
			os.Remove(pf.f.Name())
		}
	})
}

// has reports whether bytes of p are staged: a request streams it from the
// origin, and they enter the cache once it is registered.
func (st *staging) has(p string) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.files[p] != nil
}

// forget drops whatever is staged for p.
func (st *staging) forget(p string) {
	st.mu.Lock()
	sf := st.files[p]
	st.mu.Unlock()
	if sf != nil {
		st.drop(p, sf)
	}
}

// drop forgets sf and deletes its bytes.
func (st *staging) drop(p string, sf *stagedFile) {
	st.mu.Lock()
	if st.files[p] == sf {
		delete(st.files, p)
	}
	st.mu.Unlock()
	sf.remove()
}

// write keeps b at off; a failed write only loses the chance to adopt.
func (sf *stagedFile) write(b []byte, off int64) {
	if sf == nil {
		return
	}
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if sf.f == nil {
		return
	}
	if _, err := sf.f.WriteAt(b, off); err != nil {
		return
	}
	sf.ranges = addSpan(sf.ranges, span{off, off + int64(len(b))})
}

// addSpan inserts s into sorted disjoint spans, merging what touches.
func addSpan(spans []span, s span) []span {
	out := make([]span, 0, len(spans)+1)
	for _, x := range spans {
		switch {
		case x.end < s.start:
			out = append(out, x)
		case s.end < x.start:
			out = append(out, s)
			s = x
		default:
			s = span{min(s.start, x.start), max(s.end, x.end)}
		}
	}
	return append(out, s)
}

// covers reports whether [start, end) was written.
func (sf *stagedFile) covers(start, end int64) bool {
	for _, x := range sf.ranges {
		if x.start <= start && end <= x.end {
			return true
		}
	}
	return false
}

func (sf *stagedFile) remove() {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if sf.f != nil {
		sf.f.Close()
		sf.f = nil
		os.Remove(sf.name)
	}
}

// passThrough streams a file the tracker does not know from the origin,
// reports it, and waits in the background for its registration to adopt
// what was streamed.
func (s *Server) passThrough(c *gin.Context, p string) error {
	err := s.serveOrigin(c, p, s.staging)
	if err != nil {
		return err
	}
	s.adoptLater(p)
	return nil
}

// adoptLater reports a file streamed without file info and waits in the
// background for its registration to adopt what was staged.
func (s *Server) adoptLater(p string) {
	s.reports.send(fileinfo.Report{Kind: fileinfo.ReportUnknownFile, Path: p, Detail: "streamed from the origin without file info"})
	s.staging.mu.Lock()
	sf := s.staging.files[p]
	start := sf != nil && !sf.adopting
	if start {
		sf.adopting = true
	}
	s.staging.mu.Unlock()
	if start {
		s.wg.Go(func() { s.adopt(p, sf) })
	}
}

// adopt polls the tracker until the staged file is registered, then
// verifies its complete pieces into the cache and seeds them.
func (s *Server) adopt(p string, sf *stagedFile) {
	defer s.staging.drop(p, sf)
	deadline := time.Now().Add(adoptTimeout)
	tick := time.NewTicker(adoptPoll)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		info, err := s.lookup(s.ctx, p)
		if errors.Is(err, errUnknownFile) {
			continue
		}
		if err != nil {
			s.log.Debug("adopt: tracker lookup", "path", p, "err", err)
			continue
		}
		// The ETags cannot be compared: the origin names content by its
		// SHA-256 once hashed, and the streamed bytes may predate that.
		// Every staged piece is checked against the registered hashes.
		if info.Size != sf.meta.Size {
			s.log.Info("adopt: registered version differs from the streamed one", "path", p)
			return
		}
		if err := s.adoptInfo(info, sf); err != nil {
			s.log.Warn("adopt failed", "path", p, "err", err)
		}
		return
	}
}

// adoptInfo holds sf.mu from before the cache entry is made: a drop of the
// path's version (see Server.drop) forgets the staged bytes first, so an
// adoption either ends before the drop removes what it made, or finds
// nothing staged and makes nothing. The tracker may still name the version
// just dropped; without this, an adoption racing the drop brought it back
// into the cache, and the next request failed on it again.
func (s *Server) adoptInfo(info *fileinfo.Info, sf *stagedFile) error {
	sf.mu.Lock()
	defer sf.mu.Unlock()
	if sf.f == nil {
		return fmt.Errorf("adopt %s: the staged bytes were dropped", info.Path)
	}
	entry, err := s.cache.Create(info)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", info.Path, err)
	}
	defer entry.Release()
	f, err := s.activate(info, entry)
	if err != nil {
		return fmt.Errorf("adopt %s: %w", info.Path, err)
	}
	adopted := 0
	for i := range info.NumPieces() {
		off, n := info.PieceBounds(i)
		if entry.Have(i) || !sf.covers(off, off+n) {
			continue
		}
		buf := make([]byte, n)
		if _, err := sf.f.ReadAt(buf, off); err != nil && err != io.EOF {
			return fmt.Errorf("adopt %s: read staged piece %d: %w", info.Path, i, err)
		}
		if err := entry.WritePiece(i, buf); err != nil {
			s.log.Warn("adopt: staged piece rejected", "path", info.Path, "piece", i, "err", err)
			continue
		}
		f.torrent.Sealed(i)
		f.markServed(i)
		adopted++
	}
	s.log.Info("adopted streamed file", "path", info.Path, "pieces", adopted, "of", info.NumPieces())
	return nil
}
