package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestPageAssets: the page and its assets come from the binary, with a
// policy that keeps them to this proxy; without a user the lists are off.
func TestPageAssets(t *testing.T) {
	s, err := New(Config{
		Trackers: []string{"http://127.0.0.1:1"}, Origins: []string{"http://127.0.0.1:1"},
		CacheDir: t.TempDir(), BTListen: "127.0.0.1:0",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()

	tests := []struct {
		path, wantType, wantBody string
		status                   int
		csp                      bool
	}{
		{"/", "text/html", `<script src="/ui/app.js"`, http.StatusOK, true},
		{"/ui/app.js", "javascript", "/v1/lists/favorites", http.StatusOK, true},
		{"/ui/style.css", "text/css", "--origin", http.StatusOK, true},
		{"/ui/nope.js", "", "", http.StatusNotFound, true},
		{"/v1/me", "application/json", `"lists":false`, http.StatusOK, false},
		{"/v1/lists/favorites", "application/json", "--user", http.StatusNotFound, false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("%d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); !strings.Contains(ct, tt.wantType) {
				t.Errorf("Content-Type %q, want %q", ct, tt.wantType)
			}
			if !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("body lacks %q", tt.wantBody)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); tt.csp && !strings.Contains(csp, "default-src 'self'") {
				t.Errorf("Content-Security-Policy %q", csp)
			}
		})
	}
}

func TestUserNeedsToken(t *testing.T) {
	for _, cfg := range []Config{{User: "alice"}, {UserToken: "x"}} {
		cfg.Trackers, cfg.Origins, cfg.CacheDir = []string{"http://127.0.0.1:1"}, []string{"http://127.0.0.1:1"}, t.TempDir()
		if _, err := cfg.withDefaults(); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
