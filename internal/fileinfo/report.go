package fileinfo

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"
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

// ReportUserHeader names the user whose token a report's "Authorization:
// Bearer" carries, when the proxy has a user: the origin counts a report
// that names no piece towards a whole-file rehash only from users.
const ReportUserHeader = "X-P2SP-User"

const (
	// MaxReportBody bounds the JSON body of one report.
	MaxReportBody = 16 << 10
	// MaxReportDetail bounds a report's Detail.
	MaxReportDetail = 1 << 10
)

// Report is a problem a proxy tells the tracker and the origin about, as
// POSTed to their /v1/reports. Remote and Time are filled in by the
// receiver, never by the proxy.
type Report struct {
	Kind string `json:"kind"`
	// Path is the file's path as in Info.Path.
	Path string `json:"path"`
	// InfoHash is the infohash the proxy was using, lower-case hex; "" if
	// it had none.
	InfoHash string `json:"infohash,omitempty"`
	// Piece is the piece that failed its check, if any: a pointer, since
	// piece 0 is a piece.
	Piece  *int      `json:"piece,omitempty"`
	Detail string    `json:"detail,omitempty"`
	Remote string    `json:"remote,omitempty"`
	Time   time.Time `json:"time,omitzero"`
}

// Validate checks a report as received: a known kind, a clean path, an
// infohash of 40 hex digits if any, a piece index in range if any, and a
// detail of at most MaxReportDetail bytes. It replaces Path by its clean
// form, so that whatever acts on the report and logs it sees one spelling.
func (r *Report) Validate() error {
	switch r.Kind {
	case ReportUnknownFile, ReportVerificationFailed, ReportHashMismatch:
	default:
		return fmt.Errorf("unknown report kind %q", r.Kind)
	}
	p, err := CleanPath(r.Path)
	if err != nil {
		return fmt.Errorf("report path: %w", err)
	}
	if r.InfoHash != "" {
		if b, err := hex.DecodeString(r.InfoHash); err != nil || len(b) != 20 {
			return errors.New("report infohash is not 40 hex digits")
		}
	}
	if r.Piece != nil && (*r.Piece < 0 || *r.Piece >= MaxPieces) {
		return fmt.Errorf("report piece %d out of range", *r.Piece)
	}
	if len(r.Detail) > MaxReportDetail {
		return fmt.Errorf("report detail longer than %d bytes", MaxReportDetail)
	}
	r.Path = p
	return nil
}
