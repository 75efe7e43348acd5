package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command line.
type options struct {
	p2sp  string
	quick bool
	// wan runs the WAN table instead: origin and tracker behind toxiproxy
	// relays, and peers beside aria2c.
	wan       bool
	toxiproxy string
	// peers runs only the peer transfers of the WAN table (proxy → proxy
	// beside aria2c), with no relays: the quick loop for the peer path.
	peers bool
	// peerMiB overrides the peer file's size.
	peerMiB int64
	// perf, when set, is a directory where `perf record` writes a profile
	// of the seeding and of the leeching proxy during the proxy → proxy
	// transfer.
	perf string
}

// Sizes and targets of the benchmark (issue 5).
const (
	originRate    = 10_000_000 // origin egress cap for rows 1-3, bytes per second
	mediaSize     = 32 << 20   // each file of rows 1-3
	reps          = 3          // rows 1-3 report the median of this many
	seekOffset    = 24_000_000
	seekLength    = 256 << 10
	startLength   = 1 << 20
	warmLength    = 4 << 20
	readerRate    = 40e6 // the slow reader of row 5, bytes per second
	maxRatio      = 1.5  // proxy/direct for cold start and cold seek
	minPeerMBps   = 150.0
	maxRSSMB      = 150.0
	settleBetween = 300 * time.Millisecond // lets the origin's limiter and sockets drain between measurements
)

func main() {
	var o options
	flag.StringVar(&o.p2sp, "p2sp", "", "path of the built p2sp binary (required; bench/stream.sh builds it)")
	flag.BoolVar(&o.quick, "quick", false, "smaller files (32 MiB peer file, 128 MiB RSS file) for a fast check")
	flag.BoolVar(&o.wan, "wan", false, "the WAN table: origin and tracker 50 ms away behind toxiproxy, peers beside aria2c")
	flag.BoolVar(&o.peers, "peers", false, "only the peer transfers (proxy → proxy beside aria2c on loopback), no relays")
	flag.Int64Var(&o.peerMiB, "peer-mib", 0, "size of the peer file in MiB (default 256, 32 with -quick)")
	flag.StringVar(&o.perf, "perf", "", "directory for `perf record` profiles of the seeding and leeching proxies during the proxy → proxy transfer")
	flag.StringVar(&o.toxiproxy, "toxiproxy", defaultToxiproxy(), "toxiproxy's server binary (go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.5.0)")
	flag.Parse()
	if o.p2sp == "" {
		fmt.Fprintln(os.Stderr, "stream: -p2sp is required (run bench/stream.sh)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(1)
	}
}

// bench is one run: where it keeps its files and the proxies it started.
type bench struct {
	opt     options
	dir     string
	stderr  io.Writer
	log     *slog.Logger
	start   time.Time
	proxies []*proxyProc
}

// row is one line of the table.
type row struct {
	what, proxy, direct, ratio, target, result string
}

func run(ctx context.Context, o options, stdout, stderr io.Writer) error {
	bin, err := filepath.Abs(o.p2sp)
	if err != nil {
		return err
	}
	if _, err := os.Stat(bin); err != nil {
		return fmt.Errorf("-p2sp: %w", err)
	}
	o.p2sp = bin
	dir, err := os.MkdirTemp("", "p2sp-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{
		opt: o, dir: dir, stderr: stderr, start: time.Now(),
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	// Whatever happens, no proxy outlives the benchmark.
	defer b.stopProxies()

	peerSize, rssSize := int64(256<<20), int64(1<<30)
	if o.quick {
		peerSize, rssSize = 32<<20, 128<<20
	}
	if o.peerMiB > 0 {
		peerSize = o.peerMiB << 20
	}
	if o.peers {
		peers, err := b.peerTransfers(ctx, peerSize)
		printPeers(stdout, peers, peerSize)
		b.progress("done in %s", time.Since(b.start).Round(100*time.Millisecond))
		fmt.Fprintf(stdout, "- Run: -peers, %s, %d CPUs, %s/%s, took %s. MB = 10^6 bytes.\n",
			runtime.Version(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, time.Since(b.start).Round(100*time.Millisecond))
		return err
	}
	if o.wan {
		err := b.runWAN(ctx, stdout, peerSize)
		b.progress("done in %s", time.Since(b.start).Round(100*time.Millisecond))
		fmt.Fprintf(stdout, "- Run: -wan, %s, %d CPUs, %s/%s, took %s. MB = 10^6 bytes.\n",
			runtime.Version(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, time.Since(b.start).Round(100*time.Millisecond))
		return err
	}
	var (
		rows    []row
		details []string
		errs    []error
	)
	add := func(r []row, d []string, err error) {
		rows, details = append(rows, r...), append(details, d...)
		if err != nil {
			b.progress("error: %v", err)
			errs = append(errs, err)
		}
	}
	add(b.rangeRows(ctx))
	// Row 5 runs before row 4 because row 4 stops its origin.
	unlimited, err := b.unlimitedCluster(ctx, peerSize, rssSize)
	if err != nil {
		add([]row{errorRow(peerWhat(peerSize)), errorRow(rssWhat(rssSize))}, nil, err)
	} else {
		defer unlimited.Close()
		rssRow, rssDetails, rssErr := b.rssRow(ctx, unlimited, rssSize)
		peerRow, peerDetails, peerErr := b.peerRow(ctx, unlimited, peerSize)
		add([]row{peerRow}, peerDetails, peerErr)
		add([]row{rssRow}, rssDetails, rssErr)
	}

	took := time.Since(b.start).Round(100 * time.Millisecond)
	b.progress("done in %s", took)
	printTable(stdout, rows)
	fmt.Fprintln(stdout)
	for _, d := range details {
		fmt.Fprintf(stdout, "- %s\n", d)
	}
	mode := "full"
	if o.quick {
		mode = "-quick"
	}
	fmt.Fprintf(stdout, "- Run: %s, %s, %d CPUs, %s/%s, took %s. MB = 10^6 bytes.\n",
		mode, runtime.Version(), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, took)
	for _, err := range errs {
		fmt.Fprintf(stdout, "- Error: %v\n", err)
	}
	return errors.Join(errs...)
}

// defaultToxiproxy is where `go install` puts toxiproxy's server.
func defaultToxiproxy() string {
	if p, err := exec.LookPath("toxiproxy-server"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	return filepath.Join(gopath, "bin", "server")
}

// progress prints a line to stderr with the time since the start.
func (b *bench) progress(format string, args ...any) {
	fmt.Fprintf(b.stderr, "[%6.1fs] %s\n", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// newProxy starts a proxy with a fresh, empty cache directory.
func (b *bench) newProxy(ctx context.Context, c *cluster) (*proxyProc, error) {
	return b.newProxyVia(ctx, c, c.Tracker.URL, c.Origin.URL)
}

// stopProxy stops a proxy and removes its cache, reporting (not failing
// on) an unclean exit.
func (b *bench) stopProxy(p *proxyProc) {
	if ok, err := p.exited(); ok {
		b.progress("%s had exited on its own: %v", p.name, err)
	}
	if err := p.stop(); err != nil {
		b.progress("stop %s: %v", p.name, err)
	}
	os.RemoveAll(filepath.Join(b.dir, "proxies", p.name))
}

func (b *bench) stopProxies() {
	for _, p := range b.proxies {
		if err := p.stop(); err != nil {
			b.progress("stop %s: %v", p.name, err)
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

func errorRow(what string) row {
	return row{what: what, proxy: "error", direct: "—", ratio: "—", target: "—", result: "error"}
}

func printTable(w io.Writer, rows []row) {
	fmt.Fprintln(w, "| measurement | proxy | direct from origin | proxy/direct | target | result |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---|")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s |\n", strings.Join([]string{r.what, r.proxy, r.direct, r.ratio, r.target, r.result}, " | "))
	}
}

// ms formats a duration in milliseconds.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	if v < 100 {
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.0f ms", v)
}

func msList(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 1, 64)
	}
	return strings.Join(s, ", ") + " ms"
}

func passFail(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

func sizeLabel(n int64) string {
	if n >= 1<<30 && n%(1<<30) == 0 {
		return strconv.FormatInt(n>>30, 10) + " GiB"
	}
	return strconv.FormatInt(n>>20, 10) + " MiB"
}
