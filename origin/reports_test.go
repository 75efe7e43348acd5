package origin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// reportFrom posts a report from loopback address ip, with a user's
// credential when user is not "".
func reportFrom(t *testing.T, o *testOrigin, ip, user, token, body string) int {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return d.DialContext(ctx, network, addr)
		},
	}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequest(http.MethodPost, o.url+"/v1/reports", bytes.NewReader([]byte(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if user != "" {
		req.Header.Set(fileinfo.ReportUserHeader, user)
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestReportCosts: what strangers' reports can make the origin hash. 100
// reports on one file from 20 loopback addresses, each naming a piece, cost
// at most 20 pieces; reports naming no piece cost nothing without a user's
// credential, and the whole file once three users sent one. A reported
// piece that really changed on disk (same size and time) gets the file
// rehashed and registered anew.
func TestReportCosts(t *testing.T) {
	ft := newFakeTracker(t)
	media, data := t.TempDir(), t.TempDir()
	const p = "films/a.mp4"
	const size = 2<<20 + 5000
	full := writeFile(t, media, p, randomBytes(size, 20))
	var tokens []string
	for _, u := range []string{"ann", "bob", "cy"} {
		tok, err := AddUser(data, u)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
	}
	o := startOrigin(t, Config{Media: media, TrackerURL: ft.url, DataDir: data})
	eventually(t, "registration", func() bool { _, ok := ft.last(p); return ok })
	fi, _ := ft.last(p)
	hashed := func() float64 { return metricValue(t, o.reg, "p2sp_origin_hashed_bytes_total", nil) }
	report := func(ip, user, token, piece string) {
		t.Helper()
		body := `{"kind":"verification_failed","path":"` + p + `","infohash":"` + fi.InfoHash + `"` + piece + `}`
		if code := reportFrom(t, o, ip, user, token, body); code != http.StatusAccepted {
			t.Fatalf("report from %s: %d", ip, code)
		}
	}

	before := hashed()
	for i := range 100 {
		report(fmt.Sprintf("127.0.0.%d", 2+i%20), "", "", `,"piece":`+strconv.Itoa(i%fi.NumPieces()))
	}
	for i := range 5 {
		report(fmt.Sprintf("127.0.0.%d", 40+i), "", "", "")
	}
	cost := hashed() - before
	t.Logf("100 piece reports from 20 addresses and 5 anonymous whole-file reports: %.0f bytes hashed (%.1f pieces of %d; the file is %d)",
		cost, cost/float64(fi.PieceLength), fi.PieceLength, size)
	if cost > float64(20*fi.PieceLength) {
		t.Errorf("reports cost %.0f bytes of hashing, more than 20 pieces (%d)", cost, 20*fi.PieceLength)
	}

	// Three users' whole-file reports: one full rehash.
	before = hashed()
	for i, u := range []string{"ann", "bob", "cy"} {
		report("127.0.0.60", u, tokens[i], "")
	}
	eventually(t, "a full rehash", func() bool { return hashed()-before >= size })
	if got := hashed() - before; got != size {
		t.Errorf("three users' reports: %.0f bytes hashed, want the file once (%d)", got, size)
	}

	// The disk changes under the origin, size and time kept.
	st, err := os.Stat(full)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(full, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Piece 25: not checked in this window yet (each address had its first
	// report checked, pieces 0-19).
	off := 25 * fi.PieceLength
	f.WriteAt([]byte("rot"), off+10)
	f.Close()
	os.Chtimes(full, st.ModTime(), st.ModTime())
	report("127.0.0.70", "", "", `,"piece":25`)
	eventually(t, "a new registration after the rotten piece", func() bool {
		last, _ := ft.last(p)
		return last.SHA256 != fi.SHA256
	})
}

// TestBodiesBounded: a report or a list call with a body over its bound,
// with a Content-Length or chunked, is a 413 that names the bound; the
// origin reads no more of it.
func TestBodiesBounded(t *testing.T) {
	f := newUserFixture(t)
	o := f.start(t)
	for _, tc := range []struct {
		name, url, token string
		limit            int
	}{
		{"report", o.url + "/v1/reports", "", fileinfo.MaxReportBody},
		{"favourite", o.url + "/v1/users/alice/favorites", f.alice, maxListBody},
	} {
		body := `{"path":"a.mp4","detail":"` + strings.Repeat("x", tc.limit) + `"}`
		for _, chunked := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/chunked=%v", tc.name, chunked), func(t *testing.T) {
				var r io.Reader = strings.NewReader(body)
				if chunked {
					r = io.MultiReader(r) // hides the length
				}
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, tc.url, r)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Content-Type", "application/json")
				if tc.token != "" {
					req.Header.Set("Authorization", "Bearer "+tc.token)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				msg, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("larger than %d bytes", tc.limit); resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(msg), want) {
					t.Errorf("%s %q, want 413 saying %q", resp.Status, msg, want)
				}
			})
		}
	}
}
