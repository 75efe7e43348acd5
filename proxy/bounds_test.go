package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// TestStatsBounded: the per-path counters stay under maxStatPaths however
// many paths are played; an open file's counters and the latest path's
// stay.
func TestStatsBounded(t *testing.T) {
	s := &Server{stats: map[string]*fileStats{}, files: map[string]*file{}}
	open := s.statsFor("open.bin") // the oldest of all
	s.files["ih"] = &file{info: &fileinfo.Info{Path: "open.bin"}}
	for i := range 3 * maxStatPaths {
		s.statsFor(fmt.Sprintf("p%d.bin", i))
		if len(s.stats) > maxStatPaths {
			t.Fatalf("%d paths' counters kept after %d paths, want at most %d", len(s.stats), i+1, maxStatPaths)
		}
	}
	if s.stats["open.bin"] != open {
		t.Error("the open file's counters were forgotten")
	}
	if _, ok := s.stats[fmt.Sprintf("p%d.bin", 3*maxStatPaths-1)]; !ok {
		t.Error("the latest path's counters were forgotten")
	}
}

// TestReporterBounded: reports of a minute ago are forgotten to make room;
// beyond maxReportKeys reports within a minute, new ones are dropped.
func TestReporterBounded(t *testing.T) {
	r := &reporter{log: slog.New(slog.NewTextHandler(io.Discard, nil)), wg: &sync.WaitGroup{}, ctx: context.Background(), last: map[[2]string]time.Time{}}
	for i := range maxReportKeys {
		r.last[[2]string{"k", fmt.Sprint(i)}] = time.Now().Add(-2 * reportEvery)
	}
	r.send(fileinfo.Report{Kind: "k", Path: "new"})
	if len(r.last) != 1 {
		t.Fatalf("%d report times kept, want the new one only", len(r.last))
	}
	for i := range maxReportKeys - 1 {
		r.last[[2]string{"k", fmt.Sprint(i)}] = time.Now()
	}
	r.send(fileinfo.Report{Kind: "k", Path: "one too many"})
	if _, ok := r.last[[2]string{"k", "one too many"}]; ok || len(r.last) != maxReportKeys {
		t.Fatalf("%d report times kept, want %d: the one past the bound dropped", len(r.last), maxReportKeys)
	}
}

// TestRevalidatedBounded: checks of complete entries older than
// revalidateEvery are forgotten once maxStatPaths are remembered.
func TestRevalidatedBounded(t *testing.T) {
	s := newTestServer(t)
	s.mu.Lock()
	for i := range maxStatPaths {
		s.revalidated[fmt.Sprint(i)] = time.Now().Add(-2 * revalidateEvery)
	}
	s.mu.Unlock()
	s.revalidate(randomInfo(t, "r.bin", 1000))
	s.mu.Lock()
	n := len(s.revalidated)
	s.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d revalidation times kept, want the new one only", n)
	}
}
