package origin

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// checkInfo checks that fi is a valid record of data as served by o.
func checkInfo(t *testing.T, o *testOrigin, fi fileinfo.Info, data []byte) {
	t.Helper()
	if err := fi.Validate(); err != nil {
		t.Fatalf("%s: Validate: %v", fi.Path, err)
	}
	if fi.Size != int64(len(data)) {
		t.Errorf("%s: size %d, want %d", fi.Path, fi.Size, len(data))
	}
	sum := sha256.Sum256(data)
	if fi.SHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("%s: sha256 does not match the file", fi.Path)
	}
	for i := range fi.NumPieces() {
		off, n := fi.PieceBounds(i)
		if sha1.Sum(data[off:off+n]) != fi.PieceHash(i) {
			t.Errorf("%s: piece %d hash does not match the file", fi.Path, i)
		}
	}
	if !slices.Equal(fi.Origins, []string{o.url}) {
		t.Errorf("%s: origins %v, want [%s]", fi.Path, fi.Origins, o.url)
	}
	// Signed with the key the origin serves.
	_, kb := get(t, http.MethodGet, o.url+"/v1/key", nil)
	var ka keyAnswer
	if err := json.Unmarshal(kb, &ka); err != nil {
		t.Fatalf("/v1/key: %v: %s", err, kb)
	}
	key, err := fileinfo.ParseKey(ka.Ed25519)
	if err != nil {
		t.Fatal(err)
	}
	if err := fi.Verify([]ed25519.PublicKey{key}); err != nil {
		t.Errorf("%s: %v", fi.Path, err)
	}
	resp, _ := get(t, http.MethodHead, fileinfo.FileURL(o.url, fi.Path), nil)
	if got := resp.Header.Get("ETag"); got != fi.ETag {
		t.Errorf("%s: registered ETag %q, served %q", fi.Path, fi.ETag, got)
	}
}

func TestRegistration(t *testing.T) {
	ft := newFakeTracker(t)
	media := t.TempDir()
	files := map[string][]byte{
		"films/big film.mp4": randomBytes(700<<10, 10), // three pieces, the last short
		"music/song.mp3":     randomBytes(1000, 11),
		"empty.wav":          nil,
	}
	for p, data := range files {
		writeFile(t, media, p, data)
	}
	writeFile(t, media, ".hidden.mp4", []byte("no"))
	writeFile(t, media, ".cache/x.mp4", []byte("no"))
	if err := os.Symlink("music/song.mp3", media+"/link.mp3"); err != nil {
		t.Fatal(err)
	}
	o := startOrigin(t, Config{Media: media, TrackerURL: ft.url})

	for p, data := range files {
		eventually(t, "registration of "+p, func() bool { _, ok := ft.last(p); return ok })
		fi, _ := ft.last(p)
		checkInfo(t, o, fi, data)
	}
	for _, a := range ft.authHeaders() {
		if a != "Bearer "+testToken {
			t.Errorf("Authorization %q", a)
		}
	}

	// The catalog lists the media files, sorted, registered; nothing
	// hidden and no symlink.
	eventually(t, "catalog registered", func() bool {
		for _, e := range o.catalog(t) {
			if !e.Registered {
				return false
			}
		}
		return true
	})
	cat := o.catalog(t)
	var paths []string
	for _, e := range cat {
		paths = append(paths, e.Path)
		fi, _ := ft.last(e.Path)
		if e.ETag != fi.ETag || e.Size != fi.Size || !e.ModTime.Equal(fi.ModTime) {
			t.Errorf("catalog %+v does not match registration", e)
		}
	}
	if want := []string{"empty.wav", "films/big film.mp4", "music/song.mp3"}; !slices.Equal(paths, want) {
		t.Errorf("catalog paths %v, want %v", paths, want)
	}
	if got := metricValue(t, o.reg, "p2sp_origin_files_registered", nil); got != 3 {
		t.Errorf("files_registered = %v, want 3", got)
	}
	if got := metricValue(t, o.reg, "p2sp_origin_hashed_bytes_total", nil); got != 700<<10+1000 {
		t.Errorf("hashed_bytes_total = %v, want %d", got, 700<<10+1000)
	}

	// /v1/files-info serves the same record.
	resp, body := get(t, http.MethodGet, o.url+"/v1/files-info/music/song.mp3", nil)
	var fi fileinfo.Info
	if resp.StatusCode != 200 || json.Unmarshal(body, &fi) != nil {
		t.Fatalf("files-info: %d %s", resp.StatusCode, body)
	}
	reg, _ := ft.last("music/song.mp3")
	if !fi.Equal(&reg) || fi.InfoHash != reg.InfoHash {
		t.Errorf("files-info differs from the registration")
	}
	if resp, _ := get(t, http.MethodGet, o.url+"/v1/files-info/nope.mp4", nil); resp.StatusCode != 404 {
		t.Errorf("files-info of a missing file: %d", resp.StatusCode)
	}

	t.Run("added file", func(t *testing.T) {
		data := randomBytes(300<<10, 12)
		writeFile(t, media, "new/clip.webm", data)
		eventually(t, "registration of the new file", func() bool { _, ok := ft.last("new/clip.webm"); return ok })
		fi, _ := ft.last("new/clip.webm")
		checkInfo(t, o, fi, data)
	})

	t.Run("changed file", func(t *testing.T) {
		const p = "music/song.mp3"
		old, _ := ft.last(p)
		data := randomBytes(1000, 13) // same size, new bytes
		full := writeFile(t, media, p, data)
		later := old.ModTime.Add(3 * time.Second)
		if err := os.Chtimes(full, later, later); err != nil {
			t.Fatal(err)
		}
		eventually(t, "re-registration", func() bool { fi, _ := ft.last(p); return fi.SHA256 != old.SHA256 })
		fi, _ := ft.last(p)
		checkInfo(t, o, fi, data)
		if fi.ETag == old.ETag {
			t.Errorf("ETag unchanged")
		}
	})

	t.Run("verification failed report", func(t *testing.T) {
		const p = "new/clip.webm"
		n := len(ft.registrations(p))
		before := metricValue(t, o.reg, "p2sp_origin_hashed_bytes_total", nil)
		fi, _ := ft.last(p)
		code := postReport(t, o, `{"kind":"verification_failed","path":"new/clip.webm","infohash":"`+fi.InfoHash+`","piece":1,"detail":"sha1 mismatch"}`)
		if code != http.StatusAccepted {
			t.Fatalf("report: %d", code)
		}
		eventually(t, "re-registration after the report", func() bool { return len(ft.registrations(p)) > n })
		// The piece it names was hashed again, and nothing else: it
		// still matches (TestReportCosts has one that does not).
		if got := metricValue(t, o.reg, "p2sp_origin_hashed_bytes_total", nil); got != before+float64(fi.PieceLength) {
			t.Errorf("hashed_bytes_total went from %v to %v, want one piece (%d) more", before, got, fi.PieceLength)
		}
	})

	t.Run("unknown file report", func(t *testing.T) {
		const p = "empty.wav"
		n := len(ft.registrations(p))
		if code := postReport(t, o, `{"kind":"unknown_file","path":"empty.wav"}`); code != http.StatusAccepted {
			t.Fatalf("report: %d", code)
		}
		eventually(t, "re-registration after the report", func() bool { return len(ft.registrations(p)) > n })
	})

	t.Run("removed file", func(t *testing.T) {
		if err := os.Remove(media + "/films/big film.mp4"); err != nil {
			t.Fatal(err)
		}
		eventually(t, "removal from the catalog", func() bool {
			for _, e := range o.catalog(t) {
				if e.Path == "films/big film.mp4" {
					return false
				}
			}
			return true
		})
		if resp, _ := get(t, http.MethodGet, o.url+"/v1/files-info/films/big%20film.mp4", nil); resp.StatusCode != 404 {
			t.Errorf("files-info of a removed file: %d", resp.StatusCode)
		}
	})
}

func TestRegistrationRetriesWhileTrackerDown(t *testing.T) {
	ft := newFakeTracker(t)
	ft.failNext.Store(3)
	media := t.TempDir()
	data := randomBytes(5000, 20)
	writeFile(t, media, "a.mp4", data)
	writeFile(t, media, "b.mp4", data[:100])
	o := startOrigin(t, Config{Media: media, TrackerURL: ft.url})
	eventually(t, "both registered", func() bool {
		cat := o.catalog(t)
		return len(cat) == 2 && cat[0].Registered && cat[1].Registered
	})
	fi, _ := ft.last("a.mp4")
	checkInfo(t, o, fi, data)
}

func TestReportValidation(t *testing.T) {
	o := startOrigin(t, Config{})
	writeFile(t, o.media, "a.mp4", []byte("a"))
	tests := []struct {
		name string
		body string
		want int
	}{
		// What Validate refuses is 400; its rules are tested in fileinfo.
		{"traversal", `{"kind":"unknown_file","path":"../etc/passwd"}`, 400},
		{"not json", `kind=unknown_file`, 400},
		{"too large", `{"kind":"unknown_file","path":"a.mp4","detail":"` + strings.Repeat("x", 20<<10) + `"}`, 413},
		{"hidden", `{"kind":"unknown_file","path":".a.mp4"}`, 404},
		{"missing", `{"kind":"unknown_file","path":"b.mp4"}`, 404},
		{"ok", `{"kind":"hash_mismatch","path":"a.mp4"}`, 202},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := postReport(t, o, tc.body); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
		})
	}
	// The per-address limit answers 429 once the burst is spent.
	var limited bool
	for range 20 {
		if postReport(t, o, `{"kind":"unknown_file","path":"a.mp4"}`) == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Errorf("no 429 after 28 reports from one address")
	}
}

func postReport(t *testing.T, o *testOrigin, body string) int {
	t.Helper()
	resp, err := http.Post(o.url+"/v1/reports", "application/json", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSmallFilesHashedFirst(t *testing.T) {
	// Found in the same scan, the small files are registered before the
	// large one, which therefore holds up nothing but itself.
	ft := newFakeTracker(t)
	media := t.TempDir()
	old := time.Now().Add(-time.Hour)
	for name, data := range map[string][]byte{
		"a-large.mp4": randomBytes(24<<20, 30),
		"b-small.mp4": []byte("small"),
		"c-small.mp4": []byte("smaller"),
	} {
		// Old enough to be hashed at first sight, so the first scan finds
		// all three.
		if err := os.Chtimes(writeFile(t, media, name, data), old, old); err != nil {
			t.Fatal(err)
		}
	}
	startOrigin(t, Config{Media: media, TrackerURL: ft.url})
	eventually(t, "all registered", func() bool { _, ok := ft.last("a-large.mp4"); return ok })
	ft.mu.Lock()
	defer ft.mu.Unlock()
	var order []string
	for _, fi := range ft.infos {
		order = append(order, fi.Path)
	}
	if want := []string{"b-small.mp4", "c-small.mp4", "a-large.mp4"}; !slices.Equal(order[:3], want) {
		t.Errorf("registration order %v, want %v", order, want)
	}
}

func TestNoTracker(t *testing.T) {
	// Without a tracker the origin serves and hashes, and registers
	// nothing.
	o := startOrigin(t, Config{})
	data := randomBytes(1000, 31)
	writeFile(t, o.media, "a.mp4", data)
	eventually(t, "hashed", func() bool {
		resp, _ := get(t, http.MethodGet, o.url+"/v1/files-info/a.mp4", nil)
		return resp.StatusCode == 200
	})
	cat := o.catalog(t)
	if len(cat) != 1 || cat[0].Registered {
		t.Errorf("catalog %+v", cat)
	}
	if got := metricValue(t, o.reg, "p2sp_origin_hash_backlog_files", nil); got != 0 {
		t.Errorf("backlog %v with nothing to do", got)
	}
}

// TestUnservableNameWarnedOnce: a file whose name is not valid UTF-8 can
// never be registered (JSON would turn it into another name); the origin
// skips it with one warning, not an error every scan, and goes on with the
// other files.
func TestUnservableNameWarnedOnce(t *testing.T) {
	ft := newFakeTracker(t)
	media := t.TempDir()
	const bad = "films/caf\xe9.mp4" // Latin-1
	writeFile(t, media, bad, []byte("latin-1 name"))
	writeFile(t, media, "films/ok.mp4", []byte("fine"))
	var logs logRecorder
	o := startOrigin(t, Config{Media: media, TrackerURL: ft.url, Logger: logs.logger()})
	eventually(t, "registration of films/ok.mp4", func() bool { _, ok := ft.last("films/ok.mp4"); return ok })
	// Two more whole scans at least.
	o.catalogAfterScan(t)
	for _, e := range o.catalogAfterScan(t) {
		if e.Path != "films/ok.mp4" {
			t.Errorf("catalog lists %q", e.Path)
		}
	}
	warned := logs.count(func(rec map[string]any) bool {
		return rec["level"] == "WARN" && rec["path"] == strconv.Quote(bad)
	})
	if warned != 1 {
		t.Errorf("%d warnings about %q over several scans, want 1", warned, bad)
	}
	if n := logs.count(func(rec map[string]any) bool { return rec["level"] == "ERROR" }); n != 0 {
		t.Errorf("%d ERROR records", n)
	}
	ft.mu.Lock()
	for _, fi := range ft.infos {
		if fi.Path != "films/ok.mp4" && fi.Path != scanMarker {
			t.Errorf("registered %q", fi.Path)
		}
	}
	ft.mu.Unlock()
}
