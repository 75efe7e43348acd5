package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// wanOneWay is the relays' delay in each direction: 50 ms round trip to
// the origin and to the tracker.
const wanOneWay = 25 * time.Millisecond

// wanCase is one row of the WAN table: a range through a fresh proxy
// whose origin and tracker are behind the relays, beside the same range
// straight from the origin's relay.
type wanCase struct {
	key, what string
	off, n    int64
	warm      int64 // the proxy fetches [0, warm) of the file first
	// before: the proxy fetches the first MiB of another file first, so
	// that it has talked to origin and tracker (the second cold file).
	before   bool
	loopback bool // no relays: the loopback first byte
	// targets: proxy/direct of the first byte, of the whole range; the
	// first byte's extra time on loopback.
	maxFirst, maxWhole float64
	maxExtra           time.Duration
}

var wanCases = []wanCase{
	{key: "wstart", what: "cold start: first 1 MiB", n: startLength, maxFirst: 1.1},
	{key: "wseek", what: "cold seek: 256 KiB at byte 24000000", off: seekOffset, n: seekLength, maxWhole: 1.2},
	{key: "wwarm", what: "warm seek: 256 KiB at byte 24000000, first 4 MiB fetched before", off: seekOffset, n: seekLength, warm: warmLength},
	{key: "wsecond", what: "second cold file: first 1 MiB, another file's first MiB fetched before", n: startLength, before: true, maxWhole: 1.0},
	{key: "lstart", what: "loopback (no relay) cold start: first 1 MiB", n: startLength, loopback: true, maxExtra: 3 * time.Millisecond},
}

// wanRow is one line of the WAN table: medians, and every measurement.
type wanRow struct {
	what, target, result    string
	proxyFirst, directFirst time.Duration
	proxyWhole, directWhole time.Duration
	// the reps' figures
	proxyFirsts, directFirsts, proxyWholes, directWholes []time.Duration
}

// runWAN is the -wan benchmark: the range rows through 50 ms relays, and
// the peer rows with CPU beside aria2c.
func (b *bench) runWAN(ctx context.Context, stdout io.Writer, peerSize int64) error {
	tp, err := startToxiproxy(ctx, b.opt.toxiproxy)
	if err != nil {
		return err
	}
	defer tp.stop()
	c, err := startCluster(ctx, filepath.Join(b.dir, "wan"), originRate, b.log)
	if err != nil {
		return err
	}
	defer c.Close()
	originRelay, oh, err := wanRelay(ctx, tp, "origin", c.Origin.URL)
	if err != nil {
		return err
	}
	defer oh.stop()
	trackerRelay, th, err := wanRelay(ctx, tp, "tracker", c.Tracker.URL)
	if err != nil {
		return err
	}
	defer th.stop()
	var names []string
	for _, wc := range wanCases {
		for i := 1; i <= reps; i++ {
			names = append(names, fileName(wc.key, "direct", i), fileName(wc.key, "proxy", i))
			if wc.before {
				names = append(names, fileName(wc.key, "before", i))
			}
		}
	}
	b.progress("wan: writing %d files of %s (origin capped at %d B/s, relays %s each way)", len(names), sizeLabel(mediaSize), originRate, wanOneWay)
	for _, n := range names {
		if err := c.writeMedia(ctx, n, mediaSize); err != nil {
			return err
		}
	}
	for _, n := range names {
		if err := c.waitRegistered(ctx, n, 2*time.Minute); err != nil {
			return err
		}
	}
	var rows []wanRow
	var errs []error
	for _, wc := range wanCases {
		r, err := b.wanRow(ctx, c, wc, originRelay, trackerRelay)
		if err != nil {
			b.progress("error: %v", err)
			errs = append(errs, fmt.Errorf("%s: %w", wc.what, err))
			continue
		}
		rows = append(rows, r)
	}
	c.Close()

	peers, err := b.peerTransfers(ctx, peerSize)
	if err != nil {
		errs = append(errs, err)
	}
	printWAN(stdout, rows, peers, peerSize)
	for _, err := range errs {
		fmt.Fprintf(stdout, "- Error: %v\n", err)
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// wanRelay puts upstream 50 ms away: toxiproxy delays its data by
// wanOneWay each way, and a handshake relay in front charges each new
// connection the round trip of its TCP handshake. It returns the base
// URL to use and the handshake relay, for the caller to stop.
func wanRelay(ctx context.Context, tp *toxiproxy, name, upstream string) (string, *handshakeRelay, error) {
	delayed, err := tp.relay(ctx, name, upstream, wanOneWay)
	if err != nil {
		return "", nil, err
	}
	h, base, err := startHandshakeRelay(ctx, delayed, 2*wanOneWay)
	if err != nil {
		return "", nil, err
	}
	return base, h, nil
}

func (b *bench) wanRow(ctx context.Context, c *cluster, wc wanCase, originURL, trackerURL string) (wanRow, error) {
	r := wanRow{what: wc.what}
	if wc.loopback {
		originURL, trackerURL = c.Origin.URL, c.Tracker.URL
	}
	for i := 1; i <= reps; i++ {
		dn, pn := fileName(wc.key, "direct", i), fileName(wc.key, "proxy", i)
		want, err := c.expected(dn, wc.off, wc.n)
		if err != nil {
			return r, err
		}
		d, err := timedRange(ctx, originURL+"/files/"+dn, wc.off, want)
		if err != nil {
			return r, err
		}
		if err := sleep(ctx, settleBetween); err != nil {
			return r, err
		}
		p, err := b.newProxyVia(ctx, c, trackerURL, originURL)
		if err != nil {
			return r, err
		}
		pd, err := b.wanProxyRange(ctx, c, p, pn, wc, i)
		b.stopProxy(p)
		if err != nil {
			return r, fmt.Errorf("%s: %w", p.name, err)
		}
		r.proxyFirsts, r.directFirsts = append(r.proxyFirsts, pd.first), append(r.directFirsts, d.first)
		r.proxyWholes, r.directWholes = append(r.proxyWholes, pd.whole), append(r.directWholes, d.whole)
		b.progress("%s #%d: proxy %s (first byte %s), direct %s (first byte %s)", wc.key, i, ms(pd.whole), ms(pd.first), ms(d.whole), ms(d.first))
		if err := sleep(ctx, settleBetween); err != nil {
			return r, err
		}
	}
	r.proxyFirst, r.directFirst = median(r.proxyFirsts), median(r.directFirsts)
	r.proxyWhole, r.directWhole = median(r.proxyWholes), median(r.directWholes)
	var targets []string
	ok := true
	if wc.maxFirst > 0 {
		targets = append(targets, fmt.Sprintf("first byte ≤ %.1fx", wc.maxFirst))
		ok = ok && ratio(r.proxyFirst, r.directFirst) <= wc.maxFirst
	}
	if wc.maxWhole > 0 {
		targets = append(targets, fmt.Sprintf("whole ≤ %.1fx", wc.maxWhole))
		ok = ok && ratio(r.proxyWhole, r.directWhole) <= wc.maxWhole
	}
	if wc.maxExtra > 0 {
		targets = append(targets, fmt.Sprintf("first byte ≤ direct + %s", wc.maxExtra))
		ok = ok && r.proxyFirst-r.directFirst <= wc.maxExtra
	}
	r.target, r.result = "—", "—"
	if len(targets) > 0 {
		r.target, r.result = strings.Join(targets, ", "), passFail(ok)
	}
	return r, nil
}

// wanProxyRange measures wc's range through p after the case's warm-up.
func (b *bench) wanProxyRange(ctx context.Context, c *cluster, p *proxyProc, name string, wc wanCase, i int) (rangeTiming, error) {
	warm := func(file string, n int64) error {
		head, err := c.expected(file, 0, n)
		if err != nil {
			return err
		}
		if _, err := timedRange(ctx, streamURL(p, file), 0, head); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		return nil
	}
	if wc.warm > 0 {
		if err := warm(name, wc.warm); err != nil {
			return rangeTiming{}, err
		}
	}
	if wc.before {
		if err := warm(fileName(wc.key, "before", i), startLength); err != nil {
			return rangeTiming{}, err
		}
		if err := sleep(ctx, settleBetween); err != nil {
			return rangeTiming{}, err
		}
	}
	want, err := c.expected(name, wc.off, wc.n)
	if err != nil {
		return rangeTiming{}, err
	}
	return timedRange(ctx, streamURL(p, name), wc.off, want)
}

func ratio(a, b time.Duration) float64 { return float64(a) / float64(b) }

// newProxyVia starts a proxy with a fresh cache that reaches the tracker
// and the origin at the URLs given (relays).
func (b *bench) newProxyVia(ctx context.Context, c *cluster, trackerURL, originURL string) (*proxyProc, error) {
	name := "proxy" + strconv.Itoa(len(b.proxies)+1)
	pk, err := c.IssuePasskey(ctx, name)
	if err != nil {
		return nil, err
	}
	p, err := startProxy(ctx, proxyConfig{
		bin: b.opt.p2sp, name: name, trackerURL: trackerURL, originURL: originURL,
		originKey: fileinfo.EncodeKey(c.OriginKey), passkey: pk,
		cacheDir: filepath.Join(b.dir, "proxies", name), log: b.stderr,
	})
	if err != nil {
		return nil, err
	}
	b.proxies = append(b.proxies, p)
	return p, nil
}

// transfer is one peer-to-peer transfer of the whole file on loopback.
type transfer struct {
	who                 string
	mbps                float64
	seederCPU, leechCPU time.Duration // CPU time of each side
	note                string
}

func (t transfer) perGB(d time.Duration, size int64) float64 {
	return d.Seconds() / (float64(size) / 1e9)
}

// peerTransfers moves the file from one complete proxy to a fresh one with
// the origin stopped, then from an aria2c seeder to an aria2c leecher, and
// measures both sides' CPU.
func (b *bench) peerTransfers(ctx context.Context, size int64) ([]transfer, error) {
	c, err := startCluster(ctx, filepath.Join(b.dir, "peers"), 0, b.log)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if err := c.writeMedia(ctx, peerName, size); err != nil {
		return nil, err
	}
	if err := c.waitRegistered(ctx, peerName, 2*time.Minute); err != nil {
		return nil, err
	}
	var out []transfer
	pt, err := b.proxyTransfer(ctx, c, size)
	if err != nil {
		return out, err
	}
	out = append(out, pt)
	at, err := b.aria2Transfer(ctx, c, size)
	if err != nil {
		return out, err
	}
	return append(out, at), nil
}

func (b *bench) proxyTransfer(ctx context.Context, c *cluster, size int64) (transfer, error) {
	a, err := b.newProxy(ctx, c)
	if err != nil {
		return transfer{}, err
	}
	defer b.stopProxy(a)
	if _, err := fetchWhole(ctx, streamURL(a, peerName), 0, 3*time.Minute); err != nil {
		return transfer{}, fmt.Errorf("filling %s: %w", a.name, err)
	}
	if err := waitComplete(ctx, a, peerName, time.Minute); err != nil {
		return transfer{}, err
	}
	if err := c.Origin.Stop(); err != nil {
		return transfer{}, err
	}
	defer c.Origin.Start(ctx)
	pb, err := b.newProxy(ctx, c)
	if err != nil {
		return transfer{}, err
	}
	defer b.stopProxy(pb)
	var stops []func() error
	if b.opt.perf != "" {
		for _, p := range []struct {
			proc *proxyProc
			name string
		}{{a, "seeder"}, {pb, "leecher"}} {
			stop, err := b.perfRecord(ctx, p.proc.cmd.Process.Pid, b.opt.perf, p.name)
			if err != nil {
				return transfer{}, err
			}
			defer stop()
			stops = append(stops, stop)
		}
	}
	a0, b0 := procCPU(a.cmd.Process.Pid), procCPU(pb.cmd.Process.Pid)
	b.progress("peers: %s fetches %s from %s", pb.name, sizeLabel(size), a.name)
	got, err := fetchWhole(ctx, streamURL(pb, peerName), 0, 3*time.Minute)
	if err != nil {
		return transfer{}, err
	}
	a1, b1 := procCPU(a.cmd.Process.Pid), procCPU(pb.cmd.Process.Pid)
	for _, stop := range stops {
		if err := stop(); err != nil {
			return transfer{}, err
		}
	}
	if got.sha256 != c.sums[peerName] {
		return transfer{}, fmt.Errorf("%s served other bytes", pb.name)
	}
	t := transfer{who: "p2sp proxy → proxy (leecher's HTTP reader included)", mbps: float64(got.bytes) / 1e6 / got.elapsed.Seconds(),
		seederCPU: a1 - a0, leechCPU: b1 - b0}
	b.progress("peers: proxies %.0f MB/s, seeder %s CPU, leecher %s CPU", t.mbps, t.seederCPU, t.leechCPU)
	return t, nil
}

// aria2Transfer seeds the same file with aria2c and downloads it with a
// second aria2c that finds the seeder through the tracker.
func (b *bench) aria2Transfer(ctx context.Context, c *cluster, size int64) (transfer, error) {
	bin, err := exec.LookPath("aria2c")
	if err != nil {
		return transfer{}, fmt.Errorf("aria2c: %w", err)
	}
	dir := filepath.Join(b.dir, "aria2")
	seedDir, leechDir := filepath.Join(dir, "seed"), filepath.Join(dir, "leech")
	for _, d := range []string{seedDir, leechDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return transfer{}, err
		}
	}
	torrent := filepath.Join(dir, "peer.torrent")
	pk, err := c.IssuePasskey(ctx, "aria2c")
	if err != nil {
		return transfer{}, err
	}
	if err := downloadTo(ctx, c.Tracker.URL+"/v1/torrents/"+peerName+"?passkey="+pk, torrent); err != nil {
		return transfer{}, err
	}
	if err := os.Link(filepath.Join(c.Media, peerName), filepath.Join(seedDir, peerName)); err != nil {
		return transfer{}, err
	}
	if err := c.Origin.Stop(); err != nil { // no web seed either
		return transfer{}, err
	}
	sctx, stopSeeder := context.WithCancel(ctx)
	defer stopSeeder()
	seedPort, err := freePort(ctx)
	if err != nil {
		return transfer{}, err
	}
	seeder := exec.CommandContext(sctx, bin, append(aria2Args(seedDir, seedPort), "--bt-seed-unverified=true", "--seed-ratio=0.0", torrent)...)
	seeder.Cancel = func() error { return seeder.Process.Signal(os.Interrupt) }
	seeder.WaitDelay = 5 * time.Second
	setDeathSignal(seeder)
	if err := seeder.Start(); err != nil {
		return transfer{}, err
	}
	seederDone := make(chan struct{})
	go func() { seeder.Wait(); close(seederDone) }()
	// Let the seeder announce before the leecher asks the tracker.
	if err := sleep(ctx, 2*time.Second); err != nil {
		return transfer{}, err
	}
	leechPort, err := freePort(ctx)
	if err != nil {
		return transfer{}, err
	}
	lctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	leecher := exec.CommandContext(lctx, bin, append(aria2Args(leechDir, leechPort), "--seed-time=0", torrent)...)
	setDeathSignal(leecher)
	s0 := procCPU(seeder.Process.Pid)
	b.progress("peers: aria2c leeches %s from aria2c", sizeLabel(size))
	start := time.Now()
	out, err := leecher.CombinedOutput()
	took := time.Since(start)
	s1 := procCPU(seeder.Process.Pid)
	stopSeeder()
	<-seederDone
	if err != nil {
		return transfer{}, fmt.Errorf("aria2c leecher: %w: %s", err, tail(out))
	}
	if fi, err := os.Stat(filepath.Join(leechDir, peerName)); err != nil || fi.Size() != size {
		return transfer{}, fmt.Errorf("aria2c leecher left no complete file: %v", err)
	}
	ps := leecher.ProcessState
	t := transfer{who: "aria2c → aria2c (wall clock of the leecher's run)", mbps: float64(size) / 1e6 / took.Seconds(),
		seederCPU: s1 - s0, leechCPU: ps.UserTime() + ps.SystemTime(),
		note: "aria2c's wall clock includes its start, tracker announce and exit"}
	b.progress("peers: aria2c %.0f MB/s, seeder %s CPU, leecher %s CPU", t.mbps, t.seederCPU, t.leechCPU)
	return t, nil
}

// aria2Args are the options of both aria2c runs: loopback only, peers only
// from the tracker, no integrity re-check of the download.
func aria2Args(dir string, port int) []string {
	return []string{
		"--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
		"--disable-ipv6=true", "--interface=127.0.0.1", "--listen-port=" + strconv.Itoa(port),
		"--dir=" + dir, "--file-allocation=none", "--allow-overwrite=true", "--auto-file-renaming=false",
		"--bt-tracker-connect-timeout=5", "--bt-tracker-timeout=5", "--summary-interval=0",
		"--console-log-level=warn", "--quiet=true",
	}
}

func tail(b []byte) string {
	if len(b) > 1000 {
		b = b[len(b)-1000:]
	}
	return string(b)
}

// downloadTo saves url's body as file.
func downloadTo(ctx context.Context, url, file string) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	defer f.Close()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := newClient().Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if _, err := io.Copy(f, io.LimitReader(resp.Body, 16<<20)); err != nil {
		return fmt.Errorf("GET %s: %w", url, err)
	}
	return f.Close()
}

// procCPU is a process's user and system CPU time so far, from
// /proc/PID/stat (in clock ticks of 1/100 s).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func printWAN(w io.Writer, rows []wanRow, peers []transfer, size int64) {
	fmt.Fprintf(w, "Origin and tracker behind toxiproxy relays (%s each way, 50 ms RTT; a new connection pays one more round trip for its TCP handshake, as on a real network), origin at 10 MB/s; direct = the same range from the origin's relay on a new connection; median of %d, a fresh proxy and file each.\n\n", wanOneWay, reps)
	fmt.Fprintln(w, "| measurement | proxy first byte | direct first byte | ratio | proxy whole | direct whole | ratio | target | result |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %.2fx | %s | %s | %.2fx | %s | %s |\n", r.what,
			ms(r.proxyFirst), ms(r.directFirst), ratio(r.proxyFirst, r.directFirst),
			ms(r.proxyWhole), ms(r.directWhole), ratio(r.proxyWhole, r.directWhole), r.target, r.result)
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		fmt.Fprintf(w, "- %s: proxy first byte %s, whole %s; direct first byte %s, whole %s.\n", r.what,
			msList(r.proxyFirsts), msList(r.proxyWholes), msList(r.directFirsts), msList(r.directWholes))
	}
	fmt.Fprintln(w)
	printPeers(w, peers, size)
}

// printPeers prints the table of peer transfers.
func printPeers(w io.Writer, peers []transfer, size int64) {
	fmt.Fprintf(w, "Peers on loopback, %s, origin stopped:\n\n", sizeLabel(size))
	fmt.Fprintln(w, "| transfer | MB/s | seeder CPU s/GB | leecher CPU s/GB | together | target | result |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---|---|")
	for i, t := range peers {
		s, l := t.perGB(t.seederCPU, size), t.perGB(t.leechCPU, size)
		target, result := "—", "—"
		if i == 0 {
			target = "≥ 300 MB/s, ≤ 4 s/GB together"
			result = passFail(t.mbps >= 300 && s+l <= 4)
		}
		fmt.Fprintf(w, "| %s | %.0f | %.2f | %.2f | %.2f | %s | %s |\n", t.who, t.mbps, s, l, s+l, target, result)
	}
	for _, t := range peers {
		if t.note != "" {
			fmt.Fprintf(w, "\n- %s.\n", t.note)
		}
	}
}
