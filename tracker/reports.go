package tracker

import (
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
)

// keptReports is how many recent reports GET /v1/reports shows.
const keptReports = 1000

// reportLog keeps the last keptReports reports, oldest first.
type reportLog struct {
	mu   sync.Mutex
	buf  []fileinfo.Report
	next int // where the next report goes once buf is full
}

func (l *reportLog) add(r fileinfo.Report) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) < keptReports {
		l.buf = append(l.buf, r)
		return
	}
	l.buf[l.next] = r
	l.next = (l.next + 1) % keptReports
}

func (l *reportLog) list() []fileinfo.Report {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]fileinfo.Report, 0, len(l.buf))
	out = append(out, l.buf[l.next:]...)
	return append(out, l.buf[:l.next]...)
}

// postReport accepts a proxy's report: rate-limited per address, checked,
// logged, counted and kept.
func (s *Server) postReport(c *gin.Context) error {
	remote := httpapi.RemoteAddr(c.Request)
	if !s.reportLimits.Allow(remote) {
		c.Header("Retry-After", "1")
		return httpapi.Errorf(http.StatusTooManyRequests, "too many reports from %s", remote)
	}
	var r fileinfo.Report
	if err := readJSON(c, fileinfo.MaxReportBody, &r); err != nil {
		return err
	}
	if err := r.Validate(); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "%w", err)
	}
	r.Remote, r.Time = remote.String(), time.Now().UTC()
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
