package origin

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpapi"
)

// Report kinds, as proxies send them (the tracker accepts the same JSON).
const (
	ReportUnknownFile        = "unknown_file"
	ReportVerificationFailed = "verification_failed"
	ReportHashMismatch       = "hash_mismatch"
)

// Report is a proxy's report of a problem with a file, POSTed to
// /v1/reports.
type Report struct {
	Kind string `json:"kind"`
	Path string `json:"path"`
	// InfoHash is the infohash the proxy was using, lower-case hex; "" if
	// it had none.
	InfoHash string `json:"infohash,omitempty"`
	// Piece is the piece that failed, if any.
	Piece  int    `json:"piece,omitempty"`
	Detail string `json:"detail,omitempty"`
}

const (
	maxReportBytes  = 16 << 10
	maxReportDetail = 4 << 10
	// forcedRehashCooldown is the least time between two forced rehashes
	// of one file: within it, a report only re-registers the file.
	forcedRehashCooldown = 30 * time.Second
)

// validate checks a report before anything acts on it.
func (r *Report) validate() error {
	switch r.Kind {
	case ReportUnknownFile, ReportVerificationFailed, ReportHashMismatch:
	default:
		return fmt.Errorf("unknown report kind %q", r.Kind)
	}
	p, err := fileinfo.CleanPath(r.Path)
	if err != nil {
		return err
	}
	r.Path = p
	if r.InfoHash != "" {
		if b, err := hex.DecodeString(r.InfoHash); err != nil || len(b) != 20 {
			return fmt.Errorf("infohash %q is not 40 hex digits", r.InfoHash)
		}
	}
	if r.Piece < -1 || r.Piece >= fileinfo.MaxPieces {
		return fmt.Errorf("piece %d out of range", r.Piece)
	}
	if len(r.Detail) > maxReportDetail {
		return errors.New("detail longer than 4 KiB")
	}
	return nil
}

// postReport answers POST /v1/reports: the file is looked at again now and
// registered again; on a failed verification it is rehashed even if its
// size and modification time look unchanged (a rewrite within the clock's
// resolution, a disk error), unless the proxy was using an infohash other
// than the current one, which only needs the registration refreshed.
func (s *Server) postReport(c *gin.Context) error {
	if !s.reportLimit.allow(remoteIP(c.Request)) {
		return httpapi.Errorf(http.StatusTooManyRequests, "too many reports")
	}
	var rep Report
	dec := json.NewDecoder(http.MaxBytesReader(c.Writer, c.Request.Body, maxReportBytes))
	if err := dec.Decode(&rep); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "decode report: %w", err)
	}
	if err := rep.validate(); err != nil {
		return httpapi.Errorf(http.StatusBadRequest, "invalid report: %w", err)
	}
	s.m.Reports.WithLabelValues(rep.Kind).Inc()
	s.log.Info("report", "kind", rep.Kind, "path", rep.Path, "infohash", rep.InfoHash,
		"piece", rep.Piece, "detail", rep.Detail, "from", remoteIP(c.Request))
	if !s.rescan(rep.Path) {
		return httpapi.Errorf(http.StatusNotFound, "no media file %q", rep.Path)
	}
	rehash := false
	if rep.Kind != ReportUnknownFile {
		cur := s.cat.info(rep.Path)
		rehash = cur == nil || rep.InfoHash == "" || cur.InfoHash == rep.InfoHash
	}
	s.cat.reregister(rep.Path, rehash, time.Now(), forcedRehashCooldown)
	c.JSON(http.StatusAccepted, gin.H{"status": "accepted"})
	return nil
}

// remoteIP is the request's peer address: X-Forwarded-For is not
// trusted, or anyone could spread reports over made-up addresses.
func remoteIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ipLimiter is one token bucket per remote address.
type ipLimiter struct {
	every rate.Limit
	burst int

	mu  sync.Mutex
	ips map[string]*rate.Limiter
}

// maxTrackedIPs bounds ipLimiter's memory; when full it starts afresh,
// which at worst lets a burst through again.
const maxTrackedIPs = 4096

func newIPLimiter(every rate.Limit, burst int) *ipLimiter {
	return &ipLimiter{every: every, burst: burst, ips: make(map[string]*rate.Limiter)}
}

func (l *ipLimiter) allow(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim := l.ips[ip]
	if lim == nil {
		if len(l.ips) >= maxTrackedIPs {
			clear(l.ips)
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.ips[ip] = lim
	}
	return lim.Allow()
}
