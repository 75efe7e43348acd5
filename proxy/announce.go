package proxy

import (
	"context"
	"time"

	"github.com/p2sp/p2sp/internal/swarm"
)

// The proxy announces its torrents itself: at the interval the tracker asks
// for, and announceRetry after a failure, so that a tracker that restarts
// hears from every proxy within seconds.
const (
	announceTick    = 500 * time.Millisecond
	announceRetry   = 2 * time.Second
	announceTimeout = 5 * time.Second
)

// announceState is a file's standing with the tracker.
type announceState struct {
	next      time.Time
	started   bool
	completed bool
}

// announceLoop announces every open file when it is due, until the server
// closes. A newly opened file is due at once (activate wakes the loop), so
// the next proxy's lookup already names this one as a peer.
func (s *Server) announceLoop() {
	tick := time.NewTicker(announceTick)
	defer tick.Stop()
	url := s.cfg.TrackerURL + "/announce"
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		case <-s.announceNow:
		}
		s.mu.Lock()
		files := make([]*file, 0, len(s.files))
		for _, f := range s.files {
			files = append(files, f)
		}
		s.mu.Unlock()
		now := time.Now()
		for _, f := range files {
			if now.Before(f.announce.next) || f.ctx.Err() != nil {
				continue
			}
			event := swarm.EventNone
			switch {
			case !f.announce.started:
				event = swarm.EventStarted
			case !f.announce.completed && f.entry.Complete():
				event = swarm.EventCompleted
			}
			ctx, cancel := context.WithTimeout(f.ctx, announceTimeout)
			interval, err := s.swarm.Announce(ctx, f.torrent, url, event)
			cancel()
			if err != nil {
				s.log.Debug("announce failed", "path", f.info.Path, "err", err)
				f.announce.next = time.Now().Add(announceRetry)
				continue
			}
			f.announce.started = true
			f.announce.completed = f.announce.completed || event == swarm.EventCompleted
			f.announce.next = time.Now().Add(max(interval, announceRetry))
		}
	}
}
