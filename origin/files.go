package origin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2sp/p2sp/internal/byterange"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
)

// errNotRegular is returned for a path that names a directory, a symlink
// or anything else that is not a regular file.
var errNotRegular = errors.New("not a regular file")

// serveFile answers GET and HEAD /files/*path.
func (s *Server) serveFile(c *gin.Context) error {
	p, err := fileinfo.CleanPath(c.Param("path"))
	if err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "bad path: %w", err)
	}
	if hidden(p) {
		return httpapi.Errorf(http.StatusNotFound, "not found")
	}
	f, v, err := s.media.open(c.Request.Context(), p)
	if err != nil {
		// Whatever the reason (absent, a directory, a symlink out of the
		// root, no permission), the answer tells nothing about the tree.
		s.log.Debug("file not served", "path", p, "err", err)
		return httpapi.Errorf(http.StatusNotFound, "not found")
	}
	defer f.Close()
	etag, hashed := s.cat.etag(p, v)
	if !hashed && holdsContentETag(c.Request) {
		etag = s.hashNow(c.Request.Context(), p, v)
	}
	content := &byterange.Content{
		Size:        v.size,
		ModTime:     v.modTime,
		ETag:        etag,
		ContentType: byterange.TypeByName(p),
		Name:        path.Base(p),
		Open:        s.opener(f, requestPriority(c.Request)),
		Settle:      unchangedSince(f, v),
	}
	if err := byterange.Serve(c.Writer, c.Request, content); err != nil {
		if c.Writer.Written() {
			// The client went away or the file shrank under us: the short
			// body already tells the client; there is nothing to answer.
			s.log.Debug("file transfer cut short", "path", p, "err", err)
			return nil
		}
		return fmt.Errorf("serve %s: %w", p, err)
	}
	return nil
}

// errChangedMidBody ends a body whose file changed while it was read.
var errChangedMidBody = errors.New("the file changed while it was being served")

// unchangedSince returns a check that the open file f still is version
// v, for the last byte of each body (byterange.Content.Settle): a file
// rewritten or truncated in place while a body was read from it gave the
// body bytes of two versions (or fewer) under v's ETag, and the body then
// ends short, which the client sees, rather than whole and mixed. A file
// renamed over or deleted keeps its bytes: the open inode changes only in
// its link count (and so its change time). Object stores fail such reads
// themselves (s3Object, If-Match): nil.
func unchangedSince(f mediaFile, v version) func() error {
	osf, ok := f.(*os.File)
	if !ok {
		return nil
	}
	return func() error {
		st, err := osf.Stat()
		if err != nil {
			return fmt.Errorf("stat after serving: %w", err)
		}
		now := versionOf(st)
		if now.equal(v) || (unlinked(st) && now.size == v.size && now.modTime.Equal(v.modTime)) {
			return nil
		}
		return errChangedMidBody
	}
}

// holdsContentETag reports whether the request's preconditions name a
// content ETag: a proxy fetching a registered file sends one in If-Range.
func holdsContentETag(r *http.Request) bool {
	return strings.Contains(r.Header.Get("If-Range"), `"sha256-`) || strings.Contains(r.Header.Get("If-Match"), `"sha256-`)
}

// hashNow hashes p for a request that holds a content ETag the origin
// cannot check yet (just after a restart, before the background hash
// reached the file), once however many requests ask, and returns the ETag
// of version v then. Without it the request's If-Range would fail, and a
// proxy would drop what it holds of a file that did not change.
func (s *Server) hashNow(ctx context.Context, p string, v version) string {
	s.hashing.Do(p, func() (any, error) {
		info, hv, err := s.hash(ctx, p)
		if err == nil {
			s.cat.setInfo(info, hv)
		}
		return nil, err
	})
	etag, _ := s.cat.etag(p, v)
	return etag
}

// opener returns the byterange Open function over f. The first range reads
// through f's own offset in an *io.LimitedReader, the shape the kernel can
// sendfile (f is then an *os.File) and the one an object store streams in
// a few ranged GETs; later ranges (multipart) use ReadAt, which leaves that
// offset alone whatever order Serve reads them in. Every reader goes
// through the egress limiter when one is set.
func (s *Server) opener(f mediaFile, prio priority) func(ctx context.Context, off, n int64) (io.Reader, error) {
	var seeked atomic.Bool
	return func(ctx context.Context, off, n int64) (io.Reader, error) {
		var r io.Reader
		if seeked.CompareAndSwap(false, true) {
			if _, err := f.Seek(off, io.SeekStart); err != nil {
				return nil, fmt.Errorf("seek to %d: %w", off, err)
			}
			if l, ok := f.(readLimiter); ok {
				l.limitReads(off + n)
			}
			r = &io.LimitedReader{R: f, N: n}
		} else {
			r = io.NewSectionReader(f, off, n)
		}
		return s.egress.reader(ctx, r, prio), nil
	}
}

// openRegular opens the regular file p below root, refusing a final
// symlink (the scanner skips symlinks, so serving them would serve what
// the tracker cannot know) and anything else that is not a regular file.
func openRegular(root *os.Root, p string) (*os.File, os.FileInfo, error) {
	lst, err := root.Lstat(p)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", p, err)
	}
	if !lst.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("open %s: %w", p, errNotRegular)
	}
	// O_NONBLOCK: should p become a FIFO between Lstat and open, the open
	// must not hang; on a regular file it changes nothing.
	f, err := root.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", p, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("stat %s: %w", p, err)
	}
	if !st.Mode().IsRegular() || !os.SameFile(lst, st) {
		f.Close()
		return nil, nil, fmt.Errorf("open %s: %w", p, errNotRegular)
	}
	return f, st, nil
}

// hidden reports whether an element of the slash-separated path p starts
// with a dot: such files (.git, .DS_Store, editors' temporaries) are never
// served or registered.
func hidden(p string) bool {
	for el := range strings.SplitSeq(p, "/") {
		if strings.HasPrefix(el, ".") {
			return true
		}
	}
	return false
}

// countingWriter counts the body bytes written through it, keeping the
// ResponseWriter's ReadFrom (and so sendfile) reachable, which gin's own
// writer hides.
type countingWriter struct {
	gin.ResponseWriter
	sent prometheus.Counter
}

var _ io.ReaderFrom = (*countingWriter)(nil)

func (w *countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.sent.Add(float64(n))
	return n, err
}

func (w *countingWriter) WriteString(s string) (int, error) {
	n, err := w.ResponseWriter.WriteString(s)
	w.sent.Add(float64(n))
	return n, err
}

// ReadFrom writes the status through gin (so that gin knows the response
// started) and hands src to net/http's ReadFrom.
func (w *countingWriter) ReadFrom(src io.Reader) (int64, error) {
	w.ResponseWriter.WriteHeaderNow()
	var n int64
	var err error
	if u, ok := w.ResponseWriter.(interface{ Unwrap() http.ResponseWriter }); ok {
		if rf, ok := u.Unwrap().(io.ReaderFrom); ok {
			n, err = rf.ReadFrom(src)
			w.sent.Add(float64(n))
			return n, err
		}
	}
	return io.Copy(writerOnly{w}, src)
}

// writerOnly hides ReadFrom from io.Copy, which would otherwise recurse.
type writerOnly struct{ io.Writer }
