package origin

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"golang.org/x/time/rate"
)

// egressChunk is the most bytes one read takes from the egress limiter, so
// that concurrent requests interleave finely and a request whose client
// went away stops taking its share within one chunk.
const egressChunk = 32 << 10

// priority is the class of a request's bytes under the egress cap.
type priority int

const (
	// priorityNormal is every request today.
	priorityNormal priority = iota
)

// requestPriority classifies a file request. Every request is
// priorityNormal for now; this is where a player's waiting range will be
// told apart from a proxy's background fetch, and egress.reader where the
// two classes will be scheduled differently.
func requestPriority(*http.Request) priority { return priorityNormal }

// egress caps the origin's total outgoing file bytes with one limiter that
// every request shares. The zero rate means unlimited, and then readers go
// out untouched, so the kernel can sendfile them.
type egress struct {
	lim   *rate.Limiter // nil: unlimited
	chunk int
}

func newEgress(bytesPerSecond int64) *egress {
	if bytesPerSecond <= 0 {
		return &egress{}
	}
	chunk := int(min(bytesPerSecond, egressChunk))
	return &egress{lim: rate.NewLimiter(rate.Limit(bytesPerSecond), chunk), chunk: chunk}
}

// reader paces r under the cap; ctx is the request's, so a client that goes
// away stops waiting for (and consuming) the budget.
func (e *egress) reader(ctx context.Context, r io.Reader, _ priority) io.Reader {
	if e.lim == nil {
		return r
	}
	return &pacedReader{ctx: ctx, r: r, e: e}
}

// pacedReader reads at most one chunk at a time and waits for the
// limiter's permission before handing the bytes on.
type pacedReader struct {
	ctx context.Context
	r   io.Reader
	e   *egress
}

func (p *pacedReader) Read(b []byte) (int, error) {
	if len(b) > p.e.chunk {
		b = b[:p.e.chunk]
	}
	n, err := p.r.Read(b)
	if n > 0 {
		if werr := p.e.lim.WaitN(p.ctx, n); werr != nil {
			return 0, fmt.Errorf("egress limit: %w", werr)
		}
	}
	return n, err
}
