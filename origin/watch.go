package origin

import (
	"context"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// How the origin learns of a new file at once, and never hashes one
// half-written.
//
// The scan (worker.go) finds a new file only on its next walk, and queues
// it only once it settled (two walks, 2 s by default): far too slow for a
// live stream, whose segments players ask for within a second. So the
// origin also watches the media with inotify (fsnotify) and decides per
// file when the writer is done. How encoders and packagers write:
//   - ffmpeg's hls and dash muxers with -hls_flags temp_file (and every
//     live playlist, whatever the flags) write NAME.tmp and rename it into
//     place once complete: the final name appears (IN_MOVED_TO, a Create)
//     with all its bytes. Shaka Packager and GPAC do the same; rsync and
//     many editors write a hidden .NAME.xxx first, which is never served.
//   - ffmpeg without temp_file writes a segment in place, in bursts of its
//     32 KiB I/O buffer with pauses of up to a second at low bitrates, and
//     closes it when the next segment starts. cp and curl -o write in
//     place too.
//
// inotify's IN_CLOSE_WRITE would say "the writer closed it", but fsnotify
// v1.10.1 keeps that operation unexported (xUnportableCloseWrite; its
// withOps option is unexported too), so it cannot be asked for. Waiting
// for events to stop alone is wrong for in-place writers that pause. So:
// a file is looked at once no event came for it for watchQuiet, and then
// registered only if nobody holds it open for writing, which Linux tells
// by refusing a read lease (lease_linux.go). A renamed-in file has no
// writer and passes at the first look (about 50 ms); an in-place one
// passes once its writer closed it. Where leases cannot be taken (not
// Linux, another owner without CAP_LEASE) the file is left to the scan's
// settling, which is slow but never registers a file being written.
// Names ending in an in-progress suffix (.tmp, .part, ...) are never
// registered: they are renamed away once complete.
//
// Notifications can be lost (queue overflow, a directory created and
// filled before its watch was added, file systems without inotify): the
// periodic scan stays as the safety net and finds what was missed.
const watchQuiet = 50 * time.Millisecond

// writerState is what the origin can tell of a file's writers.
type writerState int

const (
	writersUnknown writerState = iota // cannot tell: leave it to the scan
	writersOpen                       // someone still writes: look again later
	writersClosed                     // nobody writes: register it
)

// inProgressSuffixes name files still being written by their tool, which
// renames them once complete (ffmpeg's .tmp, browsers' and aria2c's
// .part/.crdownload/.aria2, curl and wget's .partial/.download).
var inProgressSuffixes = []string{".tmp", ".part", ".partial", ".crdownload", ".download", ".aria2", "~"}

// inProgress reports whether a file name is a writer's temporary one.
func inProgress(name string) bool {
	name = strings.ToLower(name)
	for _, s := range inProgressSuffixes {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// settler is the watcher's decision, kept pure: which changed files are
// due for a look, and what a look decides.
type settler struct {
	due map[string]time.Time // by path: when to look at it
}

func newSettler() *settler { return &settler{due: map[string]time.Time{}} }

// touch records an event on p at now: look at it after watchQuiet of no
// further event.
func (st *settler) touch(p string, now time.Time) { st.due[p] = now.Add(watchQuiet) }

// forget drops p: it is gone.
func (st *settler) forget(p string) { delete(st.due, p) }

// ready returns the paths due at now.
func (st *settler) ready(now time.Time) []string {
	var out []string
	for p, t := range st.due {
		if !now.Before(t) {
			out = append(out, p)
		}
	}
	return out
}

// looked records what a look at p found and reports whether p settled
// (register it now). A file still open for writing is looked at again
// after watchQuiet; one whose writers cannot be told is dropped from the
// watcher, for the scan to settle.
func (st *settler) looked(p string, w writerState, now time.Time) bool {
	if w == writersOpen {
		st.due[p] = now.Add(watchQuiet)
		return false
	}
	delete(st.due, p)
	return w == writersClosed
}

// next is when the earliest look is due; false when none is.
func (st *settler) next() (time.Time, bool) {
	var first time.Time
	for _, t := range st.due {
		if first.IsZero() || t.Before(first) {
			first = t
		}
	}
	return first, !first.IsZero()
}

// watchLoop watches the local media tree until ctx ends. Without notifications
// (no inotify, too many watches) the scan alone finds new files.
func (s *Server) watchLoop(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("no file system notifications: new files are found by the scan alone", "every", s.cfg.ScanInterval, "err", err)
		return
	}
	defer w.Close()
	st := newSettler()
	s.watchDir(w, st, ".", time.Now())
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// An overflow lost events: the next scan finds those files.
			s.log.Warn("watching the media", "err", err)
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			s.watchEvent(w, st, ev, time.Now())
		case <-timer.C:
		}
		now := time.Now()
		for _, p := range st.ready(now) {
			s.look(st, p, now)
		}
		timer.Stop()
		if t, ok := st.next(); ok {
			timer.Reset(time.Until(t))
		}
	}
}

// watchDir adds watches on dir (slash-separated, below the media) and the
// directories below it, and touches the files already there: a directory
// can fill between its creation and its watch.
func (s *Server) watchDir(w *fsnotify.Watcher, st *settler, dir string, now time.Time) {
	err := fs.WalkDir(s.local.root.FS(), dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if p != "." && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		switch {
		case d.IsDir():
			if err := w.Add(filepath.Join(s.local.dir, filepath.FromSlash(p))); err != nil {
				s.log.Warn("cannot watch a media directory: the scan covers it", "dir", p, "err", err)
			}
		case d.Type().IsRegular() && p != dir && !inProgress(d.Name()):
			// A name that cannot be served is the scan's to warn about.
			if clean, err := fileinfo.CleanPath(p); err == nil {
				st.touch(clean, now)
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("watch media directory", "dir", dir, "err", err)
	}
}

// watchEvent records one notification.
func (s *Server) watchEvent(w *fsnotify.Watcher, st *settler, ev fsnotify.Event, now time.Time) {
	rel, err := filepath.Rel(s.local.dir, ev.Name)
	if err != nil {
		return
	}
	p, err := fileinfo.CleanPath(filepath.ToSlash(rel))
	if err != nil || hidden(p) || inProgress(p) {
		return
	}
	lst, err := s.local.root.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Removed or renamed away (ffmpeg's delete_segments).
		st.forget(p)
		s.cat.drop(p)
	case err != nil:
	case lst.IsDir() && ev.Has(fsnotify.Create):
		s.watchDir(w, st, p, now)
	case lst.Mode().IsRegular():
		st.touch(p, now)
	}
}

// look opens a due file, asks whether anyone writes it and registers it
// if nobody does.
func (s *Server) look(st *settler, p string, now time.Time) {
	f, fst, err := openRegular(s.local.root, p)
	if err != nil {
		st.forget(p)
		if errors.Is(err, fs.ErrNotExist) {
			s.cat.drop(p)
		}
		return
	}
	ws := writers(f)
	f.Close()
	if st.looked(p, ws, now) {
		s.log.Debug("new or changed file settled", "path", p, "size", fst.Size())
		s.cat.record(p, versionOf(fst), true)
	} else if ws == writersUnknown {
		s.cat.observe(p, versionOf(fst), now)
	}
}
