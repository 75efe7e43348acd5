package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/p2sp/p2sp/internal/netlab"
	"github.com/p2sp/p2sp/proxy"
)

// options are the benchmark's flags.
type options struct {
	scenario   string
	n          int
	size       int64
	bitrate    float64 // bits per second
	duration   time.Duration
	join       time.Duration
	seeks      int
	seekPlay   time.Duration
	buffer     time.Duration
	originRate int64
	up, down   netlab.Shape
	prefix     string
	bin        string
	proxyArgs  []string
	timeout    time.Duration
	seed       uint64
	jsonOut    string
	perProxy   bool
	keep       bool
}

func main() {
	if len(os.Args) == 3 && os.Args[1] == "-player" {
		if err := runPlayer(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fleet:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("fleet", flag.ContinueOnError)
	fs.StringVar(&o.scenario, "scenario", "crowd", "crowd (all download at once), viewers (join every -join, play at -bitrate) or seek (viewers who jump -seeks times)")
	fs.IntVar(&o.n, "n", 5, "client namespaces, one proxy and one player each")
	size := fs.String("size", "100MB", "media file size")
	fs.Float64Var(&o.bitrate, "bitrate", 4e6, "viewers' playback rate, bits per second")
	fs.DurationVar(&o.duration, "duration", 120*time.Second, "how long each viewer watches (viewers)")
	fs.DurationVar(&o.join, "join", 2*time.Second, "time between two viewers joining (viewers, seek)")
	fs.IntVar(&o.seeks, "seeks", 4, "jumps to random offsets per viewer (seek)")
	fs.DurationVar(&o.seekPlay, "seek-play", 10*time.Second, "how long a viewer plays after each jump (seek)")
	fs.DurationVar(&o.buffer, "buffer", 5*time.Second, "how far ahead of its playback clock a viewer reads")
	fs.Int64Var(&o.originRate, "origin-rate", 12_500_000, "origin --rate-limit, bytes per second")
	up := fs.Int64("up", netlab.DefaultUp.Bits, "client uplink, bits per second (tbf)")
	down := fs.Int64("down", netlab.DefaultDown.Bits, "client downlink, bits per second (tbf)")
	fs.StringVar(&o.prefix, "prefix", "p2fleet", "name prefix of the lab's namespaces and links")
	fs.StringVar(&o.bin, "bin", "", "a built p2sp binary (default: go build ./cmd/p2sp)")
	proxyArgs := fs.String("proxy-args", "", "extra flags for every proxy, space-separated (e.g. \"--origin-copies 2\")")
	fs.DurationVar(&o.timeout, "timeout", 0, "deadline of the scenario once started (default: from the scenario)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the media bytes and the seek offsets")
	fs.StringVar(&o.jsonOut, "json", "", "also write the figures as JSON to this file")
	fs.BoolVar(&o.perProxy, "per-proxy", false, "also print one row per proxy")
	fs.BoolVar(&o.keep, "keep", false, "keep the work directory (logs, caches)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	o.proxyArgs = strings.Fields(*proxyArgs)
	var err error
	if o.size, err = proxy.ParseSize(*size); err != nil || o.size < 1 {
		return fmt.Errorf("-size: %v", err)
	}
	o.up, o.down = netlab.DefaultUp, netlab.DefaultDown
	o.up.Bits, o.down.Bits = *up, *down
	if o.n < 1 || o.originRate < 1 || o.up.Bits < 1 || o.down.Bits < 1 || o.bitrate <= 0 {
		return errors.New("-n, -origin-rate, -up, -down and -bitrate must be positive")
	}
	if _, _, err := o.plans(""); err != nil {
		return err
	}
	if err := netlab.Available(); err != nil {
		return err
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, nil)))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench(ctx, o)
	if res != nil {
		printReport(os.Stdout, o, res)
		if o.jsonOut != "" {
			b, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(o.jsonOut, b, 0o644); werr != nil {
				err = errors.Join(err, werr)
			}
		}
		if res.Identical != res.Segments {
			err = errors.Join(err, fmt.Errorf("%d of %d reads were not byte-identical to the source", res.Segments-res.Identical, res.Segments))
		}
	}
	return err
}

// plans returns each player's plan (URL filled in by the caller) and when
// it starts, relative to the first.
func (o options) plans(url string) ([]plan, []time.Duration, error) {
	rate := o.bitrate / 8
	watch := func(d time.Duration) int64 { return min(o.size, max(1, int64(rate*d.Seconds()))) }
	plans := make([]plan, o.n)
	joins := make([]time.Duration, o.n)
	for i := range plans {
		p := plan{URL: url, Buffer: o.buffer}
		switch o.scenario {
		case "crowd":
			p.Segments = []segment{{0, o.size}}
		case "viewers":
			joins[i] = time.Duration(i) * o.join
			p.Rate = rate
			p.Segments = []segment{{0, watch(o.duration)}}
		case "seek":
			joins[i] = time.Duration(i) * o.join
			p.Rate = rate
			l := watch(o.seekPlay)
			rng := rand.New(rand.NewPCG(o.seed, uint64(i)))
			p.Segments = []segment{{0, l}}
			for range o.seeks {
				p.Segments = append(p.Segments, segment{rng.Int64N(o.size - l + 1), l})
			}
		default:
			return nil, nil, fmt.Errorf("-scenario %q: want crowd, viewers or seek", o.scenario)
		}
		plans[i] = p
	}
	return plans, joins, nil
}

// deadline is how long the scenario may run once started: three times what
// the origin alone would need for everything, or the viewers' play time
// twice over, plus a minute.
func (o options) deadline() time.Duration {
	if o.timeout > 0 {
		return o.timeout
	}
	last := time.Duration(o.n-1) * o.join
	switch o.scenario {
	case "viewers":
		return last + 2*o.duration + time.Minute
	case "seek":
		return last + 2*time.Duration(o.seeks+1)*o.seekPlay + time.Minute
	}
	return 3*time.Duration(float64(o.n)*float64(o.size)/float64(o.originRate)*float64(time.Second)) + time.Minute
}

// bench builds the lab and the fleet, runs the scenario and measures it.
// Everything it created is gone when it returns.
func bench(ctx context.Context, o options) (*result, error) {
	dir, err := os.MkdirTemp("", "p2sp-fleet-")
	if err != nil {
		return nil, err
	}
	if o.keep {
		slog.Info("work directory kept", "dir", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	for _, d := range []string{"logs", "media", "cache"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if o.bin == "" {
		if o.bin, err = buildP2SP(ctx, dir); err != nil {
			return nil, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	data, sum, err := writeMedia(filepath.Join(dir, "media", mediaName), o.size, o.seed)
	if err != nil {
		return nil, err
	}
	slog.Info("building the lab", "clients", o.n, "prefix", o.prefix)
	lab, err := netlab.New(ctx, netlab.Config{Prefix: o.prefix, Clients: o.n, Up: o.up, Down: o.down})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := lab.Close(); err != nil {
			slog.Warn("lab teardown", "err", err)
		}
	}()
	f, err := startFleet(ctx, lab, fleetConfig{bin: o.bin, proxyArgs: o.proxyArgs, dir: dir, originRate: o.originRate, cacheSize: max(2*o.size, 64<<20)}, sum)
	if err != nil {
		return nil, err
	}
	slog.Info("fleet ready", "proxies", len(f.proxies))
	res, err := runScenario(ctx, o, f, self)
	if res != nil {
		res.verify(data)
	}
	return res, err
}

// buildP2SP builds ./cmd/p2sp of this module into dir.
func buildP2SP(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	bin := filepath.Join(dir, "p2sp")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/p2sp")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(out)))
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/p2sp: %w\n%s", err, out)
	}
	return bin, nil
}

// writeMedia writes size seeded pseudo-random bytes to path (before the
// origin starts, so it never hashes half a file) and returns them and
// their SHA-256.
func writeMedia(path string, size int64, seed uint64) ([]byte, string, error) {
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)}).Read(data)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return nil, "", err
	}
	s := sha256.Sum256(data)
	return data, hex.EncodeToString(s[:]), nil
}
