package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

// A player runs inside a client namespace, as this same binary started
// with -player PLAN: it reads PLAN (JSON), prints "ready", waits for a line
// on stdin, plays its segments one after the other against the proxy on
// the namespace's 127.0.0.1, and prints its result as one JSON line.
// Players are long-lived processes because spawning anything inside a
// namespace on a loaded machine can take seconds (network-lab.md).

// plan is what one player does.
type plan struct {
	URL      string    `json:"url"`
	Segments []segment `json:"segments"`
	// Rate is the playback bitrate in bytes per second; 0 reads as fast as
	// the proxy answers (a download).
	Rate float64 `json:"rate"`
	// Buffer is how far ahead of the playback clock a paced player reads.
	Buffer time.Duration `json:"buffer"`
	// Limit bounds the whole play, from the go line on.
	Limit time.Duration `json:"limit"`
}

// segment is one request: Length bytes from Offset.
type segment struct {
	Offset int64 `json:"offset"`
	Length int64 `json:"length"`
}

// segmentResult is what the player saw of one segment.
type segmentResult struct {
	segment
	Got    int64         `json:"got"`
	SHA256 string        `json:"sha256"`
	TTFB   time.Duration `json:"ttfb"`
	// Duration is from the request to the last byte.
	Duration time.Duration `json:"duration"`
	// Stalls counts reads that completed more than stallLate after their
	// playback deadline; StallTime adds up how late they were.
	Stalls    int           `json:"stalls"`
	StallTime time.Duration `json:"stall_time"`
	Err       string        `json:"err,omitempty"`
}

// stallLate is the definition of a stall: a read that completes
// more than a second after its playback deadline.
const stallLate = time.Second

// chunk is the size of one player read.
const chunk = 64 << 10

func runPlayer(arg string) error {
	var p plan
	if err := json.Unmarshal([]byte(arg), &p); err != nil {
		return fmt.Errorf("player: plan: %w", err)
	}
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return fmt.Errorf("player: waiting for go: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.Limit)
	defer cancel()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	var results []segmentResult
	for _, s := range p.Segments {
		results = append(results, play(ctx, client, p, s))
	}
	return json.NewEncoder(os.Stdout).Encode(results)
}

// play reads one segment, paced if the plan has a rate. The playback clock
// starts at the first byte; byte b is due Rate·b later. A read that ends
// more than stallLate past its due time is a stall, after which the clock
// restarts from that moment, as a player resumes after rebuffering.
func play(ctx context.Context, client *http.Client, p plan, s segment) segmentResult {
	r := segmentResult{segment: s}
	start := time.Now()
	fail := func(err error) segmentResult {
		r.Err = err.Error()
		r.Duration = time.Since(start)
		return r
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.URL, nil)
	if err != nil {
		return fail(err)
	}
	req.Header.Set("Range", "bytes="+strconv.FormatInt(s.Offset, 10)+"-"+strconv.FormatInt(s.Offset+s.Length-1, 10))
	resp, err := client.Do(req)
	if err != nil {
		return fail(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent {
		return fail(fmt.Errorf("status %s", resp.Status))
	}
	h := sha256.New()
	buf := make([]byte, chunk)
	// The first read returns as soon as any byte is there: that is TTFB,
	// and the start of the playback clock.
	m, err := resp.Body.Read(buf[:min(int64(chunk), s.Length)])
	if m == 0 {
		return fail(fmt.Errorf("no first byte: %w", err))
	}
	clock := time.Now()
	r.TTFB = clock.Sub(start)
	h.Write(buf[:m])
	r.Got = int64(m)
	for r.Got < s.Length {
		n := min(int64(chunk), s.Length-r.Got)
		var due time.Time
		if p.Rate > 0 {
			due = clock.Add(time.Duration(float64(r.Got+n) / p.Rate * float64(time.Second)))
			if wait := time.Until(due.Add(-p.Buffer)); wait > 0 {
				select {
				case <-ctx.Done():
					return fail(ctx.Err())
				case <-time.After(wait):
				}
			}
		}
		m, err := io.ReadFull(resp.Body, buf[:n])
		h.Write(buf[:m])
		r.Got += int64(m)
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
				err = fmt.Errorf("body ended after %d of %d bytes", r.Got, s.Length)
			}
			return fail(err)
		}
		if late := time.Since(due); !due.IsZero() && late > stallLate {
			r.Stalls++
			r.StallTime += late
			clock = clock.Add(late)
		}
	}
	r.Duration = time.Since(start)
	r.SHA256 = hex.EncodeToString(h.Sum(nil))
	// A viewer watches its segment to the end before it jumps or leaves:
	// what it read ahead is played, not skipped.
	if p.Rate > 0 {
		end := clock.Add(time.Duration(float64(s.Length) / p.Rate * float64(time.Second)))
		select {
		case <-ctx.Done():
		case <-time.After(time.Until(end)):
		}
	}
	return r
}
