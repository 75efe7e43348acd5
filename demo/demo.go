package demo

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/p2sp/p2sp/internal/httpclient"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/metrics"
	"github.com/p2sp/p2sp/origin"
	"github.com/p2sp/p2sp/proxy"
	"github.com/p2sp/p2sp/tracker"
)

// SampleName is the sample video's path on the demo origin.
const SampleName = "sample.mp4"

// ToneName is the sample audio's path on the demo origin: a tone made at
// start (see tone.go).
const ToneName = "tone.wav"

// UserName is the demo's user, whose favourites and recent plays the
// proxies' pages keep on the origin.
const UserName = "demo"

//go:embed media/sample.mp4
var sampleMP4 []byte

// Config says what to run.
type Config struct {
	// Dir holds media, the tracker's data and the proxies' caches; "" makes
	// a temporary one that Close removes.
	Dir string
	// Media is the media directory, or s3://BUCKET/PREFIX on the storage
	// S3 names; "" writes the sample media into Dir.
	Media string
	// S3 is how the origin reaches an s3:// Media.
	S3 origin.S3Config
	// Proxies is how many proxies to start.
	Proxies int
	// RateLimit caps the origin's egress in bytes per second (0: none).
	RateLimit int64
	// CacheSize is each proxy's cache size (0: 1 GiB).
	CacheSize int64
	// AnnounceInterval is the tracker's (0: its default).
	AnnounceInterval time.Duration
	// PeersPerAddr is the tracker's cap on one address's peers in a swarm
	// (0: its default).
	PeersPerAddr int
	// ScanInterval is the origin's media scan period (0: its default).
	ScanInterval time.Duration
	// Timeouts are the tracker's and the origin's (zero: their defaults).
	Timeouts httpapi.Timeouts
	// TLS, if set, has the tracker, the origin and the proxies' players'
	// listeners speak HTTPS, and every client verify them.
	TLS    *TLS
	Logger *slog.Logger
}

// TLS is the demo's HTTPS: one certificate for every service (naming the
// address they listen on, 127.0.0.1) and the CA that issued it.
type TLS struct {
	CertFile, KeyFile string
	// CAFile is the CA's certificate (PEM) every client verifies with.
	CAFile string
}

// Cluster is a running system.
type Cluster struct {
	Token string
	// User and UserToken are the demo user's name and credential, given
	// to every proxy.
	User      string
	UserToken string
	// OriginData is the origin's data directory (users and their lists,
	// its signing key).
	OriginData string
	// OriginKey is the key the origin signs file info with; every proxy
	// is configured with it.
	OriginKey ed25519.PublicKey
	Dir       string
	Media     string
	Tracker   *Service
	Origin    *Service
	Proxies   []*Service
	tls       *TLS
	tempDir   bool
}

// Service is one running component.
type Service struct {
	Name string
	// URL is the service's base URL; it keeps its address across restarts.
	URL string
	// Registry holds the component's metrics (renewed on restart).
	Registry *prometheus.Registry
	// Proxy and Passkey (its credential on the tracker) are set for
	// proxies.
	Proxy   *proxy.Server
	Passkey string

	addr  string
	https bool
	start func(ctx context.Context, s *Service, ln net.Listener) (stop func() error, err error)
	mu    sync.Mutex
	stop  func() error
}

// Start runs a tracker, an origin and cfg.Proxies proxies.
func Start(ctx context.Context, cfg Config) (_ *Cluster, err error) {
	c := &Cluster{Dir: cfg.Dir, Media: cfg.Media, tls: cfg.TLS}
	if c.Dir == "" {
		if c.Dir, err = os.MkdirTemp("", "p2sp-demo-"); err != nil {
			return nil, fmt.Errorf("demo dir: %w", err)
		}
		c.tempDir = true
	}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	if c.Media == "" {
		c.Media = filepath.Join(c.Dir, "media")
		if err := os.MkdirAll(c.Media, 0o755); err != nil {
			return nil, fmt.Errorf("demo media: %w", err)
		}
		if err := os.WriteFile(filepath.Join(c.Media, SampleName), sampleMP4, 0o644); err != nil {
			return nil, fmt.Errorf("demo media: %w", err)
		}
		if err := os.WriteFile(filepath.Join(c.Media, ToneName), toneWAV(8*time.Second, 440), 0o644); err != nil {
			return nil, fmt.Errorf("demo media: %w", err)
		}
	}
	c.OriginData = filepath.Join(c.Dir, "origin")
	c.User = UserName
	if c.UserToken, err = origin.AddUser(c.OriginData, c.User); err != nil {
		return nil, err
	}
	// The origin finds the same key in its data directory.
	key, err := origin.LoadOrCreateKey(filepath.Join(c.OriginData, origin.KeyFileName))
	if err != nil {
		return nil, err
	}
	c.OriginKey = key.Public().(ed25519.PublicKey)
	tok := make([]byte, 16)
	rand.Read(tok)
	c.Token = hex.EncodeToString(tok)
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}

	tlsFiles := c.tlsFiles()
	c.Tracker = &Service{Name: "tracker", https: c.tls != nil, start: func(ctx context.Context, s *Service, ln net.Listener) (func() error, error) {
		tr, err := tracker.New(ctx, tracker.Config{
			DataDir: filepath.Join(c.Dir, "tracker"), Token: c.Token, PublicURL: s.URL,
			AnnounceInterval: cfg.AnnounceInterval, PeersPerAddr: cfg.PeersPerAddr, Registry: s.Registry, Logger: log.With("component", "tracker"),
			Timeouts: cfg.Timeouts, TLSCert: tlsFiles.CertFile, TLSKey: tlsFiles.KeyFile,
		})
		if err != nil {
			return nil, err
		}
		return serve(ctx, ln, tr.Serve, tr.Close), nil
	}}
	if err := c.Tracker.Start(ctx); err != nil {
		return nil, err
	}
	c.Origin = &Service{Name: "origin", https: c.tls != nil, start: func(ctx context.Context, s *Service, ln net.Listener) (func() error, error) {
		o, err := origin.New(origin.Config{
			Media: c.Media, S3: cfg.S3, DataDir: c.OriginData, TrackerURL: c.Tracker.URL, PublicURL: s.URL, Token: c.Token,
			RateLimit: cfg.RateLimit, ScanInterval: cfg.ScanInterval, Registry: s.Registry,
			Logger: log.With("component", "origin"), Timeouts: cfg.Timeouts,
			TLSCert: tlsFiles.CertFile, TLSKey: tlsFiles.KeyFile, CAFile: tlsFiles.CAFile,
		})
		if err != nil {
			return nil, err
		}
		return serve(ctx, ln, o.Serve, o.Close), nil
	}}
	if err := c.Origin.Start(ctx); err != nil {
		return nil, err
	}
	for i := range cfg.Proxies {
		if _, err := c.AddProxy(ctx, cfg.CacheSize, log.With("component", "proxy"+strconv.Itoa(i+1))); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// IssuePasskey has the tracker issue a passkey named name, as its operator
// would ("p2sp tracker passkey add").
func (c *Cluster) IssuePasskey(ctx context.Context, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	client := http.DefaultClient
	if c.tls != nil {
		// The tracker speaks HTTPS with the cluster's certificate.
		tc, err := httpclient.TLSConfig(c.tls.CAFile)
		if err != nil {
			return "", fmt.Errorf("issue passkey %s: %w", name, err)
		}
		tr := httpclient.NewTransport(tc)
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	return tracker.IssuePasskey(ctx, client, c.Tracker.URL, c.Token, name)
}

// AddProxy starts one more proxy with its own cache directory and its own
// passkey (named after it).
func (c *Cluster) AddProxy(ctx context.Context, cacheSize int64, log *slog.Logger) (*Service, error) {
	name := "proxy" + strconv.Itoa(len(c.Proxies)+1)
	cacheDir := filepath.Join(c.Dir, name)
	btAddr := "127.0.0.1:0"
	passkey, err := c.IssuePasskey(ctx, name)
	if err != nil {
		return nil, err
	}
	tlsFiles := c.tlsFiles()
	s := &Service{Name: name, Passkey: passkey, https: c.tls != nil, start: func(ctx context.Context, s *Service, ln net.Listener) (func() error, error) {
		p, err := proxy.New(proxy.Config{
			Trackers: []string{c.Tracker.URL}, Origins: []string{c.Origin.URL}, OriginKeys: []ed25519.PublicKey{c.OriginKey},
			CacheDir: cacheDir, CacheSize: cacheSize, Passkey: passkey,
			BTListen: btAddr, User: c.User, UserToken: c.UserToken, Registry: s.Registry, Logger: log,
			TLSCert: tlsFiles.CertFile, TLSKey: tlsFiles.KeyFile, CAFile: tlsFiles.CAFile,
		})
		if err != nil {
			return nil, err
		}
		// A restarted proxy keeps its BitTorrent port, as a real one would.
		btAddr = "127.0.0.1:" + strconv.Itoa(p.BTPort())
		s.Proxy = p
		return serve(ctx, ln, p.Serve, p.Close), nil
	}}
	if err := s.Start(ctx); err != nil {
		return nil, err
	}
	c.Proxies = append(c.Proxies, s)
	return s, nil
}

// tlsFiles is the cluster's TLS, the zero value (plain HTTP) without.
func (c *Cluster) tlsFiles() TLS {
	if c.tls == nil {
		return TLS{}
	}
	return *c.tls
}

// serve runs a component's Serve in a goroutine; the returned stop ends it
// and closes the component.
func serve(ctx context.Context, ln net.Listener, run func(context.Context, net.Listener) error, closeFn func() error) func() error {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- run(ctx, ln) }()
	return func() error {
		cancel()
		return errors.Join(<-done, closeFn())
	}
}

// Start starts (or restarts) the service on its address.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop != nil {
		return fmt.Errorf("%s already running", s.Name)
	}
	addr := s.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := httpapi.Listen(ctx, addr)
	if err != nil {
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	s.addr, s.URL = ln.Addr().String(), httpapi.URL(ln)
	if s.https {
		// The component's Serve speaks TLS on ln.
		s.URL = "https://" + s.addr
	}
	s.Registry = metrics.NewRegistry()
	stop, err := s.start(ctx, s, ln)
	if err != nil {
		ln.Close()
		return fmt.Errorf("start %s: %w", s.Name, err)
	}
	s.stop = stop
	return nil
}

// Stop stops the service; Start brings it back on the same address.
func (s *Service) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stop == nil {
		return nil
	}
	err := s.stop()
	s.stop = nil
	return err
}

// Close stops everything and removes a temporary directory.
func (c *Cluster) Close() error {
	var errs []error
	for _, p := range c.Proxies {
		errs = append(errs, p.Stop())
	}
	for _, s := range []*Service{c.Origin, c.Tracker} {
		if s != nil {
			errs = append(errs, s.Stop())
		}
	}
	if c.tempDir {
		errs = append(errs, os.RemoveAll(c.Dir))
	}
	return errors.Join(errs...)
}
