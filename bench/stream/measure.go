package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"
)

// newClient returns a client with its own connections and no proxy from
// the environment, so that no measurement rides on a connection another one
// opened; ctx bounds each request instead of a client timeout.
func newClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
}

// rangeTiming is what one range request measured, both from sending the
// request.
type rangeTiming struct {
	// whole is until the whole body was read: the benchmark's measure.
	whole time.Duration
	// first is until the first body byte arrived, which tells a proxy's
	// fixed start-up cost apart from its throughput.
	first time.Duration
}

// timedRange fetches bytes off..off+n-1 of url with a Range header and
// times it, after checking the status and that the body is want.
func timedRange(ctx context.Context, url string, off int64, want []byte) (rangeTiming, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return rangeTiming{}, err
	}
	rng := fmt.Sprintf("bytes=%d-%d", off, off+int64(len(want))-1)
	req.Header.Set("Range", rng)
	client := newClient()
	defer client.CloseIdleConnections()
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return rangeTiming{}, fmt.Errorf("GET %s (%s): %w", url, rng, err)
	}
	defer resp.Body.Close()
	fb := &firstByteReader{r: resp.Body}
	body, err := io.ReadAll(fb)
	t := rangeTiming{whole: time.Since(start), first: fb.at.Sub(start)}
	if err != nil {
		return rangeTiming{}, fmt.Errorf("GET %s (%s): body after %d bytes: %w", url, rng, len(body), err)
	}
	if resp.StatusCode != http.StatusPartialContent {
		return rangeTiming{}, fmt.Errorf("GET %s (%s): %s, want 206: %.200q", url, rng, resp.Status, body)
	}
	if !bytes.Equal(body, want) {
		return rangeTiming{}, fmt.Errorf("GET %s (%s): %d bytes differ from the file's (%d bytes wanted)", url, rng, len(body), len(want))
	}
	return t, nil
}

// firstByteReader notes when the first byte came through.
type firstByteReader struct {
	r  io.Reader
	at time.Time
}

func (f *firstByteReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if n > 0 && f.at.IsZero() {
		f.at = time.Now()
	}
	return n, err
}

// wholeResult is what fetching a whole file measured.
type wholeResult struct {
	bytes   int64
	elapsed time.Duration
	sha256  string
}

// fetchWhole GETs a whole file and hashes it as it comes. A rate above
// zero makes a slow reader: it reads 64 KiB at a time and sleeps so that on
// average it takes rate bytes per second, as a player would.
func fetchWhole(ctx context.Context, url string, rate float64, timeout time.Duration) (wholeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return wholeResult{}, err
	}
	client := newClient()
	defer client.CloseIdleConnections()
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return wholeResult{}, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return wholeResult{}, fmt.Errorf("GET %s: %s, want 200: %q", url, resp.Status, body)
	}
	sum := sha256.New()
	buf := make([]byte, 64<<10)
	var n int64
	for {
		m, err := io.ReadFull(resp.Body, buf)
		sum.Write(buf[:m])
		n += int64(m)
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return wholeResult{}, fmt.Errorf("GET %s: body after %d bytes (%s): %w", url, n, time.Since(start).Round(time.Millisecond), err)
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(n) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return wholeResult{}, fmt.Errorf("GET %s: after %d bytes: %w", url, n, ctx.Err())
				case <-time.After(d):
				}
			}
		}
	}
	return wholeResult{bytes: n, elapsed: time.Since(start), sha256: hex.EncodeToString(sum.Sum(nil))}, nil
}

// median is the middle of an odd number of durations.
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
