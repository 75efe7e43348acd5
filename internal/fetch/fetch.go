package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// ErrNotFound is returned for a file the origin does not have.
var ErrNotFound = errors.New("not found on origin")

// ErrChanged is returned when the origin serves a different version of the
// file than the one asked for, or ignores the range.
var ErrChanged = errors.New("origin file changed or range ignored")

// ErrNotModified is returned by Get when the origin's version is still
// the one the caller holds.
var ErrNotModified = errors.New("not modified")

// ErrTooLarge is returned by Get for a body over its limit.
var ErrTooLarge = errors.New("origin body over the limit")

// ErrStalled is returned by a body read that waited IdleTimeout for the
// origin's next byte.
var ErrStalled = errors.New("origin stalled mid-body")

// DefaultIdleTimeout is Origin.IdleTimeout when left 0.
const DefaultIdleTimeout = 10 * time.Second

// Origin is one origin server.
type Origin struct {
	// Base is the origin's base URL, "http://host:port".
	Base   string
	Client *http.Client
	// IdleTimeout bounds how long a read of a Range body waits for the
	// origin's next byte (0: DefaultIdleTimeout). It runs only while a read
	// waits, so a body read slowly (a slow player) may take as long as it
	// needs; an origin that goes silent mid-body fails the read instead of
	// holding it forever.
	IdleTimeout time.Duration
}

// Meta is what a HEAD tells of a file.
type Meta struct {
	Size        int64
	ETag        string
	ModTime     time.Time
	ContentType string
}

// Head asks the origin for a file's size and validators.
func (o *Origin) Head(ctx context.Context, path string) (Meta, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, fileinfo.FileURL(o.Base, path), nil)
	if err != nil {
		return Meta{}, fmt.Errorf("head %s: %w", path, err)
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return Meta{}, fmt.Errorf("head %s: %w", path, err)
	}
	resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return Meta{}, fmt.Errorf("head %s: %w", path, ErrNotFound)
	case resp.StatusCode != http.StatusOK:
		return Meta{}, fmt.Errorf("head %s: origin answered %s", path, resp.Status)
	case resp.ContentLength < 0:
		return Meta{}, fmt.Errorf("head %s: origin sent no Content-Length", path)
	}
	return meta(resp), nil
}

// Whole fetches a whole small file (a manifest) into memory, at most limit
// bytes. With etag set it asks conditionally (If-None-Match): a 304 is
// ErrNotModified and costs no body.
func (o *Origin) Whole(ctx context.Context, path, etag string, limit int64) (Meta, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fileinfo.FileURL(o.Base, path), nil)
	if err != nil {
		return Meta{}, nil, fmt.Errorf("get %s: %w", path, err)
	}
	if etag != "" {
		req.Header.Set("If-None-Match", etag)
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		return Meta{}, nil, fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		return Meta{}, nil, fmt.Errorf("get %s: %w", path, ErrNotModified)
	case http.StatusNotFound:
		return Meta{}, nil, fmt.Errorf("get %s: %w", path, ErrNotFound)
	default:
		return Meta{}, nil, fmt.Errorf("get %s: origin answered %s", path, resp.Status)
	}
	if resp.ContentLength > limit {
		return Meta{}, nil, fmt.Errorf("get %s: %d bytes: %w", path, resp.ContentLength, ErrTooLarge)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	switch {
	case err != nil:
		return Meta{}, nil, fmt.Errorf("get %s: %w", path, err)
	case int64(len(body)) > limit:
		return Meta{}, nil, fmt.Errorf("get %s: %w", path, ErrTooLarge)
	case resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength:
		return Meta{}, nil, fmt.Errorf("get %s: %d of %d bytes: %w", path, len(body), resp.ContentLength, io.ErrUnexpectedEOF)
	}
	m := meta(resp)
	m.Size = int64(len(body))
	return m, body, nil
}

// meta reads a response's validators and type.
func meta(resp *http.Response) Meta {
	m := Meta{Size: resp.ContentLength, ETag: resp.Header.Get("ETag"), ContentType: resp.Header.Get("Content-Type")}
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		m.ModTime = t
	}
	return m
}

// Range returns the bytes [off, off+n) of the file's version etag (strong
// ETag; "" accepts any version). The body is checked to be exactly that:
// a 206 with the matching Content-Range, or a 200 of the whole file when off
// is 0 and n the whole size; anything else is ErrChanged. The caller closes
// the reader; it yields exactly n bytes or an error.
func (o *Origin) Range(ctx context.Context, path string, off, n, size int64, etag string) (io.ReadCloser, error) {
	// The body's own context: a stalled read cancels it, which is the only
	// way to interrupt a read blocked on the connection.
	ctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fileinfo.FileURL(o.Base, path), nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("get %s: %w", path, err)
	}
	want := fmt.Sprintf("bytes %d-%d/%d", off, off+n-1, size)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	if etag != "" && !strings.HasPrefix(etag, "W/") { // a weak tag is not allowed in If-Range
		// If-Match: an origin that holds another version says so (412)
		// instead of sending it whole; If-Range for one that ignores
		// If-Match. Either way the answer's ETag is checked too.
		req.Header.Set("If-Match", etag)
		req.Header.Set("If-Range", etag)
	}
	resp, err := o.Client.Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("get %s %s: %w", path, want, err)
	}
	if err := check(resp, etag, want, off, n, size); err != nil {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("get %s %s: %w", path, want, err)
	}
	return o.watched(resp.Body, n, cancel), nil
}

// watched returns the body of a request whose context cancel ends, to be
// read for exactly n bytes, watched for stalls.
func (o *Origin) watched(rc io.ReadCloser, n int64, cancel context.CancelFunc) *exactBody {
	b := &exactBody{rc: rc, left: n, idle: o.IdleTimeout, cancel: cancel}
	if b.idle <= 0 {
		b.idle = DefaultIdleTimeout
	}
	b.watchdog = time.AfterFunc(b.idle, func() {
		b.stalled.Store(true)
		cancel()
	})
	b.watchdog.Stop()
	return b
}

// Get asks for bytes [off, off+n) of whatever version of the file the
// origin holds now, and returns that version's meta with them: a cold
// request needs no HEAD first, so its first byte costs one round trip. The
// body yields exactly the bytes the origin's Content-Range announced (the
// range clamped to the file's end); it is nil when the range starts past
// the end (the origin's 416 still tells the size). The caller closes it.
func (o *Origin) Get(ctx context.Context, path string, off, n int64) (_ Meta, _ io.ReadCloser, err error) {
	ctx, cancel := context.WithCancel(ctx) // the body's, as in Range
	defer func() {
		if err != nil {
			cancel()
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fileinfo.FileURL(o.Base, path), nil)
	if err != nil {
		return Meta{}, nil, fmt.Errorf("get %s: %w", path, err)
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
	resp, err := o.Client.Do(req)
	if err != nil {
		return Meta{}, nil, fmt.Errorf("get %s from %d: %w", path, off, err)
	}
	m := meta(resp)      // Size from the Content-Range below
	var start, end int64 // the body's bytes, [start, end)
	switch cr := resp.Header.Get("Content-Range"); resp.StatusCode {
	case http.StatusPartialContent:
		var last int64
		if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &start, &last, &m.Size); err != nil || start != off || last < start || last >= off+n || last >= m.Size {
			err = fmt.Errorf("%w: Content-Range %q to bytes=%d-%d", ErrChanged, cr, off, off+n-1)
			resp.Body.Close()
			return Meta{}, nil, fmt.Errorf("get %s: %w", path, err)
		}
		end = last + 1
	case http.StatusOK:
		// A whole file for a range: usable only from its first byte.
		if off != 0 || resp.ContentLength < 0 {
			resp.Body.Close()
			return Meta{}, nil, fmt.Errorf("get %s: %w: 200 to a range from %d", path, ErrChanged, off)
		}
		m.Size, end = resp.ContentLength, min(n, resp.ContentLength)
	case http.StatusRequestedRangeNotSatisfiable:
		resp.Body.Close()
		if _, err := fmt.Sscanf(cr, "bytes */%d", &m.Size); err != nil || m.Size > off {
			return Meta{}, nil, fmt.Errorf("get %s: 416 with Content-Range %q", path, cr)
		}
		cancel()
		return m, nil, nil
	case http.StatusNotFound:
		resp.Body.Close()
		return Meta{}, nil, fmt.Errorf("get %s: %w", path, ErrNotFound)
	default:
		resp.Body.Close()
		return Meta{}, nil, fmt.Errorf("get %s: origin answered %s", path, resp.Status)
	}
	return m, o.watched(resp.Body, end-start, cancel), nil
}

func check(resp *http.Response, etag, want string, off, n, size int64) error {
	if etag != "" && resp.Header.Get("ETag") != "" && resp.Header.Get("ETag") != etag {
		return fmt.Errorf("%w: ETag %s, expected %s", ErrChanged, resp.Header.Get("ETag"), etag)
	}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		if got := resp.Header.Get("Content-Range"); got != want {
			return fmt.Errorf("%w: Content-Range %q", ErrChanged, got)
		}
	case http.StatusOK:
		if off != 0 || n != size || resp.ContentLength != size {
			return fmt.Errorf("%w: 200 with %d bytes to a range request", ErrChanged, resp.ContentLength)
		}
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusRequestedRangeNotSatisfiable:
		return fmt.Errorf("%w: 416, the file is shorter now", ErrChanged)
	case http.StatusPreconditionFailed:
		return fmt.Errorf("%w: 412, the origin holds another version", ErrChanged)
	default:
		return fmt.Errorf("origin answered %s", resp.Status)
	}
	if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.FormatInt(n, 10) {
		return fmt.Errorf("%w: Content-Length %s for %d bytes", ErrChanged, cl, n)
	}
	return nil
}

// exactBody turns a body that ends early into an error rather than a
// short, silent EOF, and one that goes silent into ErrStalled.
type exactBody struct {
	rc   io.ReadCloser
	left int64
	// watchdog runs while a Read waits: after idle it sets stalled and
	// cancels the request, which ends the blocked read.
	idle     time.Duration
	watchdog *time.Timer
	stalled  atomic.Bool
	cancel   context.CancelFunc
}

func (b *exactBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	b.watchdog.Reset(b.idle)
	n, err := b.rc.Read(p)
	b.watchdog.Stop()
	b.left -= int64(n)
	switch {
	case err != nil && b.stalled.Load():
		err = fmt.Errorf("%w: no byte for %s with %d bytes to go", ErrStalled, b.idle, b.left)
	case err == io.EOF && b.left > 0:
		err = fmt.Errorf("origin body ended %d bytes early: %w", b.left, io.ErrUnexpectedEOF)
	case b.left == 0 && err == nil:
		err = io.EOF
	}
	return n, err
}

func (b *exactBody) Close() error {
	err := b.rc.Close()
	b.watchdog.Stop()
	b.cancel()
	return err
}
