package tracker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/testtool"
)

// BenchmarkAnnounce measures the announces per second that tracker
// replicas answer, through their HTTP handler (parsing, rate limiting, the
// store, the bencoded answer; no TCP), with 100 registered files and 50000
// peers re-announcing from their own IPs, 32 announces in flight:
//
//	go test -run '^$' -bench BenchmarkAnnounce -benchtime 5s ./tracker
//
// The embedded store belongs to one process, so only Redis has a
// two-replica row; on one machine both replicas, the load and redis-server
// share the same cores.
func BenchmarkAnnounce(b *testing.B) {
	for _, bc := range []struct {
		name     string
		redis    bool
		replicas int
	}{
		{"bbolt/1-replica", false, 1},
		{"redis/1-replica", true, 1},
		{"redis/2-replicas", true, 2},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := Config{Token: testToken, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			if bc.redis {
				cfg.Store = testtool.StartRedis(b)
			} else {
				cfg.DataDir = b.TempDir()
			}
			var handlers []http.Handler
			for range bc.replicas {
				s, err := New(b.Context(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { s.Close() })
				handlers = append(handlers, s.Handler())
			}
			var hashes []string
			for i := range 100 {
				fi, _ := testFile(b, fmt.Sprintf("bench/%d.bin", i), 16<<10)
				body, err := json.Marshal(fi)
				if err != nil {
					b.Fatal(err)
				}
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodPost, "/v1/files", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+testToken)
				handlers[0].ServeHTTP(rec, req)
				if rec.Code/100 != 2 {
					b.Fatalf("register: %d %s", rec.Code, rec.Body)
				}
				hashes = append(hashes, url.QueryEscape(rawHash(b, fi.InfoHash)))
			}
			var n atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					p := i % 50000
					q := fmt.Sprintf("info_hash=%s&peer_id=%s&port=6881&left=%d", hashes[p%100],
						url.QueryEscape(fmt.Sprintf("-bench-%013d", p)), p%2)
					req := httptest.NewRequest(http.MethodGet, "/announce?"+q, nil)
					req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:6881", p>>16&255, p>>8&255, p&255)
					rec := httptest.NewRecorder()
					handlers[int(i)%len(handlers)].ServeHTTP(rec, req)
					if bytes.Contains(rec.Body.Bytes(), []byte("failure reason")) {
						b.Errorf("announce failed: %s", rec.Body)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "announces/s")
		})
	}
}
