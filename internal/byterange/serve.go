package byterange

import (
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// maxRanges bounds the ranges of one request; a request asking for more is
// answered 200 with the whole representation, as RFC 9110 section 14.2 lets
// a server ignore Range. Players ask for one range; many small ranges are a
// broken client or an attempt to make the server work for little traffic.
const maxRanges = 100

// Content is what Serve sends.
type Content struct {
	Size        int64
	ModTime     time.Time // zero (or the Unix epoch): no Last-Modified, no date validators
	ETag        string    // quoted entity tag, strong ("\"x\"") or weak ("W/\"x\""); "" for none
	ContentType string    // "" derives it from Name's extension, then application/octet-stream
	Name        string
	// Open returns a reader of exactly the bytes [off, off+n). If the
	// reader, or the R of an *io.LimitedReader it returns, is an io.Closer,
	// Serve closes it. Serve passes the request's context. When Open returns
	// an *io.LimitedReader wrapping an *os.File (or the *os.File itself
	// positioned at off) the kernel can sendfile it. Serve reads at most n
	// bytes, so a reader that runs past off+n is harmless; one that ends
	// early makes Serve return an error.
	Open func(ctx context.Context, off, n int64) (io.Reader, error)
	// Sent, if set, is told how many body bytes each copy sent, also when
	// it failed part way: callers count what players got, whichever path
	// (sendfile or not) the bytes took.
	Sent func(n int64)
	// Settle, if set, is called for each body once its last byte is read
	// and before that byte is written: an error ends the body one byte
	// short, which the client sees as a failed transfer. The origin checks
	// there that the file it read did not change meanwhile, so that bytes
	// of two versions never make a whole body.
	Settle func() error
}

// Serve answers r from c following RFC 9110 and net/http's serveContent:
// preconditions (412, 304), If-Range, Range (206 single part or
// multipart/byteranges, 416 for an unsatisfiable or malformed range), HEAD
// without a body. Range is honoured on GET and HEAD only.
//
// It returns a non-nil error only when opening or copying the body failed
// (or c.Size is negative, before anything is written). If the first Open
// fails, nothing has been written and Serve removes the headers it set, so
// the caller answers the error (httpapi.Handle does, with the status the
// error carries). Later, headers are already sent, and the short body
// (less than Content-Length) makes the client see a failed transfer, never
// wrong bytes.
//
// When w hides net/http's ReadFrom (gin's writer does) but reaches it
// through Unwrap and is an http.Flusher, a body from an *os.File is
// written to the unwrapped writer so that it is sendfiled; gin's Size then
// does not count the body.
func Serve(w http.ResponseWriter, r *http.Request, c *Content) error {
	if c.Size < 0 {
		return fmt.Errorf("serve %s: negative size %d", c.Name, c.Size)
	}
	h := w.Header()
	h.Set("Accept-Ranges", "bytes")
	if c.ETag != "" {
		h.Set("ETag", c.ETag)
	}
	if !isZeroTime(c.ModTime) {
		h.Set("Last-Modified", c.ModTime.UTC().Format(http.TimeFormat))
	}
	done, rangeHeader := checkPreconditions(w, r, c)
	if done {
		return nil
	}
	ranges, err := parseRequestRange(r, rangeHeader, c.Size)
	if err != nil {
		// Unsatisfiable or malformed: both are refused the way nginx
		// refuses them, with the size a client needs to ask again.
		h.Set("Content-Range", "bytes */"+strconv.FormatInt(c.Size, 10))
		serveError(w, err.Error(), http.StatusRequestedRangeNotSatisfiable)
		return nil
	}
	if len(ranges) > maxRanges || exceeds(ranges, c.Size) {
		// Asking for more bytes than the whole representation holds is an
		// attack or a confused client: net/http answers it whole, and so
		// do we.
		ranges = nil
	}
	ctype := contentType(c)
	switch len(ranges) {
	case 0:
		return serveOne(w, r, c, ctype, http.StatusOK, 0, c.Size)
	case 1:
		// RFC 9110 section 15.3.7.1: one range is never sent as multipart.
		return serveOne(w, r, c, ctype, http.StatusPartialContent, ranges[0].Start, ranges[0].Length)
	default:
		return serveMulti(w, r, c, ctype, ranges)
	}
}

// parseRequestRange parses the request's Range, ignoring it on methods
// other than GET and HEAD (RFC 9110 section 14.2 defines it for GET; HEAD
// answers the headers GET would).
func parseRequestRange(r *http.Request, header string, size int64) ([]Range, error) {
	if header == "" || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		return nil, nil
	}
	// Range is a singleton field: of two, neither is more the client's
	// than the other, so both are ignored and the whole representation,
	// which cannot be misread, is sent.
	if len(r.Header.Values("Range")) > 1 {
		return nil, nil
	}
	return Parse(header, size)
}

// exceeds reports whether the ranges add up to more than size, without
// overflowing.
func exceeds(ranges []Range, size int64) bool {
	var sum int64
	for _, ra := range ranges {
		if ra.Length > size-sum {
			return true
		}
		sum += ra.Length
	}
	return false
}

func contentType(c *Content) string {
	if c.ContentType != "" {
		return c.ContentType
	}
	return TypeByName(c.Name)
}

// mediaTypes are the media types that must be right even on a host without
// /etc/mime.types (Go's built-in table has none of them): a player refuses
// video served as application/octet-stream.
var mediaTypes = map[string]string{
	".mp4":  "video/mp4",
	".m4v":  "video/mp4",
	".webm": "video/webm",
	".mkv":  "video/x-matroska",
	".mov":  "video/quicktime",
	".ts":   "video/mp2t",
	".m3u8": "application/vnd.apple.mpegurl",
	".mpd":  "application/dash+xml",
	".mp3":  "audio/mpeg",
	".m4a":  "audio/mp4",
	".aac":  "audio/aac",
	".ogg":  "audio/ogg",
	".oga":  "audio/ogg",
	".ogv":  "video/ogg",
	".opus": "audio/ogg",
	".flac": "audio/flac",
	".wav":  "audio/wav",
	".vtt":  "text/vtt; charset=utf-8",
	".srt":  "application/x-subrip",
}

// TypeByName is the media type of a file by its name's extension, for
// Content.ContentType left empty and for catalogs.
func TypeByName(name string) string {
	ext := strings.ToLower(filepath.Ext(name))
	if t, ok := mediaTypes[ext]; ok {
		return t
	}
	if t := mime.TypeByExtension(ext); t != "" {
		return t
	}
	return "application/octet-stream"
}

// serveOne sends [off, off+n) with the given status: the whole
// representation (200) or one range (206).
func serveOne(w http.ResponseWriter, r *http.Request, c *Content, ctype string, code int, off, n int64) error {
	h := w.Header()
	if r.Method == http.MethodHead || n == 0 {
		h.Set("Content-Type", ctype)
		h.Set("Content-Length", strconv.FormatInt(n, 10))
		if code == http.StatusPartialContent {
			h.Set("Content-Range", Range{off, n}.ContentRange(c.Size))
		}
		w.WriteHeader(code)
		return nil
	}
	// Open before any header is set, so that a failure leaves the response
	// to the caller.
	body, err := open(r.Context(), c, off, n)
	if err != nil {
		unsetValidators(h)
		return err
	}
	defer body.close()
	h.Set("Content-Type", ctype)
	h.Set("Content-Length", strconv.FormatInt(n, 10))
	if code == http.StatusPartialContent {
		h.Set("Content-Range", Range{off, n}.ContentRange(c.Size))
	}
	w.WriteHeader(code)
	return body.copyTo(w)
}

// serveMulti sends a multipart/byteranges body (RFC 9110 section 14.6).
func serveMulti(w http.ResponseWriter, r *http.Request, c *Content, ctype string, ranges []Range) error {
	mw := multipart.NewWriter(w)
	size, err := multipartSize(ranges, ctype, c.Size, mw.Boundary())
	if err != nil {
		return fmt.Errorf("serve %s: %w", c.Name, err)
	}
	var first *body
	if r.Method != http.MethodHead {
		first, err = open(r.Context(), c, ranges[0].Start, ranges[0].Length)
		if err != nil {
			unsetValidators(w.Header())
			return err
		}
		defer first.close()
	}
	h := w.Header()
	h.Set("Content-Type", "multipart/byteranges; boundary="+mw.Boundary())
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	w.WriteHeader(http.StatusPartialContent)
	if r.Method == http.MethodHead {
		return nil
	}
	for i, ra := range ranges {
		if _, err := mw.CreatePart(partHeader(ra, ctype, c.Size)); err != nil {
			return fmt.Errorf("serve %s: write part header: %w", c.Name, err)
		}
		b := first
		if i > 0 {
			if b, err = open(r.Context(), c, ra.Start, ra.Length); err != nil {
				return err
			}
		}
		// The part's writer adds nothing to the bytes written through it,
		// so the body goes straight to w, where it can be sendfiled.
		err := b.copyTo(w)
		if i > 0 {
			b.close()
		}
		if err != nil {
			return err
		}
	}
	if err := mw.Close(); err != nil {
		return fmt.Errorf("serve %s: write closing boundary: %w", c.Name, err)
	}
	return nil
}

func partHeader(ra Range, ctype string, size int64) textproto.MIMEHeader {
	return textproto.MIMEHeader{
		"Content-Range": {ra.ContentRange(size)},
		"Content-Type":  {ctype},
	}
}

// multipartSize is the exact length of the multipart body serveMulti
// writes: the same multipart.Writer output, counted.
func multipartSize(ranges []Range, ctype string, size int64, boundary string) (int64, error) {
	var cw countingWriter
	mw := multipart.NewWriter(&cw)
	if err := mw.SetBoundary(boundary); err != nil {
		return 0, fmt.Errorf("multipart boundary: %w", err)
	}
	var n int64
	for _, ra := range ranges {
		if _, err := mw.CreatePart(partHeader(ra, ctype, size)); err != nil {
			return 0, fmt.Errorf("multipart part header: %w", err)
		}
		n += ra.Length
	}
	if err := mw.Close(); err != nil {
		return 0, fmt.Errorf("multipart closing boundary: %w", err)
	}
	return n + int64(cw), nil
}

type countingWriter int64

func (w *countingWriter) Write(p []byte) (int, error) {
	*w += countingWriter(len(p))
	return len(p), nil
}

// body is an opened range: a reader cut to exactly n bytes and what to
// close.
type body struct {
	r      *io.LimitedReader
	closer io.Closer
	off, n int64
	name   string
	sent   func(int64)
	settle func() error
}

// open calls c.Open and cuts what it returns to n bytes with a single
// *io.LimitedReader: over an *os.File that is the shape the kernel's
// sendfile path recognises, where a LimitedReader in a LimitedReader is not.
func open(ctx context.Context, c *Content, off, n int64) (*body, error) {
	rd, err := c.Open(ctx, off, n)
	if err != nil {
		return nil, fmt.Errorf("open %s [%d, %d): %w", c.Name, off, off+n, err)
	}
	b := &body{off: off, n: n, name: c.Name, sent: c.Sent, settle: c.Settle}
	if cl, ok := rd.(io.Closer); ok {
		b.closer = cl
	}
	if lr, ok := rd.(*io.LimitedReader); ok {
		if b.closer == nil {
			// An *io.LimitedReader cannot carry a Close: the file it wraps
			// would otherwise leak.
			b.closer, _ = lr.R.(io.Closer)
		}
		b.r = &io.LimitedReader{R: lr.R, N: min(lr.N, n)}
	} else {
		b.r = &io.LimitedReader{R: rd, N: n}
	}
	return b, nil
}

// chunk is the most copyTo writes in one call: a server that moves its
// write deadline before every write (httpapi's does) then gives a player
// that deadline for each chunk, not for the whole response, so a slow
// player is never cut off mid-film. One sendfile call per chunk costs
// nothing measurable.
const chunk = 256 << 10

// copyTo copies the body to w in chunks. io.Copy hands each chunk, an
// *io.LimitedReader, to the ResponseWriter's ReadFrom, which sendfiles it
// when it wraps an *os.File.
func (b *body) copyTo(w http.ResponseWriter) error {
	dst := b.dest(w)
	var hold int64 // the last byte, held for settle
	if b.settle != nil && b.r.N > 0 {
		hold = 1
	}
	var written int64
	var err error
	for b.r.N > hold {
		part := &io.LimitedReader{R: b.r.R, N: min(chunk, b.r.N-hold)}
		var n int64
		n, err = io.Copy(dst, part)
		written += n
		b.r.N -= n
		if err != nil || n == 0 {
			break
		}
	}
	if err == nil && hold > 0 && b.r.N == hold {
		var last [1]byte
		if _, err = io.ReadFull(b.r, last[:]); err == nil {
			err = b.settle()
		}
		if err == nil {
			var n int
			n, err = dst.Write(last[:])
			written += int64(n)
		}
	}
	if b.sent != nil {
		b.sent(written)
	}
	if err != nil {
		return fmt.Errorf("copy %s [%d, %d): %w", b.name, b.off, b.off+b.n, err)
	}
	if written != b.n {
		return fmt.Errorf("copy %s [%d, %d): %d of %d bytes: %w", b.name, b.off, b.off+b.n, written, b.n, io.ErrUnexpectedEOF)
	}
	return nil
}

// maxUnwrap bounds the walk down a chain of wrapped ResponseWriters.
const maxUnwrap = 8

// dest returns the writer to copy b into: w itself, unless w hides the
// ReadFrom of the writer it wraps (gin's writer does) and b is a file the
// kernel could sendfile. Then it is the nearest writer behind w's Unwrap
// chain that has ReadFrom, after a Flush of w has sent the status it may
// hold back and any bytes it buffered, so nothing can overtake them. The
// wrappers in between do not see the body's bytes: gin's Size does not
// count them.
func (b *body) dest(w http.ResponseWriter) io.Writer {
	if _, ok := w.(io.ReaderFrom); ok {
		return w
	}
	if _, ok := b.r.R.(*os.File); !ok {
		if f, ok := w.(http.Flusher); ok {
			return flushShort{w, f}
		}
		return w
	}
	f, ok := w.(http.Flusher)
	if !ok {
		return w
	}
	inner := w
	for range maxUnwrap {
		u, ok := inner.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return w
		}
		inner = u.Unwrap()
		if _, ok := inner.(io.ReaderFrom); ok {
			f.Flush()
			return inner
		}
	}
	return w
}

// flushShort sends a short write at once. net/http holds a write of less
// than its connection buffer (4 KiB) until more bytes come: a body read
// from the network (the first bytes after an origin's headers, a TCP
// segment or two) would wait for the origin's next chunk, 3 ms at
// 10 MB/s. A write at least that long goes out as it is anyway.
type flushShort struct {
	w io.Writer
	f http.Flusher
}

const shortWrite = 4 << 10

func (fs flushShort) Write(p []byte) (int, error) {
	n, err := fs.w.Write(p)
	if err == nil && n < shortWrite {
		fs.f.Flush()
	}
	return n, err
}

func (b *body) close() {
	if b.closer != nil {
		b.closer.Close()
	}
}

// unsetValidators removes the headers Serve set before it opened the body,
// so that the caller's answer to an Open error does not carry them.
func unsetValidators(h http.Header) {
	h.Del("Accept-Ranges")
	h.Del("ETag")
	h.Del("Last-Modified")
}

// serveError answers an error with a text reason. Like net/http's
// serveError it drops the validators: they describe the representation,
// which this response is not.
func serveError(w http.ResponseWriter, text string, code int) {
	h := w.Header()
	h.Del("ETag")
	h.Del("Last-Modified")
	http.Error(w, text, code)
}
