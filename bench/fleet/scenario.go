package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/netlab"
)

// result is one run's raw measurements; report.go turns them into the
// table.
type result struct {
	Scenario string `json:"scenario"`
	N        int    `json:"n"`
	Size     int64  `json:"size"`
	// Players[i] is player i's segments as it saw them.
	Players [][]segmentResult `json:"players"`
	// Segments counts the reads asked for, Identical those that came
	// back whole and byte-identical to the source.
	Segments  int `json:"segments"`
	Identical int `json:"identical"`
	// OriginSent is the origin's egress during the scenario.
	OriginSent int64           `json:"origin_sent"`
	Proxies    []proxyFigures  `json:"proxies"`
	Wall       time.Duration   `json:"wall"`
	Errors     []string        `json:"errors,omitempty"`
	Ideal      time.Duration   `json:"ideal,omitempty"`
	Joins      []time.Duration `json:"joins"`
	// OriginRate is the origin's egress in bytes per second over each
	// originStep of the scenario: whether the origin's link was used
	// early, when the swarm had nothing to spread yet, or idled.
	OriginRate []float64 `json:"origin_rate,omitempty"`
}

// proxyFigures is what the benchmark measured of one proxy and its client
// namespace during the scenario.
type proxyFigures struct {
	Totals proxyTotals `json:"totals"`
	// Wire is the client's veth traffic, headers included.
	Wire    netlab.Counters `json:"wire"`
	CPU     time.Duration   `json:"cpu"`
	PeakRSS int64           `json:"peak_rss"`
	// MaxConns and MaxPeers are the most BitTorrent connections, and
	// distinct peers they went to, seen in any sample.
	MaxConns int `json:"max_conns"`
	MaxPeers int `json:"max_peers"`
	// ConnSamples counts samples that answered in time.
	ConnSamples int `json:"conn_samples"`
	SlowLogs    int `json:"slow_logs"`
}

// player is one running player process.
type player struct {
	proc   *netlab.Proc
	stdin  *os.File
	ready  chan error
	result chan []segmentResult
}

// runScenario starts every player (they connect only once told to go),
// lets them go at their join times, samples the proxies while they play,
// and collects the results, within the scenario's deadline.
func runScenario(ctx context.Context, o options, f *fleet, self string) (*result, error) {
	url := "http://" + proxyListen + "/stream/" + fileinfo.EscapePath(mediaName)
	plans, joins, err := o.plans(url)
	if err != nil {
		return nil, err
	}
	deadline := o.deadline()
	players := make([]*player, o.n)
	for i, c := range f.lab.Clients {
		plans[i].Limit = deadline - joins[i]
		if players[i], err = startPlayer(f, c, i, plans[i], self); err != nil {
			return nil, err
		}
	}
	for i, p := range players {
		if err := waitReady(ctx, p); err != nil {
			return nil, fmt.Errorf("player %d: %w", i+1, err)
		}
	}
	res := &result{Scenario: o.scenario, N: o.n, Size: o.size, Joins: joins, Proxies: make([]proxyFigures, o.n)}
	before, err := f.snapshot(ctx)
	if err != nil {
		return nil, err
	}
	slog.Info("scenario starts", "scenario", o.scenario, "deadline", deadline)
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, deadline+10*time.Second)
	defer cancel()
	for i, p := range players {
		go func() {
			select {
			case <-sctx.Done():
			case <-time.After(time.Until(start.Add(joins[i]))):
			}
			p.stdin.Write([]byte("go\n"))
			p.stdin.Close()
		}()
	}
	sampled := make(chan struct{})
	samplerCtx, stopSampler := context.WithCancel(sctx)
	go func() {
		defer close(sampled)
		var wg sync.WaitGroup
		wg.Go(func() { f.sampleConns(samplerCtx, res.Proxies) })
		wg.Go(func() { res.OriginRate = f.sampleOrigin(samplerCtx, before.originSent) })
		wg.Wait()
	}()
	res.Players = make([][]segmentResult, o.n)
	for i, p := range players {
		select {
		case r := <-p.result:
			res.Players[i] = r
		case <-sctx.Done():
			res.Errors = append(res.Errors, fmt.Sprintf("player %d: no result before the deadline", i+1))
		}
	}
	res.Wall = time.Since(start)
	stopSampler()
	<-sampled
	after, err := f.snapshot(ctx)
	if err != nil {
		return res, err
	}
	res.OriginSent = after.originSent - before.originSent
	for i := range res.Proxies {
		p := &res.Proxies[i]
		p.Wire = netlab.Counters{Received: after.wire[i].Received - before.wire[i].Received, Sent: after.wire[i].Sent - before.wire[i].Sent}
		p.CPU = after.usage[i].CPU - before.usage[i].CPU
		p.PeakRSS = after.usage[i].PeakRSS
		p.SlowLogs = f.slowLogLines(i)
		if p.Totals, err = f.proxyTotals(ctx, i); err != nil {
			res.Errors = append(res.Errors, err.Error())
		}
	}
	if o.scenario == "crowd" {
		res.Ideal = idealCrowd(o)
	}
	return res, nil
}

// startPlayer runs this binary in player mode inside client c.
func startPlayer(f *fleet, c netlab.Node, i int, pl plan, self string) (*player, error) {
	b, err := json.Marshal(pl)
	if err != nil {
		return nil, err
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(f.dir, "logs", "player-"+strconv.Itoa(i+1)+".log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	proc, err := f.lab.Start(c, netlab.Cmd{Args: []string{self, "-player", string(b)}, Stdin: inR, Stdout: outW, Stderr: log})
	// The child has its own ends now.
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, err
	}
	p := &player{proc: proc, stdin: inW, ready: make(chan error, 1), result: make(chan []segmentResult, 1)}
	go func() {
		defer outR.Close()
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 16<<20)
		if !sc.Scan() || sc.Text() != "ready" {
			p.ready <- fmt.Errorf("did not start: %q %v (see logs/player-%d.log)", sc.Text(), sc.Err(), i+1)
			return
		}
		p.ready <- nil
		if !sc.Scan() {
			return // no result: the deadline reports it
		}
		var r []segmentResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			r = []segmentResult{{Err: "result: " + err.Error()}}
		}
		p.result <- r
	}()
	return p, nil
}

func waitReady(ctx context.Context, p *player) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	select {
	case err := <-p.ready:
		return err
	case <-ctx.Done():
		return fmt.Errorf("not ready: %w", ctx.Err())
	}
}

// snapshot is the counters the scenario's figures are differences of.
type snapshot struct {
	originSent int64
	wire       []netlab.Counters
	usage      []netlab.Usage
}

func (f *fleet) snapshot(ctx context.Context) (snapshot, error) {
	var s snapshot
	var err error
	if s.originSent, err = f.originSent(ctx); err != nil {
		return s, err
	}
	for i, c := range f.lab.Clients {
		w, err := f.lab.Counters(c)
		if err != nil {
			return s, err
		}
		u, err := f.proxies[i].Usage()
		if err != nil {
			return s, err
		}
		s.wire, s.usage = append(s.wire, w), append(s.usage, u)
	}
	return s, nil
}

// sampleConns counts every proxy's BitTorrent connections every two
// seconds until ctx ends, all proxies at once, each sample bounded.
func (f *fleet) sampleConns(ctx context.Context, figs []proxyFigures) {
	var mu sync.Mutex
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		var wg sync.WaitGroup
		for i := range f.proxies {
			wg.Go(func() {
				conns, peers, err := f.btConns(ctx, i)
				if err != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				figs[i].ConnSamples++
				figs[i].MaxConns = max(figs[i].MaxConns, conns)
				figs[i].MaxPeers = max(figs[i].MaxPeers, peers)
			})
		}
		wg.Wait()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// originStep is the origin egress timeline's step.
const originStep = 5 * time.Second

// sampleOrigin returns the origin's egress rate over each originStep from
// sent (the counter at the start) until ctx ends.
func (f *fleet) sampleOrigin(ctx context.Context, sent int64) []float64 {
	var rates []float64
	t := time.NewTicker(originStep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return rates
		case <-t.C:
		}
		now, err := f.originSent(ctx)
		if err != nil {
			return rates
		}
		rates = append(rates, float64(now-sent)/originStep.Seconds())
		sent = now
	}
}

// verify checks every segment's bytes against the source.
func (r *result) verify(data []byte) {
	for i, segs := range r.Players {
		for _, s := range segs {
			r.Segments++
			if s.Err != "" {
				r.Errors = append(r.Errors, fmt.Sprintf("player %d at %d: %s", i+1, s.Offset, s.Err))
				continue
			}
			if s.Offset < 0 || s.Length < 0 || s.Offset+s.Length > int64(len(data)) {
				r.Errors = append(r.Errors, fmt.Sprintf("player %d: segment %d+%d outside the file", i+1, s.Offset, s.Length))
				continue
			}
			want := sha256.Sum256(data[s.Offset : s.Offset+s.Length])
			if s.Got == s.Length && s.SHA256 == hex.EncodeToString(want[:]) {
				r.Identical++
			} else {
				r.Errors = append(r.Errors, fmt.Sprintf("player %d at %d: %d bytes, SHA-256 %s, want %s", i+1, s.Offset, s.Got, s.SHA256, hex.EncodeToString(want[:])))
			}
		}
	}
	// A player that sent no result asked for segments all the same.
	for i, segs := range r.Players {
		if segs == nil {
			r.Segments++
			r.Errors = append(r.Errors, fmt.Sprintf("player %d: no result", i+1))
		}
	}
}
