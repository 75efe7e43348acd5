package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
)

// loadConns is how many players read at once.
const loadConns = 64

// TestLoadRandomRanges: 64 connections doing random range reads (1 KiB to
// 1 MiB) on fully cached files for a bounded time (10 s; P2SP_LOAD_SECONDS
// overrides) get no error and exactly the file's bytes every time; the
// origin sends nothing meanwhile. Latency and throughput are logged, not
// asserted.
func TestLoadRandomRanges(t *testing.T) {
	dur := 10 * time.Second
	if s := os.Getenv("P2SP_LOAD_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("P2SP_LOAD_SECONDS=%q: want a positive number of seconds", s)
		}
		dur = time.Duration(n) * time.Second
	}
	c := start(t, demo.Config{Proxies: 1, ScanInterval: 200 * time.Millisecond})
	p := c.Proxies[0]
	type media struct {
		path string
		data []byte
	}
	var files []media
	for i, size := range []int{8<<20 + 1, 6<<20 + 333, 4 << 20, 3<<20 + 77} {
		path := fmt.Sprintf("load/f%d.bin", i)
		files = append(files, media{path, writeMedia(t, c, path, size)})
	}
	for _, f := range files {
		waitInfo(t, c, f.path, "")
		if got := mustGet(t, streamURL(p, f.path), "", http.StatusOK); !bytes.Equal(got, f.data) {
			t.Fatalf("%s: bytes differ", f.path)
		}
		waitComplete(t, p, f.path)
	}
	sentBefore := counter(t, c.Origin, "p2sp_origin_sent_bytes_total")

	tr := &http.Transport{MaxConnsPerHost: loadConns, MaxIdleConnsPerHost: loadConns, DisableCompression: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(t.Context(), dur)
	defer cancel()

	type result struct {
		lat   []time.Duration
		bytes int64
		errs  []string
		nerr  int
	}
	results := make([]result, loadConns)
	var wg sync.WaitGroup
	t0 := time.Now()
	for w := range loadConns {
		wg.Go(func() {
			res := &results[w]
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(w)))
			for ctx.Err() == nil {
				f := files[rng.IntN(len(files))]
				size := int64(len(f.data))
				n := min(size, 1<<10+rng.Int64N(1<<20-1<<10+1))
				off := rng.Int64N(size - n + 1)
				err := func() error {
					// The request is not bound to ctx: one under way when the
					// time is up finishes and is checked.
					req, err := http.NewRequest(http.MethodGet, streamURL(p, f.path), nil)
					if err != nil {
						return err
					}
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+n-1))
					start := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						return err
					}
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					lat := time.Since(start)
					switch {
					case err != nil:
						return fmt.Errorf("%s [%d, %d): body: %w", f.path, off, off+n, err)
					case resp.StatusCode != http.StatusPartialContent:
						return fmt.Errorf("%s [%d, %d): %s", f.path, off, off+n, resp.Status)
					case !bytes.Equal(body, f.data[off:off+n]):
						return fmt.Errorf("%s [%d, %d): %d bytes that differ from the file's", f.path, off, off+n, len(body))
					}
					res.lat = append(res.lat, lat)
					res.bytes += n
					return nil
				}()
				if err != nil {
					res.nerr++
					if len(res.errs) < 3 {
						res.errs = append(res.errs, err.Error())
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(t0)

	var lat []time.Duration
	var total int64
	var nerr int
	for _, r := range results {
		lat = append(lat, r.lat...)
		total += r.bytes
		nerr += r.nerr
		for _, e := range r.errs {
			t.Log("error: " + e)
		}
	}
	slices.Sort(lat)
	pct := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}
	t.Logf("%d connections for %s: %d requests (%.0f/s), %s (%.0f MB/s), %d errors; latency p50 %s, p90 %s, p99 %s, max %s",
		loadConns, elapsed.Round(time.Millisecond), len(lat), float64(len(lat))/elapsed.Seconds(), mib(float64(total)),
		float64(total)/elapsed.Seconds()/1e6, nerr, pct(0.50).Round(time.Microsecond), pct(0.90).Round(time.Microsecond),
		pct(0.99).Round(time.Microsecond), pct(1).Round(time.Microsecond))
	if nerr > 0 {
		t.Errorf("%d of %d requests failed or returned wrong bytes", nerr, nerr+len(lat))
	}
	if len(lat) == 0 {
		t.Error("no request completed")
	}
	if sent := counter(t, c.Origin, "p2sp_origin_sent_bytes_total") - sentBefore; sent != 0 {
		t.Errorf("the origin sent %.0f bytes while every file was cached", sent)
	}
}
