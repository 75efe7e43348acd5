package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// rangeCase is one of rows 1-3: a range through a fresh proxy beside the
// same range straight from the origin.
type rangeCase struct {
	key  string // file name prefix
	what string
	off  int64
	n    int64
	// warm is how many bytes from the start the proxy fetches before the
	// measured range (0: none, a cold proxy).
	warm     int64
	maxRatio float64 // 0: no target
}

var rangeCases = []rangeCase{
	{key: "start", what: "cold start: first 1 MiB, origin at 10 MB/s", off: 0, n: startLength, maxRatio: maxRatio},
	{key: "seek", what: "cold seek: 256 KiB at byte 24000000", off: seekOffset, n: seekLength, maxRatio: maxRatio},
	{key: "warm", what: "warm seek: 256 KiB at byte 24000000, first 4 MiB fetched before", off: seekOffset, n: seekLength, warm: warmLength},
}

func fileName(key, side string, i int) string { return fmt.Sprintf("%s-%s-%d.bin", key, side, i) }

// rangeRows measures rows 1-3 on a cluster whose origin is capped at
// originRate. Every proxy measurement uses a fresh proxy and a file no proxy
// has seen; every file is registered with the tracker before any
// measurement starts.
func (b *bench) rangeRows(ctx context.Context) ([]row, []string, error) {
	rows := make([]row, len(rangeCases))
	for i, rc := range rangeCases {
		rows[i] = errorRow(rc.what + ", median of 3")
	}
	dir := filepath.Join(b.dir, "limited")
	c, err := startCluster(ctx, dir, originRate, b.log)
	if err != nil {
		return rows, nil, err
	}
	defer c.Close()
	var names []string
	for _, rc := range rangeCases {
		for i := 1; i <= reps; i++ {
			names = append(names, fileName(rc.key, "direct", i), fileName(rc.key, "proxy", i))
		}
	}
	b.progress("rows 1-3: writing %d files of %s (origin capped at %d B/s)", len(names), sizeLabel(mediaSize), originRate)
	for _, n := range names {
		if err := c.writeMedia(ctx, n, mediaSize); err != nil {
			return rows, nil, err
		}
	}
	for _, n := range names {
		if err := c.waitRegistered(ctx, n, 2*time.Minute); err != nil {
			return rows, nil, err
		}
	}
	b.progress("rows 1-3: all files registered")

	var details []string
	for i, rc := range rangeCases {
		r, d, err := b.rangeRow(ctx, c, rc)
		details = append(details, d...)
		if err != nil {
			return rows, details, fmt.Errorf("%s: %w", rc.what, err)
		}
		rows[i] = r
	}
	return rows, details, nil
}

func (b *bench) rangeRow(ctx context.Context, c *cluster, rc rangeCase) (row, []string, error) {
	var direct, proxied, proxiedFirst, directFirst, warmups []time.Duration
	var fetched []string
	for i := 1; i <= reps; i++ {
		dn, pn := fileName(rc.key, "direct", i), fileName(rc.key, "proxy", i)
		want, err := c.expected(dn, rc.off, rc.n)
		if err != nil {
			return row{}, nil, err
		}
		d, err := timedRange(ctx, c.directURL(dn), rc.off, want)
		if err != nil {
			return row{}, nil, err
		}
		direct, directFirst = append(direct, d.whole), append(directFirst, d.first)
		if err := sleep(ctx, settleBetween); err != nil {
			return row{}, nil, err
		}

		p, err := b.newProxy(ctx, c)
		if err != nil {
			return row{}, nil, err
		}
		pd, wd, err := b.proxyRange(ctx, c, p, pn, rc)
		if err == nil {
			// What the proxy had pulled from the origin by the time the
			// range was read shows what it competed with for the cap.
			if st, err := p.fileStatus(ctx, pn); err == nil {
				fetched = append(fetched, fmt.Sprintf("%.2f", float64(st.OriginFetched)/(1<<20)))
			}
		}
		b.stopProxy(p)
		if err != nil {
			return row{}, nil, fmt.Errorf("%s: %w", p.name, err)
		}
		proxied, proxiedFirst = append(proxied, pd.whole), append(proxiedFirst, pd.first)
		if rc.warm > 0 {
			warmups = append(warmups, wd)
		}
		b.progress("%s #%d: proxy %s (first byte %s), direct %s (first byte %s)",
			rc.key, i, ms(pd.whole), ms(pd.first), ms(d.whole), ms(d.first))
		if err := sleep(ctx, settleBetween); err != nil {
			return row{}, nil, err
		}
	}
	pm, dm := median(proxied), median(direct)
	ratio := float64(pm) / float64(dm)
	r := row{
		what: rc.what + ", median of 3", proxy: ms(pm), direct: ms(dm),
		ratio: fmt.Sprintf("%.2fx", ratio), target: "—", result: "—",
	}
	if rc.maxRatio > 0 {
		r.target = fmt.Sprintf("≤ %.1fx direct", rc.maxRatio)
		r.result = passFail(ratio <= rc.maxRatio)
	}
	d := []string{fmt.Sprintf("%s: proxy %s (first byte after %s); direct %s (first byte after %s); "+
		"the proxy had fetched %s MiB from the origin just after each.",
		rc.key, msList(proxied), msList(proxiedFirst), msList(direct), msList(directFirst), strings.Join(fetched, ", "))}
	if rc.warm > 0 {
		d = append(d, fmt.Sprintf("%s: the first %s through the proxy before each seek took %s.", rc.key, sizeLabel(rc.warm), msList(warmups)))
	}
	return r, d, nil
}

// proxyRange measures rc's range through p, after fetching rc.warm bytes
// from the start when the case is warm.
func (b *bench) proxyRange(ctx context.Context, c *cluster, p *proxyProc, name string, rc rangeCase) (rangeTiming, time.Duration, error) {
	var warmup time.Duration
	if rc.warm > 0 {
		head, err := c.expected(name, 0, rc.warm)
		if err != nil {
			return rangeTiming{}, 0, err
		}
		t, err := timedRange(ctx, streamURL(p, name), 0, head)
		if err != nil {
			return rangeTiming{}, 0, fmt.Errorf("warm-up: %w", err)
		}
		warmup = t.whole
	}
	want, err := c.expected(name, rc.off, rc.n)
	if err != nil {
		return rangeTiming{}, 0, err
	}
	measured, err := timedRange(ctx, streamURL(p, name), rc.off, want)
	return measured, warmup, err
}

const (
	peerName = "peer.bin"
	rssName  = "rss.bin"
)

func peerWhat(size int64) string {
	return fmt.Sprintf("peer throughput: %s from one complete peer, origin stopped", sizeLabel(size))
}

func rssWhat(size int64) string {
	return fmt.Sprintf("proxy peak RSS: %s to a 40 MB/s reader, origin unlimited", sizeLabel(size))
}

// unlimitedCluster starts the cluster of rows 4 and 5, with no cap on the
// origin, and writes and registers their files.
func (b *bench) unlimitedCluster(ctx context.Context, peerSize, rssSize int64) (*cluster, error) {
	c, err := startCluster(ctx, filepath.Join(b.dir, "unlimited"), 0, b.log)
	if err != nil {
		return nil, err
	}
	b.progress("rows 4-5: writing %s and %s", sizeLabel(peerSize), sizeLabel(rssSize))
	for _, f := range []struct {
		name string
		size int64
	}{{peerName, peerSize}, {rssName, rssSize}} {
		if err := c.writeMedia(ctx, f.name, f.size); err != nil {
			c.Close()
			return nil, err
		}
	}
	for _, n := range []string{peerName, rssName} {
		if err := c.waitRegistered(ctx, n, 2*time.Minute); err != nil {
			c.Close()
			return nil, err
		}
	}
	b.progress("rows 4-5: files registered")
	return c, nil
}

// peerRow fills proxy A with the whole file from the origin, stops the
// origin, and measures proxy B fetching the whole file from A alone.
func (b *bench) peerRow(ctx context.Context, c *cluster, size int64) (row, []string, error) {
	r := errorRow(peerWhat(size))
	a, err := b.newProxy(ctx, c)
	if err != nil {
		return r, nil, fmt.Errorf("peer row: %w", err)
	}
	defer b.stopProxy(a)
	b.progress("peer: %s fetches %s from the origin", a.name, sizeLabel(size))
	fill, err := fetchWhole(ctx, streamURL(a, peerName), 0, 3*time.Minute)
	if err != nil {
		return r, nil, fmt.Errorf("peer row, filling %s: %w", a.name, err)
	}
	if fill.sha256 != c.sums[peerName] || fill.bytes != size {
		return r, nil, fmt.Errorf("peer row: %s served %d bytes with SHA-256 %s, want %d bytes with %s", a.name, fill.bytes, fill.sha256, size, c.sums[peerName])
	}
	if err := waitComplete(ctx, a, peerName, time.Minute); err != nil {
		return r, nil, fmt.Errorf("peer row: %w", err)
	}
	b.progress("peer: %s complete (filled in %s); stopping the origin", a.name, fill.elapsed.Round(time.Millisecond))
	if err := c.Origin.Stop(); err != nil {
		return r, nil, fmt.Errorf("peer row: stop origin: %w", err)
	}

	pb, err := b.newProxy(ctx, c)
	if err != nil {
		return r, nil, fmt.Errorf("peer row: %w", err)
	}
	defer b.stopProxy(pb)
	b.progress("peer: %s fetches %s from %s", pb.name, sizeLabel(size), a.name)
	got, err := fetchWhole(ctx, streamURL(pb, peerName), 0, 3*time.Minute)
	if err != nil {
		return r, nil, fmt.Errorf("peer row, %s from %s with the origin stopped: %w", pb.name, a.name, err)
	}
	if got.sha256 != c.sums[peerName] || got.bytes != size {
		return r, nil, fmt.Errorf("peer row: %s served %d bytes with SHA-256 %s, want %d bytes with %s", pb.name, got.bytes, got.sha256, size, c.sums[peerName])
	}
	mbps := float64(got.bytes) / 1e6 / got.elapsed.Seconds()
	b.progress("peer: %.0f MB/s (%s)", mbps, got.elapsed.Round(time.Millisecond))
	r = row{
		what: peerWhat(size), proxy: fmt.Sprintf("%.0f MB/s", mbps), direct: "—", ratio: "—",
		target: fmt.Sprintf("≥ %.0f MB/s", minPeerMBps), result: passFail(mbps >= minPeerMBps),
	}
	d := []string{
		fmt.Sprintf("peer: proxy A filled from the unlimited origin in %s (%.0f MB/s); proxy B took %s from A, SHA-256 identical.",
			fill.elapsed.Round(time.Millisecond), float64(fill.bytes)/1e6/fill.elapsed.Seconds(), got.elapsed.Round(time.Millisecond)),
	}
	if st, err := pb.fileStatus(ctx, peerName); err == nil {
		d = append(d, fmt.Sprintf("peer: B's /v1/status: peer_bytes %d, origin_bytes %d, cache_bytes %d, pieces %d/%d.",
			st.PeerBytes, st.OriginBytes, st.CacheBytes, st.PiecesHeld, st.PiecesTotal))
	}
	return r, d, nil
}

// waitComplete waits until the proxy's status says it holds the whole
// file, verified.
func waitComplete(ctx context.Context, p *proxyProc, name string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last proxyFileStatus
	for {
		st, err := p.fileStatus(ctx, name)
		if err == nil && st.Complete {
			return nil
		}
		if err == nil {
			last = st
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never reported %s complete (last: %d/%d pieces, error %q): %w",
				p.name, name, last.PiecesHeld, last.PiecesTotal, last.Error, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// rssRow streams the whole file through a fresh proxy to a slow reader and
// records the proxy's memory: VmHWM at the end, and VmRSS sampled every
// 100 ms while it streams.
func (b *bench) rssRow(ctx context.Context, c *cluster, size int64) (row, []string, error) {
	r := errorRow(rssWhat(size))
	p, err := b.newProxy(ctx, c)
	if err != nil {
		return r, nil, fmt.Errorf("rss row: %w", err)
	}
	defer b.stopProxy(p)
	base, err := p.mem()
	if err != nil {
		return r, nil, fmt.Errorf("rss row: %w", err)
	}

	sctx, stopSampling := context.WithCancel(ctx)
	var (
		wg      sync.WaitGroup
		peak    procMem // the largest of each counter over the samples
		samples int
		lastErr error
	)
	wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-sctx.Done():
				return
			case <-t.C:
			}
			m, err := p.mem()
			if err != nil {
				lastErr = err
				continue
			}
			samples++
			peak.RSS, peak.HWM = max(peak.RSS, m.RSS), max(peak.HWM, m.HWM)
			peak.Anon, peak.File = max(peak.Anon, m.Anon), max(peak.File, m.File)
		}
	})
	b.progress("rss: %s streams %s to a %.0f MB/s reader", p.name, sizeLabel(size), readerRate/1e6)
	got, err := fetchWhole(ctx, streamURL(p, rssName), readerRate, 5*time.Minute)
	stopSampling()
	wg.Wait()
	if err != nil {
		return r, nil, fmt.Errorf("rss row: %w", err)
	}
	if got.sha256 != c.sums[rssName] || got.bytes != size {
		return r, nil, fmt.Errorf("rss row: %s served %d bytes with SHA-256 %s, want %d bytes with %s", p.name, got.bytes, got.sha256, size, c.sums[rssName])
	}
	end, err := p.mem()
	if err != nil {
		return r, nil, fmt.Errorf("rss row: %w", err)
	}
	if samples == 0 {
		return r, nil, fmt.Errorf("rss row: no memory sample: %v", lastErr)
	}
	hwm := float64(end.HWM) / 1e6
	b.progress("rss: VmHWM %.0f MB, sampled VmRSS peak %.0f MB", hwm, float64(peak.RSS)/1e6)
	r = row{
		what: rssWhat(size), proxy: fmt.Sprintf("%.0f MB", hwm), direct: "—", ratio: "—",
		target: fmt.Sprintf("< %.0f MB", maxRSSMB), result: passFail(hwm < maxRSSMB),
	}
	d := []string{fmt.Sprintf("rss: VmHWM %.1f MB at the end; VmRSS sampled every 100 ms (%d samples) peaked at %.1f MB "+
		"(RssAnon peak %.1f MB, RssFile peak %.1f MB); %.1f MB after start-up; the reader averaged %.1f MB/s, SHA-256 identical.",
		hwm, samples, float64(peak.RSS)/1e6, float64(peak.Anon)/1e6, float64(peak.File)/1e6, float64(base.RSS)/1e6,
		float64(got.bytes)/1e6/got.elapsed.Seconds())}
	return r, d, nil
}
