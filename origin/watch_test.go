package origin

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestInProgress(t *testing.T) {
	for name, want := range map[string]bool{
		"index3.ts.tmp":      true,
		"index.m3u8.tmp":     true,
		"film.mp4.part":      true,
		"film.mp4.PART":      true,
		"film.mp4.aria2":     true,
		"notes.txt~":         true,
		"index3.ts":          false,
		"index.m3u8":         false,
		"tmp.mp4":            false,
		"films/partial.mp4":  false,
		"a.download.mp4":     false,
		"live/seg.ts.tmpdir": false,
	} {
		if got := inProgress(name); got != want {
			t.Errorf("inProgress(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestSettler(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	st := newSettler()
	if _, ok := st.next(); ok {
		t.Fatal("an empty settler has a look due")
	}
	st.touch("a.ts", ms(0))
	st.touch("b.ts", ms(30))
	if got := st.ready(ms(49)); len(got) != 0 {
		t.Fatalf("due before the quiet period: %v", got)
	}
	if next, _ := st.next(); !next.Equal(ms(50)) {
		t.Fatalf("next look at %v, want 50 ms", next.Sub(t0))
	}
	// More writes push the look back.
	st.touch("a.ts", ms(45))
	if got := st.ready(ms(80)); !slices.Equal(got, []string{"b.ts"}) {
		t.Fatalf("ready at 80 ms: %v, want [b.ts]", got)
	}
	// b's writer still holds it open: look again later, do not register.
	if st.looked("b.ts", writersOpen, ms(80)) {
		t.Fatal("a file open for writing settled")
	}
	if got := st.ready(ms(129)); !slices.Equal(got, []string{"a.ts"}) {
		t.Fatalf("ready at 129 ms: %v, want [a.ts]", got)
	}
	if !st.looked("a.ts", writersClosed, ms(129)) {
		t.Fatal("a closed file did not settle")
	}
	if st.looked("b.ts", writersUnknown, ms(130)) {
		t.Fatal("a file whose writers are unknown settled: it is the scan's")
	}
	if _, ok := st.next(); ok {
		t.Fatalf("looks still due: %v", st.due)
	}
	st.touch("c.ts", ms(0))
	st.forget("c.ts")
	if got := st.ready(ms(1000)); len(got) != 0 {
		t.Fatalf("a forgotten file is due: %v", got)
	}
}

// TestWatchRegistersAtOnce: with a scan that would take an hour, a segment
// renamed into place is registered at once, and one written in place is
// registered only once its writer closed it, whole.
func TestWatchRegistersAtOnce(t *testing.T) {
	ft := newFakeTracker(t)
	o := startOrigin(t, Config{TrackerURL: ft.url, ScanInterval: time.Hour})
	if err := os.Mkdir(filepath.Join(o.media, "live"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A new directory is watched as soon as it appears.
	seg := randomBytes(300<<10, 1)
	tmp := writeFile(t, o.media, "live/seg1.ts.tmp", seg)
	start := time.Now()
	if err := os.Rename(tmp, filepath.Join(o.media, "live", "seg1.ts")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "renamed segment registered", func() bool { _, ok := ft.last("live/seg1.ts"); return ok })
	t.Logf("renamed-in segment registered %v after the rename", time.Since(start).Round(time.Millisecond))
	fi, _ := ft.last("live/seg1.ts")
	checkInfo(t, o, fi, seg)
	if r := ft.registrations("live/seg1.ts.tmp"); len(r) != 0 {
		t.Errorf("the temporary file was registered: %v", r)
	}

	// In place: half the segment written, the writer still open.
	f, err := os.Create(filepath.Join(o.media, "live", "seg2.ts"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if writers(f) == writersUnknown {
		t.Skip("no file leases on this file system: in-place writers are left to the scan")
	}
	seg2 := randomBytes(200<<10, 2)
	if _, err := f.Write(seg2[:100<<10]); err != nil {
		t.Fatal(err)
	}
	// A segment renamed in later is registered after seg2 was looked at
	// (its look came due first), so seg2's absence then is the verdict.
	tmp = writeFile(t, o.media, "live/seg3.ts.tmp", seg)
	if err := os.Rename(tmp, filepath.Join(o.media, "live", "seg3.ts")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "seg3 registered", func() bool { _, ok := ft.last("live/seg3.ts"); return ok })
	if r := ft.registrations("live/seg2.ts"); len(r) != 0 {
		t.Fatalf("a segment still being written was registered: %d bytes", r[0].Size)
	}
	if _, err := f.Write(seg2[100<<10:]); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "closed segment registered", func() bool { _, ok := ft.last("live/seg2.ts"); return ok })
	t.Logf("in-place segment registered %v after its close", time.Since(start).Round(time.Millisecond))
	fi, _ = ft.last("live/seg2.ts")
	checkInfo(t, o, fi, seg2)
	if r := ft.registrations("live/seg2.ts"); len(r) != 1 {
		t.Errorf("seg2 registered %d times, want once", len(r))
	}

	// Removed (ffmpeg's delete_segments): gone from the catalog at once.
	if err := os.Remove(filepath.Join(o.media, "live", "seg1.ts")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "removed segment leaves the catalog", func() bool {
		return !slices.ContainsFunc(o.catalog(t), func(e CatalogEntry) bool { return e.Path == "live/seg1.ts" })
	})
}
