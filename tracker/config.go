package tracker

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/metrics"
)

// Config configures a tracker. The zero value of every field but Token and
// DataDir means "use the default".
type Config struct {
	// Listen is the TCP address Run listens on; default ":7070".
	Listen string
	// DataDir holds registry.db, the embedded store. Required unless Store
	// names another.
	DataDir string
	// Store is where the registry and the swarms live: "" is the embedded
	// store (the registry in a bbolt file in DataDir, the swarms in this
	// process's memory); "redis://[:PASSWORD@]HOST:PORT/DB" keeps both in
	// Redis, shared by every tracker replica given the same URL.
	Store string
	// Token is the shared secret that registering files and reading
	// reports need, sent as "Authorization: Bearer <Token>". Required, at
	// least httpapi.MinTokenLen bytes once trimmed: a tracker anyone can
	// register files with would point proxies anywhere.
	Token string
	// PublicURL is the base URL written into a .torrent's announce key,
	// e.g. "http://tracker.example:7070"; "" derives it from each request's
	// Host header.
	PublicURL string
	// TLSCert and TLSKey are the PEM files of the certificate (chain) and
	// key the tracker serves HTTPS with; both "" is plain HTTP.
	TLSCert, TLSKey string
	// AnnounceList are the other trackers' base URLs (replicas, or trackers
	// the origins also register with), written with this one into a
	// .torrent's announce-list.
	AnnounceList []string
	// AnnounceInterval is the interval announce answers ask clients to
	// keep; default 30s.
	AnnounceInterval time.Duration
	// PeerTTL is how long a peer stays in a swarm without announcing;
	// default 3*AnnounceInterval.
	PeerTTL time.Duration
	// PeersPerAddr is how many peers of one source address a swarm lists;
	// default DefaultPeersPerAddr.
	PeersPerAddr int
	// Registry receives the tracker's metrics; nil means a fresh
	// metrics.NewRegistry().
	Registry *prometheus.Registry
	// Logger logs reports and failures; nil means slog.Default().
	Logger *slog.Logger
	// Timeouts bound idle connections, slow request headers and bodies,
	// and clients that stop reading; zero fields take httpapi's defaults,
	// which never cut a response that keeps moving.
	Timeouts httpapi.Timeouts
}

// withDefaults returns c with every default applied, or an error saying
// which field is wrong. It is the only place defaults live.
func (c Config) withDefaults() (Config, error) {
	tok, err := httpapi.CheckToken(c.Token)
	if err != nil {
		return c, fmt.Errorf("tracker: %w", err)
	}
	c.Token = tok
	if c.Store != "" && !isRedisURL(c.Store) {
		return c, fmt.Errorf("tracker: store %q is not a redis:// URL", c.Store)
	}
	if c.DataDir == "" && c.Store == "" {
		return c, errors.New("tracker: a data directory is required")
	}
	if c.Listen == "" {
		c.Listen = ":7070"
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("tracker: public URL %q is not an http(s) base URL", c.PublicURL)
		}
		c.PublicURL = strings.TrimRight(c.PublicURL, "/")
	}
	c.AnnounceList = slices.Clone(c.AnnounceList)
	for i, b := range c.AnnounceList {
		u, err := url.Parse(b)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("tracker: announce-list entry %q is not an http(s) base URL", b)
		}
		c.AnnounceList[i] = strings.TrimRight(b, "/")
	}
	if c.AnnounceInterval < 0 || c.PeerTTL < 0 {
		return c, errors.New("tracker: announce interval and peer TTL must not be negative")
	}
	if c.AnnounceInterval == 0 {
		c.AnnounceInterval = 30 * time.Second
	}
	if c.PeerTTL == 0 {
		c.PeerTTL = 3 * c.AnnounceInterval
	}
	if c.PeersPerAddr < 0 {
		return c, errors.New("tracker: peers per address must not be negative")
	}
	if c.PeersPerAddr == 0 {
		c.PeersPerAddr = DefaultPeersPerAddr
	}
	if c.Registry == nil {
		c.Registry = metrics.NewRegistry()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
