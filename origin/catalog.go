package origin

import (
	"container/heap"
	"sort"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/byterange"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/metrics"
)

// CatalogEntry is one file of GET /v1/catalog.
type CatalogEntry struct {
	Path        string    `json:"path"`
	Size        int64     `json:"size"`
	ContentType string    `json:"content_type"`
	ETag        string    `json:"etag"`
	ModTime     time.Time `json:"mod_time"`
	// Duration is in seconds, for audio and video whose container states
	// it (MP4, QuickTime, WAV); 0 (absent) otherwise.
	Duration float64 `json:"duration,omitempty"`
	// Registered is true once the tracker accepted the hash of the file's
	// current version.
	Registered bool `json:"registered"`
}

// entry is what the origin knows of one media file.
type entry struct {
	path string
	// stat is the latest version seen, by a scan or the hasher.
	stat version
	// info is the latest hash, of version hashed; it describes the
	// current version only if hashed is stat (see current).
	info   *fileinfo.Info
	hashed version
	// registered means the tracker accepted info.
	registered bool
	// force asks for a rehash even though size and modTime look
	// unchanged: a proxy saw bytes that do not match info.
	force bool
	// forcedAt is when the last forced rehash was taken up, so that a
	// stream of reports cannot keep the hasher on one large file.
	forcedAt time.Time
	// busy is true while the worker holds the entry.
	busy bool
	// idx is the entry's index in the queue, -1 when not queued.
	idx int
}

// current reports whether info describes the file's current version.
func (e *entry) current() bool {
	return e.info != nil && e.hashed.equal(e.stat)
}

// etag is the entity tag of the current version: its content's once
// hashed, its stat's before.
func (e *entry) etag() string {
	if e.current() {
		return e.info.ETag
	}
	return e.stat.statETag()
}

func (e *entry) needsHash() bool { return e.force || !e.current() }

// job is one unit of the worker's work, copied out of the catalog so the
// worker needs no lock while hashing.
type job struct {
	path string
	// info is set when the current version is hashed and only needs
	// registering.
	info *fileinfo.Info
}

// catalog is the set of media files the scanner found, and the queue of
// those the worker must hash or register.
type catalog struct {
	m *metrics.Origin
	// registering is false when there is no tracker: a hashed file is
	// then done with.
	registering bool
	// settle is how old a file's modification time must be for the file
	// to be hashed at first sight.
	settle time.Duration
	wake   chan struct{} // cap 1: "the queue may be non-empty"

	mu          sync.Mutex
	files       map[string]*entry
	queue       queue
	busy        int
	nRegistered int
}

func newCatalog(m *metrics.Origin, registering bool, settle time.Duration) *catalog {
	return &catalog{m: m, registering: registering, settle: settle, wake: make(chan struct{}, 1), files: make(map[string]*entry)}
}

// observe records a stat of path (regular, not hidden) and queues the file
// if it needs hashing or registering. A new or changed file is queued only
// once it has settled: its modification time is older than c.settle, or a
// second observation found it unchanged. A file still being copied into the
// media is then not hashed (and registered) half-written. It reports
// whether the file was queued.
func (c *catalog) observe(path string, v version, now time.Time) bool {
	return c.record(path, v, now.Sub(v.modTime) >= c.settle)
}

// record is observe with the verdict on settling made by the caller: the
// watcher knows a file settled once its writer closed it (watch.go).
func (c *catalog) record(path string, v version, settled bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.files[path]
	switch {
	case e == nil:
		e = &entry{path: path, stat: v, idx: -1}
		c.files[path] = e
		if !settled {
			return false
		}
	case !e.stat.equal(v):
		e.stat = v
		c.setRegistered(e, false)
		if !settled {
			if e.idx >= 0 {
				heap.Remove(&c.queue, e.idx)
				c.updateBacklog()
			}
			return false
		}
	case e.busy || e.idx >= 0 || (e.current() && (e.registered || !c.registering) && !e.force):
		return false
	}
	c.push(e)
	return true
}

// retain drops every file not in seen: it was removed from the media.
func (c *catalog) retain(seen map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, e := range c.files {
		if !seen[p] {
			c.dropLocked(e)
		}
	}
}

// drop forgets path.
func (c *catalog) drop(path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.files[path]; e != nil {
		c.dropLocked(e)
	}
}

func (c *catalog) dropLocked(e *entry) {
	if e.idx >= 0 {
		heap.Remove(&c.queue, e.idx)
	}
	c.setRegistered(e, false)
	delete(c.files, e.path)
	c.updateBacklog()
}

// reregister queues path for registration again, and for a rehash too if
// rehash is set and no forced rehash of it started within cooldown. It
// reports whether the file is known.
func (c *catalog) reregister(path string, rehash bool, now time.Time, cooldown time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.files[path]
	if e == nil {
		return false
	}
	if rehash && now.Sub(e.forcedAt) >= cooldown {
		e.force = true
	}
	c.setRegistered(e, false)
	c.push(e)
	return true
}

// next blocks until there is a job or done is closed.
func (c *catalog) next(done <-chan struct{}) (job, bool) {
	for {
		c.mu.Lock()
		if len(c.queue) > 0 {
			e := heap.Pop(&c.queue).(*entry)
			e.busy = true
			c.busy++
			j := job{path: e.path}
			if e.force {
				e.force = false
				e.forcedAt = time.Now()
			} else if e.current() {
				j.info = e.info
			}
			c.updateBacklog()
			c.mu.Unlock()
			return j, true
		}
		c.mu.Unlock()
		select {
		case <-done:
			return job{}, false
		case <-c.wake:
		}
	}
}

// finish releases the job's entry.
func (c *catalog) finish(j job) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.busy--
	if e := c.files[j.path]; e != nil {
		e.busy = false
	}
	c.updateBacklog()
}

// changed records a newer stat the worker saw while hashing; the next
// scan queues the file again once it has settled.
func (c *catalog) changed(path string, v version) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.files[path]; e != nil {
		e.stat = v
		c.setRegistered(e, false)
		if e.idx >= 0 {
			heap.Fix(&c.queue, e.idx)
		}
	}
}

// setInfo stores a fresh hash of version v unless the file changed or was
// dropped meanwhile. It reports whether info was stored.
func (c *catalog) setInfo(info *fileinfo.Info, v version) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.files[info.Path]
	if e == nil {
		return false
	}
	if !e.stat.equal(v) {
		// The scanner saw a newer version and queued it already.
		return false
	}
	e.info, e.hashed = info, v
	c.setRegistered(e, false)
	if e.idx >= 0 {
		// A report queued it again during the hash: its rank changed.
		heap.Fix(&c.queue, e.idx)
	}
	return true
}

// markRegistered records that the tracker accepted info, if it is still
// the file's latest hash.
func (c *catalog) markRegistered(info *fileinfo.Info) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.files[info.Path]; e != nil && e.info == info && e.current() {
		c.setRegistered(e, true)
	}
}

// etag returns the entity tag of path in version v: the content's when
// v is the version hashed (hashed is then true), else v's own.
func (c *catalog) etag(path string, v version) (etag string, hashed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.files[path]; e != nil && e.info != nil && e.hashed.equal(v) {
		return e.info.ETag, true
	}
	return v.statETag(), false
}

// info returns path's hash if it describes the current version.
func (c *catalog) info(path string) *fileinfo.Info {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.files[path]; e != nil && e.current() {
		return e.info
	}
	return nil
}

// list returns the catalog sorted by path.
func (c *catalog) list() []CatalogEntry {
	c.mu.Lock()
	out := make([]CatalogEntry, 0, len(c.files))
	for _, e := range c.files {
		out = append(out, CatalogEntry{
			Path:        e.path,
			Size:        e.stat.size,
			ContentType: byterange.TypeByName(e.path),
			ETag:        e.etag(),
			ModTime:     e.stat.modTime,
			Registered:  e.registered && e.current(),
		})
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func (c *catalog) push(e *entry) {
	if e.idx >= 0 {
		heap.Fix(&c.queue, e.idx)
	} else {
		heap.Push(&c.queue, e)
	}
	c.updateBacklog()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *catalog) setRegistered(e *entry, v bool) {
	if e.registered == v {
		return
	}
	e.registered = v
	if v {
		c.nRegistered++
	} else {
		c.nRegistered--
	}
	c.m.FilesRegistered.Set(float64(c.nRegistered))
}

func (c *catalog) updateBacklog() {
	c.m.HashBacklog.Set(float64(len(c.queue) + c.busy))
}

// queue orders the worker's jobs: registrations of hashed files first (they
// cost one request), then hashes from the smallest file up, so that one
// large file delays no other.
type queue []*entry

func (q queue) Len() int { return len(q) }
func (q queue) Less(i, j int) bool {
	a, b := q[i], q[j]
	ha, hb := a.needsHash(), b.needsHash()
	if ha != hb {
		return !ha
	}
	if a.stat.size != b.stat.size {
		return a.stat.size < b.stat.size
	}
	return a.path < b.path
}
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].idx, q[j].idx = i, j
}
func (q *queue) Push(x any) {
	e := x.(*entry)
	e.idx = len(*q)
	*q = append(*q, e)
}
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	e.idx = -1
	return e
}
