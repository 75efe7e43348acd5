package proxy

import (
	"context"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/swarm"
)

// The proxy announces its torrents itself: at the interval the tracker asks
// for, and announceRetry after a failure, so that a tracker that restarts
// hears from every proxy within seconds.
const (
	announceTick    = 500 * time.Millisecond
	announceRetry   = 2 * time.Second
	announceTimeout = 5 * time.Second
	// announceParallel bounds the announces under way at once: a tracker
	// that does not answer costs a round announceTimeout, not
	// announceTimeout per file.
	announceParallel = 16
	// stoppedTimeout bounds the stopped announces of a proxy shutting down.
	stoppedTimeout = time.Second
)

// announceState is a file's standing with the tracker.
type announceState struct {
	next time.Time
	// told: an announce was sent, so the tracker may list this proxy
	// (even if its answer never came).
	told      bool
	started   bool
	completed bool
}

// announced is the outcome of one announce.
type announced struct {
	f        *file
	tracker  int // the index of the tracker it went to
	event    swarm.Event
	interval time.Duration
	err      error
}

// announceLoop announces every open file to every tracker when it is due
// there, until the server closes; then it tells the trackers the proxy has
// stopped, so that other proxies are not sent to it. A newly opened file
// is due at once (activate wakes the loop), so the next proxy's lookup
// already names this one as a peer. Each tracker has its own schedule: one
// that is gone is asked again every announceRetry, and holds up none of
// the others. Announces run concurrently, announceParallel at most: a
// tracker that hangs holds up each file for announceTimeout, not the files
// behind it. The loop alone reads and writes the files' announce states.
func (s *Server) announceLoop() {
	tick := time.NewTicker(announceTick)
	defer tick.Stop()
	urls := make([]string, len(s.cfg.Trackers))
	for i, base := range s.cfg.Trackers {
		urls[i] = fileinfo.AnnounceURL(base, s.cfg.Passkey)
	}
	sem := make(chan struct{}, announceParallel)
	results := make(chan announced)
	type key struct {
		f       *file
		tracker int
	}
	inflight := map[key]bool{}
	for {
		select {
		case <-s.ctx.Done():
			// The files' contexts are done: what is under way ends now.
			for len(inflight) > 0 {
				r := <-results
				delete(inflight, key{r.f, r.tracker})
				r.f.announce[r.tracker].record(r)
			}
			s.announceStopped(urls, sem)
			return
		case r := <-results:
			delete(inflight, key{r.f, r.tracker})
			r.f.announce[r.tracker].record(r)
			continue
		case <-tick.C:
		case <-s.announceNow:
		}
		now := time.Now()
		for _, f := range s.openFiles() {
			if f.ctx.Err() != nil {
				continue
			}
			if f.announce == nil {
				f.announce = make([]announceState, len(urls))
			}
			for i, url := range urls {
				a := &f.announce[i]
				if inflight[key{f, i}] || now.Before(a.next) {
					continue
				}
				event := swarm.EventNone
				switch {
				case !a.started:
					event = swarm.EventStarted
				case !a.completed && f.entry.Complete():
					event = swarm.EventCompleted
				}
				inflight[key{f, i}] = true
				a.told = true
				go func() { // the loop waits for its result before it returns
					ctx, cancel := context.WithTimeout(f.ctx, announceTimeout)
					defer cancel()
					interval, err := s.announce(ctx, sem, f, url, event)
					results <- announced{f: f, tracker: i, event: event, interval: interval, err: err}
				}()
			}
		}
	}
}

// record takes in the outcome of an announce.
func (a *announceState) record(r announced) {
	if r.err != nil {
		a.next = time.Now().Add(announceRetry)
		return
	}
	a.started = true
	a.completed = a.completed || r.event == swarm.EventCompleted
	a.next = time.Now().Add(max(r.interval, announceRetry))
}

// announce sends one announce once one of sem's slots is free.
func (s *Server) announce(ctx context.Context, sem chan struct{}, f *file, url string, event swarm.Event) (time.Duration, error) {
	select {
	case sem <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-sem }()
	interval, err := s.swarm.Announce(ctx, f.torrent, url, event)
	if err != nil {
		s.log.Debug("announce failed", "path", f.info.Path, "event", event, "err", err)
	}
	return interval, err
}

// announceStopped sends the stopped event for every file to every tracker
// that may list this proxy for it, within stoppedTimeout in all: a
// shutdown does not wait on a tracker that does not answer.
func (s *Server) announceStopped(urls []string, sem chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), stoppedTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range s.openFiles() {
		for i, a := range f.announce {
			if a.told {
				wg.Go(func() { s.announce(ctx, sem, f, urls[i], swarm.EventStopped) })
			}
		}
	}
	wg.Wait()
}

func (s *Server) openFiles() []*file {
	s.mu.Lock()
	defer s.mu.Unlock()
	files := make([]*file, 0, len(s.files))
	for _, f := range s.files {
		files = append(files, f)
	}
	return files
}
