package origin

import (
	"encoding/json"
	"net/http"
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
)

// postReport answers POST /v1/reports: the file is looked at again now and
// registered again; on a failed verification it is rehashed even if its
// size and modification time look unchanged (a rewrite within the clock's
// resolution, a disk error), unless the proxy was using an infohash other
// than the current one, which only needs the registration refreshed.
func (s *Server) postReport(c *gin.Context) error {
	remote := httpapi.RemoteAddr(c.Request)
	if !s.reportLimit.Allow(remote) {
		return httpapi.Errorf(http.StatusTooManyRequests, "too many reports")
	}
	var rep fileinfo.Report
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, fileinfo.MaxReportBody))
	if err := dec.Decode(&rep); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "decode report: %w", err)
	}
	if err := rep.Validate(); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "invalid report: %w", err)
	}
	s.m.Reports.WithLabelValues(rep.Kind).Inc()
	attrs := []any{"kind", rep.Kind, "path", rep.Path, "infohash", rep.InfoHash, "detail", rep.Detail, "from", remote}
	if rep.Piece != nil {
		attrs = append(attrs, "piece", *rep.Piece)
	}
	s.log.Info("report", attrs...)
	if !s.rescan(rep.Path) {
		return httpapi.Errorf(http.StatusNotFound, "no media file %q", rep.Path)
	}
	rehash := false
	if rep.Kind != fileinfo.ReportUnknownFile {
		cur := s.cat.info(rep.Path)
		rehash = cur == nil || rep.InfoHash == "" || cur.InfoHash == rep.InfoHash
	}
	s.cat.reregister(rep.Path, rehash, time.Now(), forcedRehashCooldown)
	c.JSON(http.StatusAccepted, gin.H{"status": "accepted"})
	return nil
}
