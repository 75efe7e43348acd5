package origin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// scanLoop walks the media at start and every ScanInterval until ctx ends.
func (s *Server) scanLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ScanInterval)
	defer t.Stop()
	// unservable holds the names the last scan skipped because no key can
	// name them, so that each is warned about once, not every scan.
	unservable := map[string]bool{}
	for {
		switch err := s.scan(ctx, unservable); {
		case err == nil:
			s.ready.Store(true)
		case ctx.Err() == nil:
			s.log.Error("scan media", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// scan walks the media once: every regular, non-hidden file is recorded
// (and queued if new, changed or not registered yet), every file no longer
// there is dropped. A file whose name cannot be a key (not valid UTF-8,
// longer than 1024 bytes) is skipped, with a warning the first time:
// unservable holds the names skipped so far and is left holding those of
// this scan. Registering it under an escaped name instead would give the
// file a second name that the tracker, the .torrent and every proxy URL
// would have to translate back; renaming the file is the operator's fix.
func (s *Server) scan(ctx context.Context, unservable map[string]bool) error {
	// A new scan gives a tracker that failed another chance.
	s.trackerDown.Store(false)
	seen := make(map[string]bool)
	skipped := make(map[string]bool)
	now := time.Now()
	err := s.media.list(ctx, func(p string, v version) {
		if hidden(p) || inProgress(path.Base(p)) {
			return
		}
		clean, err := fileinfo.CleanPath(p)
		if err == nil && clean != p {
			// An object key such as "a//b" or "/a": no request path names it.
			err = errors.New("not a clean path")
		}
		if err != nil {
			if !unservable[p] {
				s.log.Warn("scan: skipping a file whose name cannot be served; rename it to serve it (warned once)",
					"path", strconv.Quote(p), "err", err)
			}
			skipped[p] = true
			return
		}
		seen[clean] = true
		s.cat.observe(clean, v, now)
	})
	if err != nil {
		return err
	}
	s.cat.retain(seen)
	// A name renamed away and back is warned about again.
	clear(unservable)
	maps.Copy(unservable, skipped)
	return nil
}

// rescan looks at one path now, as a proxy's report asks. It reports
// whether the path is a media file.
func (s *Server) rescan(ctx context.Context, p string) bool {
	if hidden(p) || inProgress(p) {
		return false
	}
	v, err := s.media.stat(ctx, p)
	if err != nil {
		s.cat.drop(p)
		return false
	}
	s.cat.observe(p, v, time.Now())
	return true
}

// hashLoop is the one hashing worker: it takes jobs from the catalog's
// queue, smallest file first, until ctx ends.
func (s *Server) hashLoop(ctx context.Context) {
	for {
		j, ok := s.cat.next(ctx.Done())
		if !ok {
			return
		}
		s.process(ctx, j)
		s.cat.finish(j)
	}
}

// process hashes the job's file if needed and registers it.
func (s *Server) process(ctx context.Context, j job) {
	info := j.info
	if info == nil {
		var err error
		var v version
		info, v, err = s.hash(ctx, j.path)
		var ch *changedError
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return
		case errors.As(err, &ch):
			s.log.Info("file changed while hashing, will hash it again once it settles", "path", j.path)
			s.cat.changed(j.path, ch.now)
			return
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, errNotRegular):
			s.cat.drop(j.path)
			return
		default:
			s.log.Error("hashing failed, retrying on the next scan", "path", j.path, "err", err)
			return
		}
		if !s.cat.setInfo(info, v) {
			return
		}
	}
	s.register(ctx, info)
}

// hash computes the file info of p, with this origin and its mirrors as
// its origins, and the version it describes.
func (s *Server) hash(ctx context.Context, p string) (*fileinfo.Info, version, error) {
	start := time.Now()
	s.log.Info("hashing", "path", p)
	info, v, err := hashFile(ctx, s.media, p, s.m.HashedBytes)
	if err != nil {
		return nil, version{}, err
	}
	info.Origins = append([]string{s.publicURL}, s.cfg.Mirrors...)
	info.Sign(s.key)
	d := time.Since(start)
	s.log.Info("hashed", "path", p, "size", info.Size, "infohash", info.InfoHash,
		"duration", d.Round(time.Millisecond), "mb_per_s", fmt.Sprintf("%.1f", float64(info.Size)/1e6/max(d.Seconds(), 1e-6)))
	return info, v, nil
}

// changedError says the file changed while it was being hashed; now is
// its new version.
type changedError struct{ now version }

func (e *changedError) Error() string { return "file changed while being hashed" }

// hashFile hashes the regular file p of the media, counting the bytes read
// in hashed, and fills in the ETag (from the content) and ModTime of the
// version it read, which it returns too. It returns a *changedError if the
// file changed meanwhile: the hashes would describe no version of it.
func hashFile(ctx context.Context, m media, p string, hashed prometheus.Counter) (*fileinfo.Info, version, error) {
	f, v, err := m.open(ctx, p)
	if err != nil {
		return nil, version{}, err
	}
	defer f.Close()
	info, herr := fileinfo.Compute(ctx, p, &countingReader{r: f, n: hashed}, v.size)
	if cerr := ctx.Err(); cerr != nil {
		return nil, version{}, fmt.Errorf("hash %s: %w", p, cerr)
	}
	// Checked even when Compute failed: a file that shrank while being
	// read makes it fail with an unexpected EOF, an object replaced
	// meanwhile with a failed If-Match.
	now, err := m.stat(ctx, p)
	if err != nil {
		return nil, version{}, fmt.Errorf("stat %s after hashing: %w", p, err)
	}
	if !now.equal(v) {
		return nil, version{}, &changedError{now: now}
	}
	if herr != nil {
		return nil, version{}, herr
	}
	info.ETag = contentETag(info.SHA256)
	info.ModTime = v.modTime
	return info, v, nil
}

// countingReader counts the bytes read through it as they are read, so
// that the hashing rate shows while a large file is in progress.
type countingReader struct {
	r io.Reader
	n prometheus.Counter
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(float64(n))
	return n, err
}

// register sends info to the tracker. A tracker that cannot be reached (or
// answers 5xx) suspends registrations until the next scan, which queues
// every unregistered file again; a tracker that rejects one file leaves
// that file for the next scan and goes on with the others.
func (s *Server) register(ctx context.Context, info *fileinfo.Info) {
	if s.cfg.TrackerURL == "" || s.trackerDown.Load() {
		return
	}
	err := s.postInfo(ctx, info)
	var te *trackerError
	switch {
	case err == nil:
		s.cat.markRegistered(info)
		s.log.Info("registered", "path", info.Path, "infohash", info.InfoHash, "tracker", s.cfg.TrackerURL)
	case ctx.Err() != nil:
	case errors.As(err, &te) && te.status >= 400 && te.status < 500 && te.status != http.StatusTooManyRequests:
		s.log.Error("tracker rejected registration", "path", info.Path, "status", te.status, "err", err)
	default:
		s.trackerDown.Store(true)
		s.log.Warn("registration failed, retrying on the next scan", "path", info.Path, "err", err)
	}
}

// trackerError is a tracker's non-2xx answer.
type trackerError struct {
	status int
	msg    string
}

func (e *trackerError) Error() string {
	return fmt.Sprintf("tracker answered %d: %s", e.status, e.msg)
}

// postInfo is POST {TrackerURL}/v1/files.
func (s *Server) postInfo(ctx context.Context, info *fileinfo.Info) error {
	body, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("encode info of %s: %w", info.Path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.TrackerURL+"/v1/files", bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("register %s: %w", info.Path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.cfg.Token)
	resp, err := s.cfg.HTTPClient.Do(req)
	if err != nil {
		return fmt.Errorf("register %s: %w", info.Path, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	// Drain a little more so the connection can be reused.
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("register %s: %w", info.Path, &trackerError{status: resp.StatusCode, msg: strings.TrimSpace(string(msg))})
	}
	return nil
}
