package tracker

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/testtool"
)

// BenchmarkAnnounce measures the announces per second that tracker
// replicas answer over loopback TCP, with 100 registered files and 50000
// peers re-announcing, each from its own loopback address (127.0.0.0/8 is
// all local on Linux, and the tracker's per-address rate limit applies),
// on a connection of its own as BitTorrent clients announce, 32 announces
// in flight:
//
//	go test -run '^$' -bench BenchmarkAnnounce -benchtime 5s ./tracker
//
// The embedded store belongs to one process, so only Redis has a
// two-replica row: two tracker servers on one Redis, each on its own
// listener, the load spread over both. On one machine both replicas, the
// load generator and redis-server share the same cores.
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
			var urls []string
			var first *Server
			for range bc.replicas {
				s, err := New(b.Context(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				urls = append(urls, serveForBench(b, s))
				handlers = append(handlers, s.Handler())
				first = cmp.Or(first, s)
			}
			pk, cred, err := newPasskey("bench")
			if err != nil {
				b.Fatal(err)
			}
			if err := first.store.AddPasskey(b.Context(), cred); err != nil {
				b.Fatal(err)
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
			client := peerClient()
			defer client.CloseIdleConnections()
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
					ctx := context.WithValue(b.Context(), peerAddrKey{}, netip.AddrFrom4([4]byte{127, byte(p>>16) + 1, byte(p >> 8), byte(p)}))
					req, err := http.NewRequestWithContext(ctx, http.MethodGet, urls[int(i)%len(urls)]+"/announce/"+pk+"?"+q, nil)
					if err != nil {
						b.Error(err)
						return
					}
					resp, err := client.Do(req)
					if err != nil {
						b.Errorf("announce: %v", err)
						return
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte("failure reason")) {
						b.Errorf("announce failed: %s %v %s", resp.Status, err, body)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "announces/s")
		})
	}
}

// serveForBench serves s on a loopback port until the benchmark ends and
// returns its base URL.
func serveForBench(b *testing.B, s *Server) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	b.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			b.Errorf("Serve: %v", err)
		}
		s.Close()
	})
	return "http://" + ln.Addr().String()
}

// peerAddrKey is the context key of the loopback address a benchmark
// announce is sent from.
type peerAddrKey struct{}

// peerClient sends each request on a new connection from the address in
// its context, as many BitTorrent clients would from their own hosts.
func peerClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				d := net.Dialer{Timeout: 5 * time.Second}
				if a, ok := ctx.Value(peerAddrKey{}).(netip.Addr); ok {
					d.LocalAddr = &net.TCPAddr{IP: a.AsSlice()}
				}
				return d.DialContext(ctx, network, addr)
			},
		},
	}
}
