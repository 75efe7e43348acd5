package proxy

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2sp/p2sp/internal/httpclient"
	"github.com/p2sp/p2sp/metrics"
)

// Config configures a proxy.
type Config struct {
	// Listen is the players' HTTP address; loopback unless told otherwise.
	Listen string
	// Trackers and Origins are base URLs ("http://host:port"), at least one
	// each. The proxy fetches media only from the origins, spread over those
	// that answer (a body goes on from another when its origin fails); it
	// announces to every tracker and asks them for file info in turn, the
	// first that answers.
	Trackers []string
	Origins  []string
	// OriginKeys are the Ed25519 keys of the origins whose signed file info
	// the proxy accepts. None means each configured origin's own, fetched
	// from it once and pinned in CacheDir (trust on first use).
	OriginKeys []ed25519.PublicKey
	// CacheDir holds the cache; CacheSize bounds it in bytes.
	CacheDir  string
	CacheSize int64
	// BTListen is the BitTorrent host:port; port 0 picks a free one.
	BTListen string
	// PeerGrace is how long the piece under a new playhead is left to the
	// connected peers that have it (or to peers still connecting) before
	// the origin is asked for it. Short: a peer's piece reaches the player
	// only whole and verified (128 KiB over a 10 Mbit/s uplink is 105 ms),
	// the origin's first bytes at once.
	PeerGrace time.Duration
	// StallTimeout bounds how long a read waits for a piece before the
	// request fails.
	StallTimeout time.Duration
	// Readahead is how many bytes past the playhead are fetched ahead.
	Readahead int64
	// OriginCopies is how many copies of a file the proxies in its swarm
	// together take from the origin for downloads (readers without a
	// deadline), beyond the pieces no connected peer has: each proxy takes
	// up to OriginCopies/(peers+1) of the file. Higher is faster and costs
	// more origin egress.
	OriginCopies float64
	// OriginUplinks is the origin's rate in proxies' uplinks: a small
	// swarm takes at least what keeps a crowd no slower than the origin
	// alone would serve it (see plan.Config). 0: 10; negative: ignore.
	OriginUplinks float64
	// User names the user whose favourites and recent plays the page
	// shows, and UserToken is that user's credential on the origin (see
	// origin.AddUser); the page relays list calls to the origin with it.
	// Both empty turns the lists off; the page still plays.
	User      string
	UserToken string
	// Passkey is this proxy's credential on the tracker, which lists only
	// peers that announced with a passkey it issued. Empty: the tracker
	// refuses the announces, and the proxy streams from the origin alone.
	Passkey string
	// Registry receives the proxy's metrics; nil makes a new one.
	Registry *prometheus.Registry
	// TLSCert and TLSKey are the PEM files of the certificate (chain) and
	// key the players' listener speaks HTTPS with; both "" is plain HTTP,
	// fine on loopback.
	TLSCert, TLSKey string
	// CAFile holds the CA certificates (PEM) the origin's and the tracker's
	// certificates are verified with when the proxy makes its own
	// HTTPClient; "" means the system's roots.
	CAFile string
	// HTTPClient talks to the origin and the tracker; nil makes one with
	// keep-alive connections and timeouts, verifying certificates as
	// CAFile says.
	HTTPClient *http.Client
	// Logger is the proxy's log; nil uses slog.Default().
	Logger *slog.Logger
}

// withDefaults fills unset fields and checks the rest.
func (c Config) withDefaults() (_ Config, err error) {
	if c.Listen == "" {
		c.Listen = "127.0.0.1:8090"
	}
	if c.BTListen == "" {
		c.BTListen = ":0"
	}
	if c.CacheDir == "" {
		return c, errors.New("proxy: a cache directory is required")
	}
	if c.CacheSize <= 0 {
		c.CacheSize = 1 << 30
	}
	if c.PeerGrace == 0 {
		c.PeerGrace = 50 * time.Millisecond
	}
	if c.StallTimeout == 0 {
		c.StallTimeout = 30 * time.Second
	}
	if c.Readahead == 0 {
		c.Readahead = 4 << 20
	}
	if c.OriginCopies == 0 {
		c.OriginCopies = 1.5
	}
	if c.OriginUplinks == 0 {
		c.OriginUplinks = 10
	}
	if c.OriginCopies < 0 {
		return c, fmt.Errorf("proxy: origin copies %v is negative", c.OriginCopies)
	}
	if c.Trackers, err = baseURLs("tracker", c.Trackers); err != nil {
		return c, err
	}
	if c.Origins, err = baseURLs("origin", c.Origins); err != nil {
		return c, err
	}
	if (c.User == "") != (c.UserToken == "") {
		return c, errors.New("proxy: a user and the user's token go together")
	}
	if c.Registry == nil {
		c.Registry = metrics.NewRegistry()
	}
	if c.HTTPClient == nil {
		tc, err := httpclient.TLSConfig(c.CAFile)
		if err != nil {
			return c, fmt.Errorf("proxy: %w", err)
		}
		// One transport for origin, tracker and announces, keep-alive: a
		// cold request reuses a warm connection instead of opening one.
		// Media is not worth compressing, and a gzip body would defeat
		// range checks.
		t := httpclient.NewTransport(tc)
		t.MaxIdleConns, t.MaxIdleConnsPerHost = 64, 16
		t.DisableCompression = true
		c.HTTPClient = &http.Client{Transport: t}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// baseURLs checks a list of http(s) base URLs, at least one, each once,
// and returns it without trailing slashes.
func baseURLs(name string, list []string) ([]string, error) {
	if len(list) == 0 {
		return nil, fmt.Errorf("proxy: no %s URL", name)
	}
	var out []string
	for _, u := range list {
		u = strings.TrimRight(strings.TrimSpace(u), "/")
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, fmt.Errorf("proxy: the %s URL %q is not an http(s) URL", name, u)
		}
		if slices.Contains(out, u) {
			return nil, fmt.Errorf("proxy: the %s URL %q is listed twice", name, u)
		}
		out = append(out, u)
	}
	return out, nil
}

// ParseSize reads a byte size such as "1GiB", "500MB", "64k" or "1048576".
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, ""
	if i >= 0 {
		num, unit = t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	}
	mult := map[string]float64{
		"": 1, "b": 1,
		"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
		"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
		"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
		"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
	}[unit]
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || mult == 0 || v < 0 || v*mult > 1<<62 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit (B, KB, KiB, MB, MiB, GB, GiB, TB, TiB)", s)
	}
	return int64(v * mult), nil
}
