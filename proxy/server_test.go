package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gin-gonic/gin"
	"github.com/p2sp/p2sp/internal/httpapi"
)

// TestCheckHost: the proxy answers to its own names only, so that a page
// whose name resolves to 127.0.0.1 (DNS rebinding) cannot use it.
func TestCheckHost(t *testing.T) {
	for _, tc := range []struct {
		listen, host string
		ok           bool
	}{
		{"127.0.0.1:8090", "127.0.0.1:8090", true},
		{"127.0.0.1:8090", "localhost:8090", true},
		{"127.0.0.1:8090", "LOCALHOST", true},
		{"127.0.0.1:8090", "[::1]:8090", true},
		{"127.0.0.1:8090", "127.0.0.2:8090", true},
		{"127.0.0.1:8090", "attacker.example:8090", false},
		{"127.0.0.1:8090", "localhost.attacker.example", false},
		{"127.0.0.1:8090", "192.168.1.5:8090", false},
		{"192.168.1.5:8090", "192.168.1.5:8090", true},
		{"192.168.1.5:8090", "attacker.example:8090", false},
		{"0.0.0.0:8090", "anything.example:8090", true},
		{":8090", "anything.example", true},
	} {
		s := &Server{cfg: Config{Listen: tc.listen}}
		e := httpapi.NewEngine()
		e.Use(s.checkHost)
		e.GET("/x", func(c *gin.Context) { c.Status(http.StatusNoContent) })
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.Host = tc.host
		w := httptest.NewRecorder()
		e.ServeHTTP(w, req)
		if ok := w.Code == http.StatusNoContent; ok != tc.ok {
			t.Errorf("listen %s, Host %q: %d, want allowed=%v", tc.listen, tc.host, w.Code, tc.ok)
		}
	}
}

func TestColdSpan(t *testing.T) {
	for _, tc := range []struct {
		rng    string
		off, n int64
		ok     bool
	}{
		{"", 0, coldWindow, true},
		{"bytes=0-", 0, coldWindow, true},
		{"bytes=100-199", 100, 100, true},
		{"bytes=24000000-", 24000000, coldWindow, true},
		{"bytes=0-99999999", 0, coldWindow, true},
		{"items=0-10", 0, coldWindow, true}, // an unknown unit is ignored: the whole file
		{"bytes=-500", 0, 0, false},         // needs the size
		{"bytes=0-1,5-6", 0, 0, false},
		{"bytes=x", 0, 0, false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/stream/a.mp4", nil)
		if tc.rng != "" {
			r.Header.Set("Range", tc.rng)
		}
		off, n, ok := coldSpan(r)
		if off != tc.off || n != tc.n || ok != tc.ok {
			t.Errorf("coldSpan(%q) = %d, %d, %v; want %d, %d, %v", tc.rng, off, n, ok, tc.off, tc.n, tc.ok)
		}
	}
}
