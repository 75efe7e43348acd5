package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
)

// cluster is a tracker and an origin running in process, and the media
// files the benchmark wrote for them.
type cluster struct {
	*demo.Cluster
	// sums holds each written file's SHA-256 (hex) by path.
	sums map[string]string
}

// startCluster runs a tracker and an origin (no proxies: those are child
// processes) in dir.
func startCluster(ctx context.Context, dir string, rateLimit int64, log *slog.Logger) (*cluster, error) {
	c, err := demo.Start(ctx, demo.Config{
		Dir: dir, Proxies: 0, RateLimit: rateLimit, ScanInterval: 200 * time.Millisecond, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("start cluster in %s: %w", dir, err)
	}
	return &cluster{Cluster: c, sums: map[string]string{}}, nil
}

// writeMedia writes size pseudo-random bytes as the media file name. The
// bytes come from ChaCha8 seeded by the name: fast enough for a GiB, and
// never compressible or deduplicated by anything on the way.
func (c *cluster) writeMedia(ctx context.Context, name string, size int64) error {
	h := fnv.New64a()
	h.Write([]byte(name))
	var seed [32]byte
	copy(seed[:], h.Sum(nil))
	rng := rand.NewChaCha8(seed)

	// Write then rename, so that the origin never hashes a half-written file.
	tmp := filepath.Join(c.Dir, "tmp-"+filepath.Base(name))
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp)
	defer f.Close()
	sum := sha256.New()
	w := bufio.NewWriterSize(f, 1<<20)
	buf := make([]byte, 1<<20)
	for left := size; left > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n := min(left, int64(len(buf)))
		rng.Read(buf[:n])
		sum.Write(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
		left -= n
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	p := filepath.Join(c.Media, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	c.sums[name] = hex.EncodeToString(sum.Sum(nil))
	return nil
}

// waitRegistered waits until the tracker has the file's info, with the
// SHA-256 the benchmark wrote.
func (c *cluster) waitRegistered(ctx context.Context, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	url := c.Tracker.URL + "/v1/files/" + fileinfo.EscapePath(name)
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			var fi fileinfo.Info
			ok := resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&fi) == nil
			resp.Body.Close()
			if ok && fi.SHA256 == c.sums[name] {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tracker never registered %s: %w", name, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// directURL is the origin's URL of a media file.
func (c *cluster) directURL(name string) string { return fileinfo.FileURL(c.Origin.URL, name) }

// streamURL is a proxy's URL of a media file.
func streamURL(p *proxyProc, name string) string {
	return p.url + "/stream/" + fileinfo.EscapePath(name)
}

// expected reads the bytes a range of a media file must hold.
func (c *cluster) expected(name string, off, n int64) ([]byte, error) {
	f, err := os.Open(filepath.Join(c.Media, filepath.FromSlash(name)))
	if err != nil {
		return nil, fmt.Errorf("expected bytes: %w", err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		return nil, fmt.Errorf("expected bytes of %s at %d: %w", name, off, err)
	}
	return b, nil
}
