package tracker

import (
	"net/http"
	"path"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
)

// A live stream is a directory the encoder writes new segments into, a
// few a minute to one a second. Proxies watching it long-poll
// GET /v1/streams/{dir}?after=N and hear of a new segment's registration
// the moment it happens, so that all of them join its swarm together
// instead of each on its own playlist poll.
const (
	// streamWait bounds a long poll: well inside the proxies' and any
	// relay's idle timeouts.
	streamWait = 25 * time.Second
	// streamEvents is how many registrations a directory keeps for
	// watchers that come back late: a window of live segments.
	streamEvents = 32
	// maxStreams bounds the directories kept; the least recently changed
	// goes first.
	maxStreams = 4096
)

// StreamEvents is the answer of a stream poll: the paths registered
// (new or with new bytes) in the directory after the poll's cursor, oldest
// first, and the cursor to poll with next.
type StreamEvents struct {
	Next  uint64   `json:"next"`
	Paths []string `json:"paths"`
}

// streams keeps each directory's latest registrations and wakes its
// watchers. It lives in one tracker's memory: with replicas, a watcher
// hears the registrations made through the replica it polls (the proxies'
// playlist-driven prefetch covers the rest).
type streams struct {
	mu    sync.Mutex
	seq   uint64
	byDir map[string]*streamLog
}

type streamLog struct {
	events  []streamEvent // the last streamEvents, oldest first
	changed chan struct{} // closed and replaced at each event
	last    time.Time
}

type streamEvent struct {
	seq  uint64
	path string
}

func newStreams() *streams { return &streams{byDir: map[string]*streamLog{}} }

// logLocked returns dir's log, creating it (and evicting the stalest when
// there are too many).
func (ss *streams) logLocked(dir string) *streamLog {
	l := ss.byDir[dir]
	if l != nil {
		return l
	}
	if len(ss.byDir) >= maxStreams {
		var oldest string
		for d, o := range ss.byDir {
			if oldest == "" || o.last.Before(ss.byDir[oldest].last) {
				oldest = d
			}
		}
		close(ss.byDir[oldest].changed)
		delete(ss.byDir, oldest)
	}
	l = &streamLog{changed: make(chan struct{}), last: time.Now()}
	ss.byDir[dir] = l
	return l
}

// publish records that p was registered and wakes its directory's
// watchers.
func (ss *streams) publish(p string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	ss.seq++
	l := ss.logLocked(path.Dir(p))
	l.events = append(l.events, streamEvent{seq: ss.seq, path: p})
	if len(l.events) > streamEvents {
		l.events = l.events[len(l.events)-streamEvents:]
	}
	l.last = time.Now()
	close(l.changed)
	l.changed = make(chan struct{})
}

// since returns dir's events after cursor and the channel closed at its
// next one. An unknown directory gets a log, so that a watcher that comes
// first hears the first segment.
func (ss *streams) since(dir string, after uint64) (StreamEvents, <-chan struct{}) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if after > ss.seq {
		after = 0 // a cursor of this tracker's previous run
	}
	l := ss.logLocked(dir)
	ev := StreamEvents{Next: ss.seq, Paths: []string{}}
	for _, e := range l.events {
		if e.seq > after {
			ev.Paths = append(ev.Paths, e.path)
		}
	}
	return ev, l.changed
}

// getStream answers a stream poll. Without after it answers at once with
// the directory's recent registrations and the cursor; with it, it waits
// (at most streamWait, or the wait parameter in seconds) for one after the
// cursor.
func (s *Server) getStream(c *gin.Context) error {
	if !s.limits.Allow(httpapi.RemoteAddr(c.Request)) {
		return httpapi.Errorf(http.StatusTooManyRequests, "too many requests")
	}
	dir, err := fileinfo.CleanPath(c.Param("dir"))
	if err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "%w", err)
	}
	q := c.Query("after")
	if q == "" {
		ev, _ := s.streams.since(dir, 0)
		c.JSON(http.StatusOK, ev)
		return nil
	}
	after, err := strconv.ParseUint(q, 10, 64)
	if err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "after: %w", err)
	}
	wait := streamWait
	if w := c.Query("wait"); w != "" {
		sec, err := strconv.ParseFloat(w, 64)
		if err != nil || sec < 0 {
			return httpapi.Errorf(http.StatusBadRequest, "wait: not a number of seconds: %q", w)
		}
		wait = min(wait, time.Duration(sec*float64(time.Second)))
	}
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		ev, changed := s.streams.since(dir, after)
		if len(ev.Paths) > 0 {
			c.JSON(http.StatusOK, ev)
			return nil
		}
		select {
		case <-changed:
		case <-timer.C:
			c.JSON(http.StatusOK, ev)
			return nil
		case <-c.Request.Context().Done():
			return nil
		}
	}
}
