package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/origin"
)

// start runs a cluster for the test and stops it at the end.
func start(t *testing.T, cfg demo.Config) *demo.Cluster {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c, err := demo.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Logf("close cluster: %v", err)
		}
	})
	return c
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// writeMedia writes size random bytes as media file name and returns them.
func writeMedia(t *testing.T, c *demo.Cluster, name string, size int) []byte {
	t.Helper()
	return writeFile(t, c.Media, name, size)
}

// writeFile writes size random bytes as dir/name and returns them. It
// writes then renames, so that an origin never hashes a half-written file.
func writeFile(t *testing.T, dir, name string, size int) []byte {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	putFile(t, dir, name, data)
	return data
}

// putFile writes data as dir/name, in one rename.
func putFile(t *testing.T, dir, name string, data []byte) {
	t.Helper()
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(t.TempDir(), "tmp-"+filepath.Base(p))
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// waitInfo waits until the tracker has info for path whose SHA-256 is sum
// (any version when sum is empty).
func waitInfo(t *testing.T, c *demo.Cluster, path, sum string) *fileinfo.Info {
	t.Helper()
	return waitInfoAt(t, c.Tracker.URL, c.Token, path, sum)
}

// waitFirstScan waits for the origin's first scan of the media directory
// to have listed it (the catalog names the demo's sample), so that a file
// written after it is the origin's to hash only when it is reported or at
// the next scan.
func waitFirstScan(t *testing.T, c *demo.Cluster) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		var entries []origin.CatalogEntry
		resp, err := http.Get(c.Origin.URL + "/v1/catalog")
		if err == nil {
			err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&entries)
			resp.Body.Close()
		}
		if err == nil && slices.ContainsFunc(entries, func(e origin.CatalogEntry) bool { return e.Path == demo.SampleName }) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the origin's catalog never listed %s: %v", demo.SampleName, err)
		}
	}
}

// waitInfoAt is waitInfo on the tracker at trackerURL, as the operator
// (with its token: the answer lists the swarm's peers) or, with token "",
// as anyone.
func waitInfoAt(t *testing.T, trackerURL, token, path, sum string) *fileinfo.Info {
	t.Helper()
	return waitInfoWith(t, http.DefaultClient, trackerURL, token, path, sum)
}

// waitInfoWith is waitInfoAt asking with client.
func waitInfoWith(t *testing.T, client *http.Client, trackerURL, token, path, sum string) *fileinfo.Info {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if fi, err := trackerInfo(t, client, trackerURL, token, path); err == nil && (sum == "" || fi.SHA256 == sum) {
			return fi
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("tracker %s never registered %s", trackerURL, path)
	return nil
}

// trackerInfo asks the tracker at trackerURL for path's info, with token
// if not "".
func trackerInfo(t *testing.T, client *http.Client, trackerURL, token, path string) (*fileinfo.Info, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, trackerURL+"/v1/files/"+fileinfo.EscapePath(path), nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("tracker answered %s", resp.Status)
	}
	var fi fileinfo.Info
	if err := json.NewDecoder(resp.Body).Decode(&fi); err != nil {
		return nil, err
	}
	return &fi, nil
}

// get fetches url with an optional Range header.
func get(t *testing.T, url, rng string) (*http.Response, []byte, error) {
	t.Helper()
	return getWith(t, http.DefaultClient, url, rng)
}

// getWith is get with client.
func getWith(t *testing.T, client *http.Client, url, rng string) (*http.Response, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, body, err
}

// mustGet is get that fails the test on a transport error or a status
// other than want.
func mustGet(t *testing.T, url, rng string, want int) []byte {
	t.Helper()
	return mustGetWith(t, http.DefaultClient, url, rng, want)
}

// mustGetWith is mustGet with client.
func mustGetWith(t *testing.T, client *http.Client, url, rng string, want int) []byte {
	t.Helper()
	resp, body, err := getWith(t, client, url, rng)
	if err != nil {
		t.Fatalf("GET %s (%s): %v", url, rng, err)
	}
	if resp.StatusCode != want {
		t.Fatalf("GET %s (%s): %s, want %d: %s", url, rng, resp.Status, want, body)
	}
	return body
}

func streamURL(p *demo.Service, path string) string {
	return p.URL + "/stream/" + fileinfo.EscapePath(path)
}

// statusFile is one file's line of a proxy's /v1/status.
type statusFile struct {
	Path           string  `json:"path"`
	PeerBytes      int64   `json:"peer_bytes"`
	OriginBytes    int64   `json:"origin_bytes"`
	CacheBytes     int64   `json:"cache_bytes"`
	OriginFetched  int64   `json:"origin_fetched_bytes"`
	PiecesHeld     int     `json:"pieces_held"`
	PiecesTotal    int     `json:"pieces_total"`
	Complete       bool    `json:"complete"`
	OriginShare    float64 `json:"origin_share"`
	VerifyFailures int64   `json:"verification_failures"`
	UploadedBytes  int64   `json:"uploaded_bytes"`
	Peers          int     `json:"peers"`
	OriginRequests int     `json:"origin_requests"`
	Error          string  `json:"error"`
	RefusedInfo    string  `json:"refused_info"`
}

// statusStream is one live stream's line of a proxy's /v1/status.
type statusStream struct {
	Stream      string  `json:"stream"`
	Viewers     int     `json:"viewers"`
	Segments    int64   `json:"segments"`
	CacheBytes  int64   `json:"cache_bytes"`
	PeerBytes   int64   `json:"peer_bytes"`
	OriginBytes int64   `json:"origin_bytes"`
	EdgeDelay   float64 `json:"edge_delay_seconds"`
}

// proxyStatus is the part of /v1/status the tests read.
type proxyStatus struct {
	Files    []statusFile   `json:"files"`
	Streams  []statusStream `json:"streams"`
	Torrents int            `json:"torrents"`
	Cache    struct {
		Bytes    int64 `json:"bytes"`
		Capacity int64 `json:"capacity"`
		Entries  int   `json:"entries"`
	} `json:"cache"`
}

func status(t *testing.T, p *demo.Service) proxyStatus {
	t.Helper()
	return statusAt(t, p.URL)
}

// statusAt reads the /v1/status of the proxy at base.
func statusAt(t *testing.T, base string) proxyStatus {
	t.Helper()
	return statusWith(t, http.DefaultClient, base)
}

// statusWith is statusAt asking with client.
func statusWith(t *testing.T, client *http.Client, base string) proxyStatus {
	t.Helper()
	var st proxyStatus
	if err := json.Unmarshal(mustGetWith(t, client, base+"/v1/status", "", http.StatusOK), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// counter reads a counter's value (summed over its series) from a registry.
func counter(t *testing.T, s *demo.Service, name string) float64 {
	t.Helper()
	mfs, err := s.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			sum += metricValue(m)
		}
	}
	return sum
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

func mib(n float64) string { return fmt.Sprintf("%.1f MiB", n/(1<<20)) }
