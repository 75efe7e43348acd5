package tracker

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
)

// The kinds of problem a proxy reports.
const (
	// ReportUnknownFile: a player asked for a path the tracker does not
	// know.
	ReportUnknownFile = "unknown_file"
	// ReportVerificationFailed: a piece failed its SHA-1 check.
	ReportVerificationFailed = "verification_failed"
	// ReportHashMismatch: the whole file's SHA-256 (or the origin's ETag)
	// did not match the registered info.
	ReportHashMismatch = "hash_mismatch"
)

const (
	maxReportBody   = 16 << 10
	maxReportDetail = 1 << 10
	// keptReports is how many recent reports GET /v1/reports shows.
	keptReports = 1000
)

// Report is a problem a proxy tells the tracker about, as POSTed to
// /v1/reports. Remote and Time are filled in by the tracker.
type Report struct {
	Kind     string    `json:"kind"`
	Path     string    `json:"path"`
	InfoHash string    `json:"infohash,omitempty"`
	Piece    *int      `json:"piece,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	Remote   string    `json:"remote,omitempty"`
	Time     time.Time `json:"time,omitzero"`
}

// Validate checks a report as received: a known kind, a clean path, an
// infohash of 40 hex digits if any, a piece index in range if any, and a
// short detail.
func (r *Report) Validate() error {
	switch r.Kind {
	case ReportUnknownFile, ReportVerificationFailed, ReportHashMismatch:
	default:
		return fmt.Errorf("unknown report kind %q", r.Kind)
	}
	if _, err := fileinfo.CleanPath(r.Path); err != nil {
		return fmt.Errorf("report path: %w", err)
	}
	if r.InfoHash != "" {
		if b, err := hex.DecodeString(r.InfoHash); err != nil || len(b) != 20 {
			return errors.New("report infohash is not 40 hex digits")
		}
	}
	if r.Piece != nil && (*r.Piece < 0 || *r.Piece >= fileinfo.MaxPieces) {
		return fmt.Errorf("report piece %d out of range", *r.Piece)
	}
	if len(r.Detail) > maxReportDetail {
		return fmt.Errorf("report detail longer than %d bytes", maxReportDetail)
	}
	return nil
}

// reportLog keeps the last keptReports reports, oldest first.
type reportLog struct {
	mu   sync.Mutex
	buf  []Report
	next int // where the next report goes once buf is full
}

func (l *reportLog) add(r Report) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) < keptReports {
		l.buf = append(l.buf, r)
		return
	}
	l.buf[l.next] = r
	l.next = (l.next + 1) % keptReports
}

func (l *reportLog) list() []Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Report, 0, len(l.buf))
	out = append(out, l.buf[l.next:]...)
	return append(out, l.buf[:l.next]...)
}

// postReport accepts a proxy's report: rate-limited per address, checked,
// logged, counted and kept.
func (s *Server) postReport(c *gin.Context) error {
	now := time.Now()
	remote := remoteAddr(c.Request)
	if !s.reportLimits.allow(remote, now) {
		c.Header("Retry-After", "1")
		return httpapi.Errorf(http.StatusTooManyRequests, "too many reports from %s", remote)
	}
	var r Report
	if err := readJSON(c, maxReportBody, &r); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "%w", err)
	}
	r.Path, _ = fileinfo.CleanPath(r.Path)
	r.Remote, r.Time = remote.String(), now.UTC()
	s.reports.add(r)
	s.metrics.Reports.WithLabelValues(r.Kind).Inc()
	attrs := []any{"kind", r.Kind, "path", r.Path, "remote", r.Remote, "detail", r.Detail}
	if r.InfoHash != "" {
		attrs = append(attrs, "infohash", r.InfoHash)
	}
	if r.Piece != nil {
		attrs = append(attrs, "piece", *r.Piece)
	}
	s.log.Warn("proxy report", attrs...)
	c.JSON(http.StatusAccepted, gin.H{"status": "accepted"})
	return nil
}

// getReports lists the kept reports, oldest first.
func (s *Server) getReports(c *gin.Context) error {
	c.JSON(http.StatusOK, s.reports.list())
	return nil
}
