package tracker

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/metrics"
)

func TestReports(t *testing.T) {
	tr := startTracker(t, Config{})

	// Every series exists from the start, at zero.
	for _, k := range metrics.ReportKinds {
		waitMetric(t, tr, `p2sp_tracker_reports_total{kind="`+k+`"} 0`, time.Second)
	}
	waitMetric(t, tr, `p2sp_tracker_torrents 0`, time.Second)

	for _, tc := range []struct {
		name   string
		body   string
		status int
	}{
		{"unknown file", `{"kind":"unknown_file","path":"films/x.mp4","detail":"player asked"}`, http.StatusAccepted},
		{"verification failed", `{"kind":"verification_failed","path":"a.mp4","infohash":"` + strings.Repeat("0a", 20) + `","piece":3,"detail":"sha1"}`, http.StatusAccepted},
		{"hash mismatch", `{"kind":"hash_mismatch","path":"a.mp4"}`, http.StatusAccepted},
		// What Validate refuses is 400; its rules are tested in fileinfo.
		{"traversal", `{"kind":"unknown_file","path":"../etc/passwd"}`, http.StatusBadRequest},
		{"not json", `{"kind":`, http.StatusBadRequest},
		{"too large", `{"kind":"unknown_file","path":"a.mp4","detail":"` + strings.Repeat("x", 17<<10) + `"}`, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if st, b := do(t, "POST", tr.URL+"/v1/reports", "", tc.body); st != tc.status {
				t.Fatalf("status %d, want %d: %s", st, tc.status, b)
			}
		})
	}

	// A flood is cut off with 429.
	limited := false
	for i := 0; i < 1000 && !limited; i++ {
		st, _ := do(t, "POST", tr.URL+"/v1/reports", "", `{"kind":"nope"}`)
		limited = st == http.StatusTooManyRequests
	}
	if !limited {
		t.Fatal("1000 reports in a row were never rate-limited")
	}

	for _, k := range metrics.ReportKinds {
		waitMetric(t, tr, `p2sp_tracker_reports_total{kind="`+k+`"} 1`, time.Second)
	}

	if st, _ := do(t, "GET", tr.URL+"/v1/reports", "", nil); st != http.StatusUnauthorized {
		t.Fatalf("listing reports without the token: %d", st)
	}
	st, b := do(t, "GET", tr.URL+"/v1/reports", testToken, nil)
	var got []fileinfo.Report
	if err := json.Unmarshal(b, &got); st != http.StatusOK || err != nil {
		t.Fatalf("list: %d %v %s", st, err, b)
	}
	if len(got) != 3 || got[0].Kind != fileinfo.ReportUnknownFile || got[2].Kind != fileinfo.ReportHashMismatch ||
		got[1].Piece == nil || *got[1].Piece != 3 || got[0].Remote != "127.0.0.1" || got[0].Time.IsZero() {
		t.Fatalf("reports %+v", got)
	}
}

func TestReportLogKeepsTheLast(t *testing.T) {
	var l reportLog
	for i := range keptReports + 5 {
		l.add(fileinfo.Report{Detail: string(rune('a' + i%26)), Piece: &i})
	}
	got := l.list()
	if len(got) != keptReports || *got[0].Piece != 5 || *got[len(got)-1].Piece != keptReports+4 {
		t.Fatalf("kept %d, first %d, last %d", len(got), *got[0].Piece, *got[len(got)-1].Piece)
	}
}
