package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/testtool"
	"github.com/p2sp/p2sp/metrics"
	"github.com/p2sp/p2sp/tracker"
)

// Transmission 3.00 never dials a loopback address a tracker names (it
// counts 127/8 as "martian"), but it accepts connections from loopback:
// here the proxies, which learn of it from the tracker, dial it, whether
// it leeches or seeds. Its transfer over a new connection began about 10 s
// after it was listed (its rechoke period), so each run takes 14-15 s.

// TestInteropTransmissionLeeches: transmission-cli, given only the
// tracker's .torrent, downloads a file byte for byte. With a passkey in
// the .torrent and the origin (its web seed) stopped, the proxies holding
// the file supply all of it: the tracker listed transmission, the proxies
// dialed it, and its event=stopped removed it again. Without a passkey its
// announce is refused (transmission shows the tracker's reason), it is
// never listed, the proxies send it nothing, and it downloads from the
// web seed alone.
func TestInteropTransmissionLeeches(t *testing.T) {
	bin := testtool.Require(t, "transmission-cli")
	const name = "interop/transmission leech.bin"
	c, data, withKey, bare := interopSwarm(t, name, "transmission-user")
	up := map[*demo.Service]bool{c.Origin: true}

	t.Run("with a passkey, from the proxies", func(t *testing.T) {
		if err := setUp(t.Context(), c.Origin, up, false); err != nil {
			t.Fatal(err)
		}
		before := uploaded(t, c.Proxies, name)
		t0 := time.Now()
		tr := startTransmission(t, bin, withKey, t.TempDir())
		waitPeer(t, c, name, tr.port)
		tr.waitFile(t, name, data, time.Minute)
		took := time.Since(t0)
		sent := uploaded(t, c.Proxies, name) - before
		t.Logf("transmission: %d bytes identical in %s, the proxies uploaded %s to it", len(data), took.Round(time.Millisecond), mib(float64(sent)))
		if sent < interopSize {
			t.Errorf("with the origin stopped the proxies uploaded %d bytes, want at least the file's %d", sent, interopSize)
		}
		// Its event=stopped, with its own passkey, takes it off the list
		// (transmission does not wait for the answer before it exits).
		tr.stop(t)
		if !eventually(t, func() bool { return !listed(t, c, name, tr.port) }) {
			t.Errorf("the tracker still lists transmission (port %d) 10 s after it stopped", tr.port)
		}
	})

	t.Run("without a passkey, from the web seed alone", func(t *testing.T) {
		if err := setUp(t.Context(), c.Origin, up, true); err != nil {
			t.Fatal(err)
		}
		before := uploaded(t, c.Proxies, name)
		refusedBefore := scrapeMetrics(t, c.Tracker.URL).value("p2sp_tracker_announces_total", metrics.AnnounceUnauthorized)
		t0 := time.Now()
		tr := startTransmission(t, bin, bare, t.TempDir())
		tr.waitOutput(t, "this tracker is private", 20*time.Second)
		tr.waitFile(t, name, data, time.Minute)
		took := time.Since(t0)
		sent := uploaded(t, c.Proxies, name) - before
		refused := scrapeMetrics(t, c.Tracker.URL).value("p2sp_tracker_announces_total", metrics.AnnounceUnauthorized) - refusedBefore
		t.Logf("transmission: %d bytes identical in %s from the web seed; %v announces refused, the proxies uploaded %s to it",
			len(data), took.Round(time.Millisecond), refused, mib(float64(sent)))
		if refused < 1 {
			t.Errorf("the tracker counted %v unauthorized announces, want transmission's", refused)
		}
		if listed(t, c, name, tr.port) {
			t.Errorf("the tracker lists transmission (port %d), which announced without a passkey", tr.port)
		}
		if sent != 0 {
			t.Errorf("the proxies uploaded %d bytes to a client the tracker refused, want 0", sent)
		}
	})
}

// TestInteropProxyLeechesFromTransmission: a proxy downloads a file from a
// swarm whose only other member is transmission-cli seeding it with a
// passkey, the origin stopped. Then the operator revokes that passkey: the
// tracker drops transmission at once, refuses its next announce (which
// transmission shows), and lists it no more.
func TestInteropProxyLeechesFromTransmission(t *testing.T) {
	bin := testtool.Require(t, "transmission-cli")
	c := start(t, demo.Config{Proxies: 1, ScanInterval: 200 * time.Millisecond, AnnounceInterval: 2 * time.Second})
	const (
		name = "interop/transmission seed.bin"
		user = "transmission-seeder"
	)
	data := writeMedia(t, c, name, interopSize)
	waitInfo(t, c, name, "")
	dir := t.TempDir()
	torrent := filepath.Join(dir, "seed.torrent")
	if err := os.WriteFile(torrent, userTorrent(t, c, name, user), 0o644); err != nil {
		t.Fatal(err)
	}
	// transmission checks the complete file against the .torrent, then
	// seeds it.
	seedDir := filepath.Join(dir, "seed")
	putFile(t, seedDir, path2name(name), data)
	if err := c.Origin.Stop(); err != nil {
		t.Fatal(err)
	}
	tr := startTransmission(t, bin, torrent, seedDir)
	tr.waitOutput(t, "Seeding", 30*time.Second)
	waitPeer(t, c, name, tr.port)

	p := c.Proxies[0]
	t0 := time.Now()
	got := mustGet(t, streamURL(p, name), "", http.StatusOK)
	took := time.Since(t0)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("through %s: %d bytes, differ from the seeded file's %d", p.Name, len(got), len(data))
	}
	f := status(t, p).Files[0]
	t.Logf("%s from transmission in %s: peer %s, origin %s", p.Name, took.Round(time.Millisecond), mib(float64(f.PeerBytes)), mib(float64(f.OriginBytes)))
	if f.PeerBytes != interopSize || f.OriginBytes != 0 {
		t.Errorf("%s served %d bytes from peers and %d from the origin, want all %d from peers", p.Name, f.PeerBytes, f.OriginBytes, interopSize)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if n, err := tracker.RevokePasskey(ctx, http.DefaultClient, c.Tracker.URL, c.Token, user); err != nil || n != 1 {
		t.Fatalf("revoke %s: %d passkeys, %v", user, n, err)
	}
	if listed(t, c, name, tr.port) {
		t.Errorf("the tracker still lists transmission (port %d) right after its passkey was revoked", tr.port)
	}
	// It announces every interval (2 s): the next one is refused.
	tr.waitOutput(t, "unknown or revoked passkey", 20*time.Second)
	if listed(t, c, name, tr.port) {
		t.Errorf("the tracker lists transmission (port %d) again after refusing its revoked passkey", tr.port)
	}
}

// transmissionSettings is the settings.json of every transmission-cli run:
// loopback only, peers from the tracker alone (the torrents are private,
// which turns DHT, PEX and LPD off anyway), TCP only (uTP was slow on
// loopback, notes), no port mapping, no limits, seeding until stopped, and
// a file named .part until it is complete: its final name appearing means
// every piece passed its hash.
func transmissionSettings(port int) map[string]any {
	return map[string]any{
		"bind-address-ipv4":          "127.0.0.1",
		"bind-address-ipv6":          "::1",
		"peer-port":                  port,
		"peer-port-random-on-start":  false,
		"port-forwarding-enabled":    false,
		"dht-enabled":                false,
		"lpd-enabled":                false,
		"pex-enabled":                false,
		"utp-enabled":                false,
		"blocklist-enabled":          false,
		"speed-limit-down-enabled":   false,
		"speed-limit-up-enabled":     false,
		"alt-speed-enabled":          false,
		"ratio-limit-enabled":        false,
		"idle-seeding-limit-enabled": false,
		"incomplete-dir-enabled":     false,
		"rename-partial-files":       true,
		"start-added-torrents":       true,
		"rpc-enabled":                false,
	}
}

// transmission is one transmission-cli process with a configuration of
// its own, stopped when the test ends.
type transmission struct {
	port int
	dir  string // its download directory
	out  *syncBuffer
	done chan struct{}
	// stop interrupts it (it then tells the tracker it stopped) and waits
	// for it to exit; err is how it ended.
	stop func(t *testing.T)
	err  error
}

// startTransmission runs transmission-cli on torrent, downloading into
// (or seeding from) dir.
func startTransmission(t *testing.T, bin, torrent, dir string) *transmission {
	t.Helper()
	conf := t.TempDir()
	tr := &transmission{port: freePort(t), dir: dir, out: &syncBuffer{}, done: make(chan struct{})}
	b, err := json.Marshal(transmissionSettings(tr.port))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(conf, "settings.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// transmission-cli never exits by itself while seeding: the test's
	// end (or this bound) interrupts it.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, bin, "-g", conf, "-w", dir, "-p", strconv.Itoa(tr.port), torrent)
	// An interrupt makes it stop the torrent and announce event=stopped.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Stdout, cmd.Stderr = tr.out, tr.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start transmission-cli: %v", err)
	}
	go func() {
		tr.err = cmd.Wait()
		close(tr.done)
	}()
	once := sync.OnceFunc(func() {
		cancel()
		<-tr.done
	})
	tr.stop = func(t *testing.T) {
		t.Helper()
		t0 := time.Now()
		once()
		t.Logf("transmission-cli stopped in %s: %v", time.Since(t0).Round(time.Millisecond), tr.err)
	}
	t.Cleanup(func() {
		once()
		if t.Failed() {
			t.Logf("transmission-cli ended: %v\n%s", tr.err, tr.out.tail(8<<10))
		}
	})
	return tr
}

// waitFile waits until transmission has the complete file path (saved
// under its last element) and checks that it holds data.
func (tr *transmission) waitFile(t *testing.T, path string, data []byte, within time.Duration) {
	t.Helper()
	f := filepath.Join(tr.dir, path2name(path))
	for deadline := time.Now().Add(within); ; time.Sleep(100 * time.Millisecond) {
		if st, err := os.Stat(f); err == nil && st.Size() == int64(len(data)) {
			break
		}
		select {
		case <-tr.done:
			t.Fatalf("transmission-cli exited without the file: %v\n%s", tr.err, tr.out.tail(8<<10))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("transmission-cli has no complete %s after %s\n%s", f, within, tr.out.tail(8<<10))
		}
	}
	got, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("transmission's copy (%d bytes) differs from the origin's (%d bytes)", len(got), len(data))
	}
}

// waitOutput waits until transmission has printed s.
func (tr *transmission) waitOutput(t *testing.T, s string, within time.Duration) {
	t.Helper()
	for deadline := time.Now().Add(within); !strings.Contains(tr.out.String(), s); time.Sleep(100 * time.Millisecond) {
		select {
		case <-tr.done:
			t.Fatalf("transmission-cli exited before printing %q: %v\n%s", s, tr.err, tr.out.tail(8<<10))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("transmission-cli did not print %q within %s\n%s", s, within, tr.out.tail(8<<10))
		}
	}
}

// syncBuffer is a child's output, written by exec's copier and read by the
// test while the child runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// tail is the last n bytes of the output, its progress line's carriage
// returns made newlines.
func (s *syncBuffer) tail(n int) string {
	out := s.String()
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return strings.ReplaceAll(out, "\r", "\n")
}
