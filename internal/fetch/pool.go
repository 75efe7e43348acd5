package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/failover"
)

// Pool is several origins that serve the same media. It has Origin's
// methods; each request goes to a healthy origin (successive requests to
// successive ones), and to the next when one does not answer. A Range (or
// Get) body whose origin fails mid-body goes on from another origin at the
// byte where it broke, asking for the same version by its content ETag, so
// the reader sees one unbroken body: another version is refused
// (ErrChanged), never spliced in. A version named by an origin's own
// metadata ETag (before its hash is known; it differs between copies) is
// asked of each origin in turn until the one that issued it answers.
type Pool struct {
	origins []*Origin
	health  *failover.Set
	opts    PoolOptions
}

// PoolOptions are a Pool's backoff and observers.
type PoolOptions struct {
	// Backoff bounds how long an origin that failed is passed over.
	Backoff failover.Backoff
	// Log tells of each origin given up on; nil: slog.Default().
	Log *slog.Logger
	// OnFailover, if set, is called each time an origin is given up on
	// for another: midBody when a body goes on from another origin.
	OnFailover func(midBody bool)
}

// NewPool returns a pool of origins, tried in the order given while all
// are healthy.
func NewPool(origins []*Origin, opts PoolOptions) *Pool {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.OnFailover == nil {
		opts.OnFailover = func(bool) {}
	}
	return &Pool{origins: origins, health: failover.New(len(origins), true, opts.Backoff), opts: opts}
}

// Bases are the origins' base URLs, in the order given.
func (p *Pool) Bases() []string {
	out := make([]string, len(p.origins))
	for i, o := range p.origins {
		out[i] = o.Base
	}
	return out
}

// Down reports, for each origin in Bases' order, whether it is passed over
// after a failure.
func (p *Pool) Down() []bool { return p.health.Down(time.Now()) }

// outcome is what an origin's answer says about where to go next.
type outcome int

const (
	answered  outcome = iota // a usable answer: done
	elsewhere                // this origin lacks the file or that version; another may have it
	final                    // the answer would be the same anywhere, or the caller gave up
	down                     // the origin did not answer: pass it over for a while, try another
)

// outcomeOf classifies err, from an origin of a request whose context is
// ctx.
func outcomeOf(ctx context.Context, err error) outcome {
	switch {
	case err == nil:
		return answered
	case ctx.Err() != nil:
		return final
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrChanged):
		return elsewhere
	case errors.Is(err, ErrNotModified), errors.Is(err, ErrTooLarge):
		return final
	default: // refused, reset, stalled, cut short, 5xx
		return down
	}
}

// portable reports whether etag names the content itself, the same on
// every origin that holds those bytes: only then can a body go on from
// another origin. An origin's other ETags (from file metadata, before its
// hash is known) differ between origins even for identical copies.
func portable(etag string) bool { return strings.HasPrefix(etag, `"sha256-`) }

// each calls try with the origins in the order the pool's health says,
// skipping and then marking those in tried, until one answers. A request
// that found the file missing or changed on one origin and no answer on
// another returns the missing or changed, which says more.
func (p *Pool) each(ctx context.Context, tried []bool, try func(i int, o *Origin) error) error {
	var last, told error
	for _, i := range p.health.Order(time.Now()) {
		if tried[i] {
			continue
		}
		tried[i] = true
		err := try(i, p.origins[i])
		switch outcomeOf(ctx, err) {
		case answered:
			p.health.OK(i)
			return nil
		case final:
			return err
		case elsewhere:
			p.health.OK(i)
			told = err
		case down:
			p.health.Failed(i, time.Now())
			p.opts.Log.Warn("origin failed, trying another", "origin", p.origins[i].Base, "err", err)
			if len(p.origins) > 1 {
				p.opts.OnFailover(false)
			}
			last = err
		}
	}
	switch {
	case told != nil:
		return told
	case last != nil:
		return last
	}
	return errors.New("no origin left to try")
}

// Head is Origin.Head on the first origin that answers.
func (p *Pool) Head(ctx context.Context, path string) (Meta, error) {
	var m Meta
	err := p.each(ctx, make([]bool, len(p.origins)), func(_ int, o *Origin) (err error) {
		m, err = o.Head(ctx, path)
		return err
	})
	return m, err
}

// Whole is Origin.Whole on the first origin that answers.
func (p *Pool) Whole(ctx context.Context, path, etag string, limit int64) (Meta, []byte, error) {
	var (
		m    Meta
		body []byte
	)
	err := p.each(ctx, make([]bool, len(p.origins)), func(_ int, o *Origin) (err error) {
		m, body, err = o.Whole(ctx, path, etag, limit)
		return err
	})
	return m, body, err
}

// Range is Origin.Range on the first origin that answers, going on from
// the others if it fails mid-body and etag is a content ETag.
func (p *Pool) Range(ctx context.Context, path string, off, n, size int64, etag string) (io.ReadCloser, error) {
	b := &poolBody{p: p, ctx: ctx, path: path, off: off, left: n, size: size, etag: etag, tried: make([]bool, len(p.origins))}
	var err error
	if b.cur, b.at, err = b.open(); err != nil {
		return nil, err
	}
	return b, nil
}

// Get is Origin.Get on the first origin that answers, going on from the
// others if it fails mid-body and the version it answered has a content
// ETag.
func (p *Pool) Get(ctx context.Context, path string, off, n int64) (Meta, io.ReadCloser, error) {
	var (
		m    Meta
		body io.ReadCloser
		at   int
	)
	tried := make([]bool, len(p.origins))
	err := p.each(ctx, tried, func(i int, o *Origin) (err error) {
		m, body, err = o.Get(ctx, path, off, n)
		at = i
		return err
	})
	if err != nil || body == nil {
		return m, body, err
	}
	return m, &poolBody{p: p, ctx: ctx, path: path, off: off, left: min(n, m.Size-off), size: m.Size, etag: m.ETag,
		tried: tried, cur: body, at: at}, nil
}

// poolBody is a range body that moves to another origin when its origin
// fails: bytes [off, off+left) of version etag are still to come. One
// goroutine reads it; Close may come from another, to end a Read.
type poolBody struct {
	p         *Pool
	ctx       context.Context
	path      string
	off, left int64
	size      int64
	etag      string
	tried     []bool
	at        int   // cur's origin
	broke     error // the failure that closed the last cur

	mu     sync.Mutex
	cur    io.ReadCloser // nil after a failure, until the next Read
	closed bool
}

// errClosedBody is a Read after Close.
var errClosedBody = errors.New("read of a closed origin body")

// open asks the origins not tried yet for the rest of the body.
func (b *poolBody) open() (rc io.ReadCloser, at int, err error) {
	err = b.p.each(b.ctx, b.tried, func(i int, o *Origin) (err error) {
		at = i
		rc, err = o.Range(b.ctx, b.path, b.off, b.left, b.size, b.etag)
		return err
	})
	if err != nil && b.broke != nil {
		err = fmt.Errorf("%w; going on from another origin: %w", b.broke, err)
	}
	return rc, at, err
}

// current is the body to read from, from another origin after a failure.
func (b *poolBody) current() (io.ReadCloser, error) {
	b.mu.Lock()
	cur, closed := b.cur, b.closed
	b.mu.Unlock()
	switch {
	case closed:
		return nil, errClosedBody
	case cur != nil:
		return cur, nil
	}
	cur, at, err := b.open()
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		cur.Close()
		return nil, errClosedBody
	}
	b.cur, b.at = cur, at
	b.p.opts.Log.Info("origin body goes on from another origin", "path", b.path, "origin", b.p.origins[at].Base, "at", b.off)
	b.p.opts.OnFailover(true)
	return cur, nil
}

func (b *poolBody) Read(buf []byte) (int, error) {
	cur, err := b.current()
	if err != nil {
		return 0, err
	}
	n, err := cur.Read(buf)
	b.off += int64(n)
	b.left -= int64(n)
	if err == nil || err == io.EOF || b.isClosed() || outcomeOf(b.ctx, err) != down {
		return n, err
	}
	b.p.health.Failed(b.at, time.Now())
	if !portable(b.etag) || !slices.Contains(b.tried, false) {
		return n, err // nowhere to go on from
	}
	b.p.opts.Log.Warn("origin failed mid-body", "origin", b.p.origins[b.at].Base, "path", b.path, "at", b.off, "err", err)
	b.mu.Lock()
	b.cur, b.broke = nil, err
	b.mu.Unlock()
	cur.Close()
	if n > 0 {
		return n, nil // the next Read goes on elsewhere
	}
	return b.Read(buf)
}

func (b *poolBody) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

func (b *poolBody) Close() error {
	b.mu.Lock()
	cur := b.cur
	b.closed, b.cur = true, nil
	b.mu.Unlock()
	if cur == nil {
		return nil
	}
	return cur.Close()
}
