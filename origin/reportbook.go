package origin

import (
	"sync"
	"time"
)

// reportAction is what a report about a file's current version may cost.
type reportAction int

const (
	// actionRegister: look at the file's stat and register it again;
	// no hashing.
	actionRegister reportAction = iota
	// actionCheckPiece: rehash the one piece the report names.
	actionCheckPiece
	// actionRehash: rehash the whole file.
	actionRehash
)

// reportBook decides what reports may cost, so that strangers cannot buy
// hashing with cheap requests. A report naming a piece gets that piece
// rehashed (its cost bounded by the piece length), at most once per piece
// and once per source address and file within the window: 100 reports from
// 20 addresses cost at most 20 pieces. A report that names no piece gets
// the whole file rehashed only once wholeFileVoters distinct users (by
// credential) reported it within the window; without a credential it only
// gets the file registered again. What a piece check finds wrong is the
// origin's own evidence, and rehashes the file at once.
type reportBook struct {
	window  time.Duration
	voters  int
	maxAddr int

	mu    sync.Mutex
	paths map[string]*pathReports
}

// pathReports are the recent reports of one file version.
type pathReports struct {
	infohash string
	pieces   map[int]time.Time    // piece → when it was checked
	remotes  map[string]time.Time // source address → its last piece check
	voters   map[string]time.Time // user → their last whole-file report
}

func newReportBook(window time.Duration, voters, maxAddr int) *reportBook {
	return &reportBook{window: window, voters: voters, maxAddr: maxAddr, paths: map[string]*pathReports{}}
}

// decide records a report on path's version infohash, naming piece (or
// none), from address remote by user (or "" without a credential).
func (b *reportBook) decide(path, infohash string, piece *int, remote, user string, now time.Time) reportAction {
	b.mu.Lock()
	defer b.mu.Unlock()
	pr := b.paths[path]
	if pr == nil || pr.infohash != infohash {
		pr = &pathReports{infohash: infohash, pieces: map[int]time.Time{}, remotes: map[string]time.Time{}, voters: map[string]time.Time{}}
		b.paths[path] = pr
	}
	for _, m := range []map[string]time.Time{pr.remotes, pr.voters} {
		for k, t := range m {
			if now.Sub(t) >= b.window {
				delete(m, k)
			}
		}
	}
	for k, t := range pr.pieces {
		if now.Sub(t) >= b.window {
			delete(pr.pieces, k)
		}
	}
	if piece != nil {
		_, checked := pr.pieces[*piece]
		_, spent := pr.remotes[remote]
		if checked || spent || len(pr.remotes) >= b.maxAddr {
			return actionRegister
		}
		pr.pieces[*piece], pr.remotes[remote] = now, now
		return actionCheckPiece
	}
	if user == "" {
		return actionRegister
	}
	pr.voters[user] = now
	if len(pr.voters) < b.voters {
		return actionRegister
	}
	clear(pr.voters)
	return actionRehash
}

// forget drops what is known of path (the file is gone).
func (b *reportBook) forget(path string) {
	b.mu.Lock()
	delete(b.paths, path)
	b.mu.Unlock()
}
