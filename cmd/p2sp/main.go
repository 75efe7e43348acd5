// Command p2sp runs one role of the p2sp system: the origin, the tracker,
// the proxy, or all of them together as a demo.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/origin"
	"github.com/p2sp/p2sp/proxy"
	"github.com/p2sp/p2sp/tracker"
)

const usage = `p2sp: peer-to-server-and-peer media delivery

Usage:
  p2sp demo      [flags]   tracker + origin + two proxies over sample media
  p2sp origin    [flags]   the media web server
  p2sp origin user add NAME --data-dir DIR
                           create a user (or renew its token); prints the token
  p2sp tracker   [flags]   the file-info server and BitTorrent tracker
  p2sp tracker passkey add|revoke NAME --tracker URL
                           issue a passkey (printed) or revoke every passkey of NAME
  p2sp proxy     [flags]   the localhost sidecar players talk to

Run 'p2sp COMMAND --help' for a command's flags. The origin and the tracker
read their shared secret from the P2SP_TOKEN environment variable (so does
'tracker passkey'). A proxy reads its user's token from --user-token-file or
P2SP_USER_TOKEN, and its passkey from --passkey-file or P2SP_PASSKEY.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "p2sp:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, usage)
		return nil
	}
	if args[0] == "origin" && len(args) > 1 && args[1] == "user" {
		return runUser(args[2:], stdout, stderr)
	}
	if args[0] == "tracker" && len(args) > 1 && args[1] == "passkey" {
		return runPasskey(args[2:], stdout, stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fs := flag.NewFlagSet("p2sp "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error")
	pprofAddr := fs.String("pprof", "", "loopback address to serve Go's profiles on, /debug/pprof/ (default: off)")
	var start func() error
	switch args[0] {
	case "origin":
		var cfg origin.Config
		fs.StringVar(&cfg.Media, "media", "", "directory of media to serve, or s3://BUCKET/PREFIX for S3-compatible storage (required)")
		fs.StringVar(&cfg.S3.Endpoint, "s3-endpoint", "", "S3-compatible storage's base URL, path-style (default: AWS_ENDPOINT_URL_S3, else AWS's own)")
		fs.StringVar(&cfg.S3.Region, "s3-region", "", "S3 region (default: AWS_REGION, else us-east-1); credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		fs.StringVar(&cfg.Listen, "listen", ":8080", "HTTP listen address")
		fs.StringVar(&cfg.TrackerURL, "tracker", "", "tracker base URL to register files with")
		fs.StringVar(&cfg.PublicURL, "public-url", "", "base URL proxies reach this origin at (default: http://LISTEN)")
		listVar(fs, &cfg.Mirrors, "mirror", "base URL of another origin serving the same media, listed with this one in file info and .torrent url-lists; comma-separated or repeated")
		fs.Int64Var(&cfg.RateLimit, "rate-limit", 0, "cap on total egress in bytes per second (0: none)")
		fs.DurationVar(&cfg.ScanInterval, "scan-interval", 2*time.Second, "how often the media is rescanned (object storage: listed)")
		fs.StringVar(&cfg.DataDir, "data-dir", "", "directory of the users' credentials and lists, and of the signing key (default: none, lists off)")
		fs.StringVar(&cfg.KeyFile, "key-file", "", "Ed25519 key (PKCS #8 PEM) file info is signed with, created if missing (default: DATA-DIR/"+origin.KeyFileName+")")
		tlsFlags(fs, &cfg.TLSCert, &cfg.TLSKey)
		caFlag(fs, &cfg.CAFile, "the tracker's")
		start = func() error { cfg.Token = os.Getenv("P2SP_TOKEN"); return origin.Run(ctx, cfg) }
	case "tracker":
		var cfg tracker.Config
		fs.StringVar(&cfg.Listen, "listen", ":7070", "HTTP listen address")
		fs.StringVar(&cfg.DataDir, "data-dir", "", "directory for the registry (required unless --store is Redis)")
		fs.StringVar(&cfg.Store, "store", "", "redis://HOST:PORT/DB: registry and swarms in Redis, shared by tracker replicas (default: bbolt in --data-dir)")
		fs.StringVar(&cfg.PublicURL, "public-url", "", "base URL written into .torrent files (default: from the request)")
		listVar(fs, &cfg.AnnounceList, "announce-list", "base URL of another tracker (replica) written with this one into .torrent announce-lists; comma-separated or repeated")
		fs.DurationVar(&cfg.AnnounceInterval, "announce-interval", 30*time.Second, "interval told to BitTorrent clients")
		tlsFlags(fs, &cfg.TLSCert, &cfg.TLSKey)
		fs.IntVar(&cfg.PeersPerAddr, "peers-per-addr", tracker.DefaultPeersPerAddr, "peers of one source address a swarm lists (users behind one NAT share it)")
		start = func() error { cfg.Token = os.Getenv("P2SP_TOKEN"); return tracker.Run(ctx, cfg) }
	case "proxy":
		var cfg proxy.Config
		var size string
		fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8090", "players' HTTP listen address (loopback by default)")
		var keys []string
		listVar(fs, &cfg.Trackers, "tracker", "tracker base URL (required); several: comma-separated or repeated, each announced to, asked for file info in turn")
		listVar(fs, &cfg.Origins, "origin", "origin base URL, the only ones media is fetched from (required); several: comma-separated or repeated, fetches spread over those that answer")
		listVar(fs, &keys, "origin-key", "public key (base64 or hex, from the origin's /v1/key) of an origin whose signed file info is trusted; several: comma-separated or repeated (default: each --origin's own, fetched once and pinned in the cache dir)")
		fs.StringVar(&cfg.CacheDir, "cache-dir", "", "cache directory (required)")
		fs.StringVar(&size, "cache-size", "1GiB", "cache size, e.g. 500MB, 1GiB")
		fs.StringVar(&cfg.BTListen, "bt-listen", ":0", "BitTorrent listen address (port 0: a free one)")
		fs.Float64Var(&cfg.OriginCopies, "origin-copies", 1.5, "copies of a file the proxies in its swarm together take from the origin for downloads, beyond what no peer has (higher: faster, more origin egress)")
		fs.Float64Var(&cfg.OriginUplinks, "origin-uplinks", 10, "the origin's rate in proxies' uplinks (100 Mbit/s against 10: 10): a swarm smaller than that takes enough origin copies to finish a crowd no later than the origin alone; negative: only --origin-copies")
		fs.DurationVar(&cfg.StallTimeout, "stall-timeout", 30*time.Second, "how long a player's read waits for a piece no source delivers before the response fails")
		fs.StringVar(&cfg.User, "user", "", "user whose favourites and recent plays the page keeps on the origin")
		tokenFile := fs.String("user-token-file", "", "file holding the user's token (default: $P2SP_USER_TOKEN)")
		tlsFlags(fs, &cfg.TLSCert, &cfg.TLSKey)
		caFlag(fs, &cfg.CAFile, "the origin's and the tracker's")
		passkeyFile := fs.String("passkey-file", "", "file holding the passkey the tracker issued ('p2sp tracker passkey add'; default: $P2SP_PASSKEY); without one the tracker refuses the proxy's announces and it streams from the origin alone")
		start = func() error {
			var err error
			if cfg.CacheSize, err = proxy.ParseSize(size); err != nil {
				return fmt.Errorf("--cache-size: %w", err)
			}
			for _, v := range keys {
				k, err := fileinfo.ParseKey(v)
				if err != nil {
					return fmt.Errorf("--origin-key: %w", err)
				}
				cfg.OriginKeys = append(cfg.OriginKeys, k)
			}
			if cfg.User != "" {
				if cfg.UserToken, err = secret("--user-token-file", *tokenFile, "P2SP_USER_TOKEN"); err != nil {
					return fmt.Errorf("--user needs the user's token: %w", err)
				}
			}
			if cfg.Passkey, err = secret("--passkey-file", *passkeyFile, "P2SP_PASSKEY"); errors.Is(err, errNoSecret) {
				slog.Warn("no passkey (--passkey-file or P2SP_PASSKEY): the tracker will refuse this proxy's announces, so it takes nothing from peers and gives nothing to them")
			} else if err != nil {
				return err
			}
			return proxy.Run(ctx, cfg)
		}
	case "demo":
		var cfg demo.Config
		fs.IntVar(&cfg.Proxies, "proxies", 2, "how many proxies to start")
		fs.Int64Var(&cfg.RateLimit, "rate-limit", 0, "origin egress cap in bytes per second (0: none)")
		fs.StringVar(&cfg.Media, "media", "", "media directory (default: the embedded sample)")
		start = func() error { return runDemo(ctx, cfg, stdout) }
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", args[0])
	}
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})))
	if *pprofAddr != "" {
		if err := servePprof(ctx, *pprofAddr); err != nil {
			return err
		}
	}
	return start()
}

// tlsFlags adds --tls-cert and --tls-key, a server's HTTPS certificate.
func tlsFlags(fs *flag.FlagSet, cert, key *string) {
	fs.StringVar(cert, "tls-cert", "", "certificate (chain) PEM file to serve HTTPS with, with --tls-key (default: plain HTTP)")
	fs.StringVar(key, "tls-key", "", "private key PEM file of --tls-cert")
}

// caFlag adds --ca-file, the CA certificates the certificates of whose
// servers are verified with.
func caFlag(fs *flag.FlagSet, file *string, whose string) {
	fs.StringVar(file, "ca-file", "", "CA certificates (PEM) "+whose+" HTTPS certificates are verified with (default: the system's roots)")
}

// runUser runs "p2sp origin user add NAME --data-dir DIR": it prints the
// new token on stdout, alone, so that a script can capture it.
// listVar defines a flag whose values, comma-separated or repeated, are
// appended to *p.
func listVar(fs *flag.FlagSet, p *[]string, name, usage string) {
	fs.Func(name, usage, func(list string) error {
		for v := range strings.SplitSeq(list, ",") {
			if v = strings.TrimSpace(v); v != "" {
				*p = append(*p, v)
			}
		}
		return nil
	})
}

func runUser(args []string, stdout, stderr io.Writer) error {
	const usage = "usage: p2sp origin user add NAME --data-dir DIR"
	if len(args) == 0 || args[0] != "add" {
		fmt.Fprintln(stderr, usage)
		return errors.New("unknown user command")
	}
	fs := flag.NewFlagSet("p2sp origin user add", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "the origin's data directory (required)")
	name, err := parseName(fs, args[1:], usage)
	if err != nil {
		return err
	}
	if name == "" || *dataDir == "" {
		return errors.New(usage)
	}
	token, err := origin.AddUser(*dataDir, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, token)
	fmt.Fprintf(stderr, "user %s: token above (shown once; only its hash is kept). Give it to the proxy with --user %s --user-token-file FILE or P2SP_USER_TOKEN.\n", name, name)
	return nil
}

// parseName parses a subcommand's arguments: one NAME, before or after
// fs's flags.
func parseName(fs *flag.FlagSet, args []string, usage string) (string, error) {
	var name string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if name == "" && fs.NArg() == 1 {
		name = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return "", fmt.Errorf("unexpected arguments %q; %s", fs.Args(), usage)
	}
	return name, nil
}

// errNoSecret: neither the file flag nor the environment variable gives
// the secret.
var errNoSecret = errors.New("no secret given")

// secret reads a secret from file (flag names the flag that gave it), or
// else from the environment variable env.
func secret(flag, file, env string) (string, error) {
	if file == "" {
		if t := strings.TrimSpace(os.Getenv(env)); t != "" {
			return t, nil
		}
		return "", fmt.Errorf("%w: %s FILE or %s", errNoSecret, flag, env)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flag, err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("%s: %s is empty", flag, file)
	}
	return t, nil
}

// runPasskey runs "p2sp tracker passkey add|revoke NAME --tracker URL"
// with the tracker's token from P2SP_TOKEN. add prints the new passkey on
// stdout, alone, so that a script can capture it.
func runPasskey(args []string, stdout, stderr io.Writer) error {
	const usage = "usage: p2sp tracker passkey add|revoke NAME --tracker URL (token in P2SP_TOKEN)"
	if len(args) == 0 || (args[0] != "add" && args[0] != "revoke") {
		fmt.Fprintln(stderr, usage)
		return errors.New("unknown passkey command")
	}
	cmd := args[0]
	fs := flag.NewFlagSet("p2sp tracker passkey "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	trackerURL := fs.String("tracker", "", "the tracker's base URL (required)")
	name, err := parseName(fs, args[1:], usage)
	if err != nil {
		return err
	}
	if name == "" || *trackerURL == "" {
		return errors.New(usage)
	}
	base := strings.TrimRight(*trackerURL, "/")
	token := strings.TrimSpace(os.Getenv("P2SP_TOKEN"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 30 * time.Second}
	if cmd == "revoke" {
		n, err := tracker.RevokePasskey(ctx, hc, base, token, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(stderr, "revoked %d passkey(s) of %s; their peers are dropped\n", n, name)
		return nil
	}
	pk, err := tracker.IssuePasskey(ctx, hc, base, token, name)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, pk)
	fmt.Fprintf(stderr, "passkey of %s above (shown once; only its hash is kept). A proxy: --passkey-file FILE or P2SP_PASSKEY. "+
		"aria2c, transmission: the .torrent from %s/v1/torrents/PATH?passkey=PASSKEY announces with it.\n", name, base)
	return nil
}

func runDemo(ctx context.Context, cfg demo.Config, stdout io.Writer) error {
	c, err := demo.Start(ctx, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(stdout, "\np2sp demo is running (Ctrl-C to stop)\n\n")
	fmt.Fprintf(stdout, "  tracker  %s/v1/files/%s\n", c.Tracker.URL, demo.SampleName)
	fmt.Fprintf(stdout, "  origin   %s/v1/catalog\n", c.Origin.URL)
	for _, p := range c.Proxies {
		fmt.Fprintf(stdout, "  %-8s %s/v1/status\n", p.Name, p.URL)
	}
	if len(c.Proxies) > 0 {
		fmt.Fprintf(stdout, "\nThe player page (user %q):\n\n  %s/\n", c.User, c.Proxies[0].URL)
		fmt.Fprintf(stdout, "\nOr open in any player:\n\n  %s/stream/%s\n\n", c.Proxies[0].URL, demo.SampleName)
	}
	pk, err := c.IssuePasskey(ctx, "bittorrent-client")
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "A .torrent for aria2c or transmission (its announce URL carries a passkey):\n\n  %s/v1/torrents/%s?passkey=%s\n\n",
		c.Tracker.URL, demo.SampleName, pk)
	<-ctx.Done()
	return nil
}
