package origin

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/internal/httpclient"
	"github.com/p2sp/p2sp/metrics"
)

// Config configures an origin. The zero value of every field but Media and
// Token means "use the default".
type Config struct {
	// Media is the directory whose files the origin serves, or
	// "s3://BUCKET/PREFIX" for the objects below PREFIX in a bucket of
	// S3-compatible storage (reached as S3 says). Required.
	Media string
	// S3 says how to reach the storage of an s3:// Media.
	S3 S3Config
	// Listen is the TCP address Run listens on; default ":8080".
	Listen string
	// TrackerURL is the tracker's base URL, e.g. "http://tracker:7070";
	// "" serves the media without registering it anywhere.
	TrackerURL string
	// PublicURL is the base URL peers and proxies use to reach this
	// origin, written into registrations; "" means "http://" + the
	// listener's address.
	PublicURL string
	// Mirrors are the base URLs of other origins serving the same media,
	// written with PublicURL into each file's signed info (a .torrent's
	// url-list, BEP 19).
	Mirrors []string
	// RateLimit caps the total egress of file bytes, all requests
	// together, in bytes per second; 0 means unlimited.
	RateLimit int64
	// Token is the tracker's shared secret, sent as "Authorization:
	// Bearer <Token>" when registering. Required, at least
	// httpapi.MinTokenLen bytes once trimmed.
	Token string
	// DataDir keeps the users' credentials and lists (see AddUser); ""
	// turns the /v1/users API off. It also keeps the signing key
	// (KeyFileName) unless KeyFile names another place.
	DataDir string
	// KeyFile is the Ed25519 key (PKCS #8 PEM) the origin signs file info
	// with, created if missing; "" means DataDir/KeyFileName, and without a
	// data directory either, a key of this run only (proxies that pinned
	// the last one then refuse the new signatures).
	KeyFile string
	// ScanInterval is how often the media directory is walked for new,
	// changed and removed files; default 2s.
	ScanInterval time.Duration
	// Registry receives the origin's metrics; nil means a fresh
	// metrics.NewRegistry().
	Registry *prometheus.Registry
	// TLSCert and TLSKey are the PEM files of the certificate (chain) and
	// key the origin serves HTTPS with; both "" is plain HTTP.
	TLSCert, TLSKey string
	// CAFile holds the CA certificates (PEM) the tracker's certificate is
	// verified with when the origin makes its own HTTPClient; "" means the
	// system's roots.
	CAFile string
	// HTTPClient talks to the tracker; nil means a client with timeouts
	// that verifies certificates as CAFile says.
	HTTPClient *http.Client
	// Logger logs hashing and registration; nil means slog.Default().
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
		return c, fmt.Errorf("origin: %w", err)
	}
	c.Token = tok
	if c.Media == "" {
		return c, errors.New("origin: a media directory is required")
	}
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	c.Mirrors = slices.Clone(c.Mirrors)
	urls := []*string{&c.TrackerURL, &c.PublicURL}
	for i := range c.Mirrors {
		urls = append(urls, &c.Mirrors[i])
	}
	for _, u := range urls {
		if *u == "" {
			continue
		}
		pu, err := url.Parse(*u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return c, fmt.Errorf("origin: %q is not an http(s) base URL", *u)
		}
		*u = strings.TrimRight(*u, "/")
	}
	if c.RateLimit < 0 {
		return c, errors.New("origin: rate limit must not be negative")
	}
	if c.ScanInterval < 0 {
		return c, errors.New("origin: scan interval must not be negative")
	}
	if c.ScanInterval == 0 {
		c.ScanInterval = 2 * time.Second
	}
	if c.KeyFile == "" && c.DataDir != "" {
		c.KeyFile = filepath.Join(c.DataDir, KeyFileName)
	}
	if c.Registry == nil {
		c.Registry = metrics.NewRegistry()
	}
	if c.HTTPClient == nil {
		tc, err := httpclient.TLSConfig(c.CAFile)
		if err != nil {
			return c, fmt.Errorf("origin: %w", err)
		}
		t := httpclient.NewTransport(tc)
		t.Proxy = http.ProxyFromEnvironment
		// A registration of a large file's info takes the tracker a while.
		t.ResponseHeaderTimeout = 15 * time.Second
		c.HTTPClient = &http.Client{Timeout: 30 * time.Second, Transport: t}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
