package origin

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
)

const (
	// forcedRehashCooldown is the least time between two forced rehashes
	// of one file: within it, a report only re-registers the file.
	forcedRehashCooldown = 30 * time.Second

	// Reports per remote address (per /64 for IPv6): they come only when
	// something is wrong, and each may cost a rescan. maxReportAddrs
	// bounds the limiter's memory.
	reportRate     = rate.Limit(1)
	reportBurst    = 10
	maxReportAddrs = 4096

	// reportWindow and wholeFileVoters: see reportBook.
	reportWindow    = time.Minute
	wholeFileVoters = 3
)

// postReport answers POST /v1/reports: the file is looked at again now
// (its stat) and registered again. A report on the current version may
// buy some hashing, as reportBook decides: the piece it names, or the
// whole file once several users reported it. A report on another version
// only refreshes the registration.
func (s *Server) postReport(c *gin.Context) error {
	remote := httpapi.RemoteAddr(c.Request)
	if !s.reportLimit.Allow(remote) {
		return httpapi.Errorf(http.StatusTooManyRequests, "too many reports")
	}
	var rep fileinfo.Report
	b, err := httpapi.ReadBody(c, fileinfo.MaxReportBody)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "decode report: %w", err)
	}
	if err := rep.Validate(); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "invalid report: %w", err)
	}
	s.m.Reports.WithLabelValues(rep.Kind).Inc()
	user := s.reportUser(c)
	attrs := []any{"kind", rep.Kind, "path", rep.Path, "infohash", rep.InfoHash, "detail", rep.Detail, "from", remote, "user", user}
	if rep.Piece != nil {
		attrs = append(attrs, "piece", *rep.Piece)
	}
	s.log.Info("report", attrs...)
	if !s.rescan(c.Request.Context(), rep.Path) {
		s.reportBook.forget(rep.Path)
		return httpapi.Errorf(http.StatusNotFound, "no media file %q", rep.Path)
	}
	rehash, cooldown := false, forcedRehashCooldown
	cur := s.cat.info(rep.Path)
	if rep.Kind != fileinfo.ReportUnknownFile && cur != nil && (rep.InfoHash == "" || cur.InfoHash == rep.InfoHash) {
		switch s.reportBook.decide(rep.Path, cur.InfoHash, rep.Piece, remote.String(), user, time.Now()) {
		case actionCheckPiece:
			ok, err := s.checkPiece(c.Request.Context(), cur, *rep.Piece)
			if err != nil {
				s.log.Warn("piece check failed", "path", rep.Path, "piece", *rep.Piece, "err", err)
			}
			if !ok && err == nil {
				// The origin's own evidence, which no report can fake:
				// rehash now, whatever the cooldown.
				s.log.Warn("a reported piece no longer matches its hash: rehashing the file", "path", rep.Path, "piece", *rep.Piece)
				rehash, cooldown = true, 0
			}
		case actionRehash:
			rehash = true
		}
	}
	s.cat.reregister(rep.Path, rehash, time.Now(), cooldown)
	c.JSON(http.StatusAccepted, gin.H{"status": "accepted"})
	return nil
}

// reportUser is the user whose credential came with the report, or "".
// It names the user (fileinfo.ReportUserHeader), so that checking a credential costs
// one small read, never a search of every user.
func (s *Server) reportUser(c *gin.Context) string {
	name := c.GetHeader(fileinfo.ReportUserHeader)
	token, ok := strings.CutPrefix(c.GetHeader("Authorization"), "Bearer ")
	if s.users == nil || !ok || !ValidUserName(name) {
		return ""
	}
	if is, err := s.users.is(name, token); err != nil || !is {
		return ""
	}
	return name
}

// checkPiece rehashes piece i of the file info describes and reports
// whether it still matches. A file whose stat changed is not checked: the
// rescan has queued it already.
func (s *Server) checkPiece(ctx context.Context, info *fileinfo.Info, i int) (bool, error) {
	if i >= info.NumPieces() {
		return true, fmt.Errorf("piece %d of %d", i, info.NumPieces())
	}
	f, v, err := s.media.open(ctx, info.Path)
	if err != nil {
		return true, err
	}
	defer f.Close()
	if v.size != info.Size || !v.modTime.Equal(info.ModTime) {
		return true, nil
	}
	off, n := info.PieceBounds(i)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return true, fmt.Errorf("read piece %d of %s: %w", i, info.Path, err)
	}
	if l, ok := f.(readLimiter); ok {
		l.limitReads(off + n)
	}
	h := sha1.New()
	if _, err := io.CopyN(h, &countingReader{r: f, n: s.m.HashedBytes}, n); err != nil {
		return true, fmt.Errorf("read piece %d of %s: %w", i, info.Path, err)
	}
	want := info.PieceHash(i)
	return bytes.Equal(h.Sum(nil), want[:]), ctx.Err()
}
