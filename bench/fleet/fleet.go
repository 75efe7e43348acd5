package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/netlab"
	"github.com/p2sp/p2sp/tracker"
)

// fleet is the system running in a lab: tracker and origin in the server
// namespace, one proxy per client namespace.
type fleet struct {
	lab     *netlab.Lab
	dir     string
	tracker string // base URLs, reachable from the namespaces
	origin  string
	proxies []*netlab.Proc
}

const (
	trackerPort = 7070
	originPort  = 8080
	proxyListen = "127.0.0.1:8090"
	btPort      = 6881
	mediaName   = "fleet.bin"
)

// fleetConfig is what startFleet needs.
type fleetConfig struct {
	bin        string   // the built p2sp
	proxyArgs  []string // extra flags for every proxy
	dir        string   // logs, media, caches
	originRate int64    // bytes per second
	cacheSize  int64
}

// startFleet starts tracker and origin, waits until the origin has
// registered media (whose SHA-256 is sum), then starts every proxy and
// waits until all are ready.
func startFleet(ctx context.Context, lab *netlab.Lab, cfg fleetConfig, sum string) (*fleet, error) {
	tok := make([]byte, 24)
	rand.Read(tok)
	token := hex.EncodeToString(tok)
	env := []string{"P2SP_TOKEN=" + token}
	srv := lab.Server.Addr.String()
	f := &fleet{
		lab:     lab,
		dir:     cfg.dir,
		tracker: "http://" + srv + ":" + strconv.Itoa(trackerPort),
		origin:  "http://" + srv + ":" + strconv.Itoa(originPort),
	}
	if _, err := f.start(lab.Server, "tracker", env, cfg.bin, "tracker",
		"--listen", srv+":"+strconv.Itoa(trackerPort),
		"--data-dir", filepath.Join(cfg.dir, "tracker")); err != nil {
		return nil, err
	}
	if _, err := f.start(lab.Server, "origin", env, cfg.bin, "origin",
		"--media", filepath.Join(cfg.dir, "media"),
		"--listen", srv+":"+strconv.Itoa(originPort),
		"--tracker", f.tracker,
		"--rate-limit", strconv.FormatInt(cfg.originRate, 10),
		"--scan-interval", "500ms"); err != nil {
		return nil, err
	}
	if err := f.waitRegistered(ctx, sum); err != nil {
		return nil, err
	}
	for i, c := range lab.Clients {
		args := append([]string{"proxy",
			"--listen", proxyListen,
			"--tracker", f.tracker,
			"--origin", f.origin,
			"--cache-dir", filepath.Join(cfg.dir, "cache", c.Name),
			"--cache-size", strconv.FormatInt(cfg.cacheSize, 10),
			"--bt-listen", c.Addr.String() + ":" + strconv.Itoa(btPort)}, cfg.proxyArgs...)
		name := "proxy-" + strconv.Itoa(i+1)
		// Each proxy gets its own passkey, as the operator would issue it.
		pk, err := tracker.IssuePasskey(ctx, lab.Server.HTTPClient(5*time.Second), f.tracker, token, name)
		if err != nil {
			return nil, err
		}
		p, err := f.start(c, name, []string{"P2SP_PASSKEY=" + pk}, cfg.bin, args...)
		if err != nil {
			return nil, err
		}
		f.proxies = append(f.proxies, p)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(lab.Clients))
	for i, c := range lab.Clients {
		wg.Go(func() { errs[i] = waitOK(ctx, c, "http://"+proxyListen+"/readyz", f.proxies[i]) })
	}
	wg.Wait()
	return f, errors.Join(errs...)
}

// start runs `p2sp ROLE args...` in n, its output in a log file of name.
func (f *fleet) start(n netlab.Node, name string, env []string, bin string, args ...string) (*netlab.Proc, error) {
	log, err := os.Create(filepath.Join(f.dir, "logs", name+".log"))
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child holds its own descriptor
	return f.lab.Start(n, netlab.Cmd{
		Args:   append([]string{bin}, append(args, "--log-level", "warn")...),
		Env:    env,
		Stdout: log, Stderr: log,
	})
}

// waitRegistered polls the tracker until it has the media file's info
// with the SHA-256 the benchmark wrote.
func (f *fleet) waitRegistered(ctx context.Context, sum string) error {
	client := f.lab.Server.HTTPClient(5 * time.Second)
	url := f.tracker + "/v1/files/" + fileinfo.EscapePath(mediaName)
	return poll(ctx, 2*time.Minute, "the origin registering "+mediaName, func() (bool, error) {
		var fi fileinfo.Info
		return getJSON(ctx, client, url, &fi) == nil && fi.SHA256 == sum, nil
	})
}

// waitOK polls url from inside n until it answers 200, or p exits.
func waitOK(ctx context.Context, n netlab.Node, url string, p *netlab.Proc) error {
	client := n.HTTPClient(2 * time.Second)
	return poll(ctx, time.Minute, p.Name+" ready", func() (bool, error) {
		select {
		case <-p.Done():
			return false, fmt.Errorf("%s exited before it was ready: %v", p.Name, p.Err())
		default:
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, nil // not listening yet
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// poll calls try every 100 ms until it is done or fails, for at most
// limit.
func poll(ctx context.Context, limit time.Duration, what string, try func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		if done, err := try(); done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v)
}

// originSent reads p2sp_origin_sent_bytes_total from the origin's /metrics.
func (f *fleet) originSent(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.origin+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := f.lab.Server.HTTPClient(10 * time.Second).Do(req)
	if err != nil {
		return 0, fmt.Errorf("origin metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 16<<20))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "p2sp_origin_sent_bytes_total "); ok {
			x, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(x), err
		}
	}
	return 0, fmt.Errorf("origin metrics: no p2sp_origin_sent_bytes_total (%v)", sc.Err())
}

// proxyTotals is the "total" line of a proxy's /v1/status: bytes served
// to players by source, and what it fetched and uploaded.
type proxyTotals struct {
	PeerBytes     int64 `json:"peer_bytes"`
	OriginBytes   int64 `json:"origin_bytes"`
	CacheBytes    int64 `json:"cache_bytes"`
	OriginFetched int64 `json:"origin_fetched_bytes"`
	Uploaded      int64 `json:"uploaded_bytes"`
}

func (f *fleet) proxyTotals(ctx context.Context, i int) (proxyTotals, error) {
	var st struct {
		Total proxyTotals `json:"total"`
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := getJSON(ctx, f.lab.Clients[i].HTTPClient(10*time.Second), "http://"+proxyListen+"/v1/status", &st)
	return st.Total, err
}

// btConns counts a proxy's established BitTorrent connections (TCP to or
// from another client's address; the tracker and origin live on the
// server's) and the distinct peers they go to.
func (f *fleet) btConns(ctx context.Context, i int) (conns, peers int, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	socks, err := f.proxies[i].TCPConns(ctx)
	if err != nil {
		return 0, 0, err
	}
	distinct := map[string]bool{}
	for _, s := range socks {
		a := s.Remote.Addr()
		if !s.Established || a == f.lab.Server.Addr || a.IsLoopback() {
			continue
		}
		conns++
		distinct[a.String()] = true
	}
	return conns, len(distinct), nil
}

// slowLogLines counts the BitTorrent library's "took a long time" warnings
// in a proxy's log.
func (f *fleet) slowLogLines(i int) int {
	b, err := os.ReadFile(filepath.Join(f.dir, "logs", "proxy-"+strconv.Itoa(i+1)+".log"))
	if err != nil {
		return 0
	}
	return strings.Count(string(b), "took a long time")
}
