package fileinfo

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestReportValidate(t *testing.T) {
	hash := strings.Repeat("0a", 20)
	for _, tc := range []struct {
		name     string
		body     string
		ok       bool
		wantPath string // the path after Validate, if ok
	}{
		{"unknown file", `{"kind":"unknown_file","path":"films/x.mp4","detail":"player asked"}`, true, "films/x.mp4"},
		{"verification failed", `{"kind":"verification_failed","path":"a.mp4","infohash":"` + hash + `","piece":3,"detail":"sha1"}`, true, "a.mp4"},
		{"hash mismatch", `{"kind":"hash_mismatch","path":"a.mp4"}`, true, "a.mp4"},
		{"piece 0", `{"kind":"verification_failed","path":"a.mp4","piece":0}`, true, "a.mp4"},
		{"leading slash cleaned", `{"kind":"unknown_file","path":"/films/x.mp4"}`, true, "films/x.mp4"},
		{"longest detail", `{"kind":"unknown_file","path":"a.mp4","detail":"` + strings.Repeat("x", MaxReportDetail) + `"}`, true, "a.mp4"},

		{"unknown kind", `{"kind":"boom","path":"a.mp4"}`, false, ""},
		{"no kind", `{"path":"a.mp4"}`, false, ""},
		{"traversal", `{"kind":"unknown_file","path":"../etc/passwd"}`, false, ""},
		{"inner traversal", `{"kind":"unknown_file","path":"films/../../etc/passwd"}`, false, ""},
		{"no path", `{"kind":"unknown_file"}`, false, ""},
		{"bad infohash", `{"kind":"hash_mismatch","path":"a.mp4","infohash":"xyz"}`, false, ""},
		{"short infohash", `{"kind":"hash_mismatch","path":"a.mp4","infohash":"` + hash[:38] + `"}`, false, ""},
		{"negative piece", `{"kind":"verification_failed","path":"a.mp4","piece":-1}`, false, ""},
		{"piece past the limit", `{"kind":"verification_failed","path":"a.mp4","piece":1048576}`, false, ""},
		{"long detail", `{"kind":"unknown_file","path":"a.mp4","detail":"` + strings.Repeat("x", MaxReportDetail+1) + `"}`, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Report
			if err := json.Unmarshal([]byte(tc.body), &r); err != nil {
				t.Fatal(err)
			}
			err := r.Validate()
			if (err == nil) != tc.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tc.ok)
			}
			if tc.ok && r.Path != tc.wantPath {
				t.Fatalf("path %q after Validate, want %q", r.Path, tc.wantPath)
			}
		})
	}
}

func TestReportJSON(t *testing.T) {
	// What a proxy sends carries no remote or time: the receiver fills
	// them in.
	piece := 0
	b, err := json.Marshal(Report{Kind: ReportVerificationFailed, Path: "a.mp4", Piece: &piece})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"kind":"verification_failed","path":"a.mp4","piece":0}`; got != want {
		t.Fatalf("sent %s, want %s", got, want)
	}
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err = json.Marshal(Report{Kind: ReportHashMismatch, Path: "a.mp4", Remote: "127.0.0.1", Time: at})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"kind":"hash_mismatch","path":"a.mp4","remote":"127.0.0.1","time":"2025-01-02T03:04:05Z"}`; got != want {
		t.Fatalf("kept %s, want %s", got, want)
	}
}
