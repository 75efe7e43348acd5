package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/testtool"
)

// interopSize spans many pieces (64 KiB each at this size) and takes a
// standard client a moment, not a minute.
const interopSize = 8<<20 + 4321

// userTorrent is the .torrent of name as a user of a standard client gets
// it: with a passkey the operator issued to user, in ?passkey=, so that
// its announce URL carries it.
func userTorrent(t *testing.T, c *demo.Cluster, name, user string) []byte {
	t.Helper()
	pk, err := c.IssuePasskey(t.Context(), user)
	if err != nil {
		t.Fatal(err)
	}
	b := mustGet(t, c.Tracker.URL+"/v1/torrents/"+fileinfo.EscapePath(name)+"?passkey="+url.QueryEscape(pk), "", http.StatusOK)
	mi, err := metainfo.Load(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	info, err := mi.UnmarshalInfo()
	if want := fileinfo.AnnounceURL(c.Tracker.URL, pk); err != nil || mi.Announce != want || info.Private == nil || !*info.Private {
		t.Fatalf("the .torrent announces to %q (want %q), private %v, %v", mi.Announce, want, info.Private, err)
	}
	return b
}

// TestInteropAria2Leeches: aria2c, a standard BitTorrent client given only
// the tracker's .torrent, downloads a file byte for byte: with the origin
// (the .torrent's web seed) and the proxies holding the file both up; with
// the origin stopped, when only the proxies can supply it; with a .torrent
// without a passkey, whose announce the tracker refuses (aria2c logs the
// reason), so that the proxies send it nothing and the web seed all; and
// with the proxies stopped, when only the web seed can.
func TestInteropAria2Leeches(t *testing.T) {
	aria2 := testtool.Require(t, "aria2c")
	const name = "interop/leech me.bin"
	c, data, torrent, bare := interopSwarm(t, name, "aria2c-user")
	want := sha256.Sum256(data)

	// The cases run in order, each changing what is up.
	ctx := t.Context()
	up := map[*demo.Service]bool{c.Origin: true}
	for _, p := range c.Proxies {
		up[p] = true
	}
	for _, tc := range []struct {
		name              string
		origin, proxies   bool
		wantProxiesUpload bool
		// noPasskey: the .torrent without a passkey, so no peers
		noPasskey bool
	}{
		{"web seed and peers", true, true, false, false},
		{"peers only", false, true, true, false},
		{"without a passkey, web seed only", true, true, false, true},
		{"web seed only", true, false, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := setUp(ctx, c.Origin, up, tc.origin); err != nil {
				t.Fatal(err)
			}
			for _, p := range c.Proxies {
				if err := setUp(ctx, p, up, tc.proxies); err != nil {
					t.Fatal(err)
				}
			}
			var before int64
			if tc.proxies {
				before = uploaded(t, c.Proxies, name)
			}
			dir := t.TempDir()
			t0 := time.Now()
			tf := torrent
			if tc.noPasskey {
				tf = bare
			}
			out := runAria2(t, aria2, 2*time.Minute, tf, dir, "--seed-time=0")
			took := time.Since(t0)
			got, err := os.ReadFile(filepath.Join(dir, path2name(name)))
			if err != nil {
				t.Fatalf("aria2c finished without the file: %v\n%s", err, out)
			}
			if sha256.Sum256(got) != want {
				t.Fatalf("aria2c's copy (%d bytes) differs from the origin's (%d bytes)\n%s", len(got), len(data), out)
			}
			if !tc.proxies {
				t.Logf("aria2c: %d bytes identical in %s, from the web seed", len(got), took.Round(time.Millisecond))
				return
			}
			sent := uploaded(t, c.Proxies, name) - before
			if tc.noPasskey {
				t.Logf("aria2c without a passkey: %d bytes identical in %s from the web seed; proxies uploaded %s to it", len(got), took.Round(time.Millisecond), mib(float64(sent)))
				if !strings.Contains(logTail(dir), "this tracker is private") {
					t.Errorf("aria2c's log does not show the tracker refusing its announce:\n%s", logTail(dir))
				}
				if sent != 0 {
					t.Errorf("the proxies uploaded %d bytes to a client the tracker refused, want 0", sent)
				}
				return
			}
			t.Logf("aria2c: %d bytes identical in %s; proxies uploaded %s to it", len(got), took.Round(time.Millisecond), mib(float64(sent)))
			if tc.wantProxiesUpload && sent < interopSize {
				t.Errorf("with the origin stopped the proxies uploaded %d bytes, want at least the file's %d", sent, interopSize)
			}
		})
	}
}

// setUp starts or stops s, whose state up tracks. ctx must outlive the
// subtest: a service started here runs until the cluster closes.
func setUp(ctx context.Context, s *demo.Service, up map[*demo.Service]bool, want bool) error {
	if up[s] == want {
		return nil
	}
	up[s] = want
	if want {
		return s.Start(ctx)
	}
	return s.Stop()
}

// TestInteropProxyLeechesFromAria2: a proxy downloads a file from a swarm
// whose only other member is aria2c seeding it, with the origin stopped;
// the proxy learns of aria2c from the tracker, to which aria2c announces.
func TestInteropProxyLeechesFromAria2(t *testing.T) {
	aria2 := testtool.Require(t, "aria2c")
	c := start(t, demo.Config{Proxies: 1, ScanInterval: 200 * time.Millisecond, AnnounceInterval: 2 * time.Second})
	const name = "interop/seed me.bin"
	data := writeMedia(t, c, name, interopSize)
	waitInfo(t, c, name, "")
	dir := t.TempDir()
	torrent := filepath.Join(dir, "seed.torrent")
	if err := os.WriteFile(torrent, userTorrent(t, c, name, "aria2c-user"), 0o644); err != nil {
		t.Fatal(err)
	}
	// aria2c checks the complete file against the .torrent, then seeds it.
	seedDir := filepath.Join(dir, "seed")
	if err := os.MkdirAll(seedDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(seedDir, path2name(name)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Origin.Stop(); err != nil {
		t.Fatal(err)
	}
	port := startAria2(t, aria2, 2*time.Minute, torrent, seedDir, "--seed-ratio=0.0", "--seed-time=5")
	waitPeer(t, c, name, port)

	p := c.Proxies[0]
	t0 := time.Now()
	got := mustGet(t, streamURL(p, name), "", http.StatusOK)
	took := time.Since(t0)
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("through %s: %d bytes, differ from the seeded file's %d", p.Name, len(got), len(data))
	}
	f := status(t, p).Files[0]
	t.Logf("%s from aria2c in %s: peer %s, origin %s", p.Name, took.Round(time.Millisecond), mib(float64(f.PeerBytes)), mib(float64(f.OriginBytes)))
	if f.PeerBytes != interopSize || f.OriginBytes != 0 {
		t.Errorf("%s served %d bytes from peers and %d from the origin, want all %d from peers", p.Name, f.PeerBytes, f.OriginBytes, interopSize)
	}
}

// path2name is the name aria2c saves a single-file torrent under.
func path2name(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// aria2Args are the options of every aria2c run: loopback only, peers only
// from the tracker, the file checked against the .torrent's piece hashes.
func aria2Args(dir string, port int) []string {
	return []string{
		"--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false", "--enable-peer-exchange=false",
		"--disable-ipv6=true", "--interface=127.0.0.1", "--listen-port=" + strconv.Itoa(port),
		"--check-integrity=true", "--dir=" + dir, "--file-allocation=none",
		"--allow-overwrite=true", "--auto-file-renaming=false",
		"--bt-tracker-connect-timeout=5", "--bt-tracker-timeout=5",
		"--summary-interval=0", "--console-log-level=notice",
		"--log=" + filepath.Join(dir, "aria2.log"), "--log-level=info",
	}
}

// runAria2 runs aria2c to completion within timeout and returns its output.
func runAria2(t *testing.T, aria2 string, timeout time.Duration, torrent, dir string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	args := append(append(aria2Args(dir, freePort(t)), extra...), torrent)
	cmd := exec.CommandContext(ctx, aria2, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("aria2c: %v\n%s\nlog tail:\n%s", err, out.String(), logTail(dir))
	}
	return out.String()
}

// startAria2 starts aria2c in the background, stopped at the end of the
// test (or after timeout), and returns its BitTorrent port.
func startAria2(t *testing.T, aria2 string, timeout time.Duration, torrent, dir string, extra ...string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	port := freePort(t)
	cmd := exec.CommandContext(ctx, aria2, append(append(aria2Args(dir, port), extra...), torrent)...)
	// An interrupt lets aria2c tell the tracker it stopped.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 5 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start aria2c: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		err := <-done
		if t.Failed() {
			t.Logf("aria2c ended: %v\n%s\nlog tail:\n%s", err, out.String(), logTail(dir))
		}
	})
	return port
}

// logTail is the end of aria2c's log in dir, for failure messages.
func logTail(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "aria2.log"))
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitPeer waits until the tracker lists a peer on port for path.
func waitPeer(t *testing.T, c *demo.Cluster, path string, port int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if listed(t, c, path, port) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the client on port %d never announced %s to the tracker", port, path)
}

// listed reports whether the tracker lists a peer on port for path now.
func listed(t *testing.T, c *demo.Cluster, path string, port int) bool {
	t.Helper()
	for _, p := range waitInfo(t, c, path, "").Peers {
		if p.Port == port {
			return true
		}
	}
	return false
}

// uploaded sums the bytes the proxies sent to peers for path.
func uploaded(t *testing.T, proxies []*demo.Service, path string) int64 {
	t.Helper()
	var sum int64
	for _, p := range proxies {
		var st struct {
			Files []struct {
				Path     string `json:"path"`
				Uploaded int64  `json:"uploaded_bytes"`
			} `json:"files"`
		}
		if err := json.Unmarshal(mustGet(t, p.URL+"/v1/status", "", http.StatusOK), &st); err != nil {
			t.Fatal(err)
		}
		for _, f := range st.Files {
			if f.Path == path {
				sum += f.Uploaded
			}
		}
	}
	return sum
}

// interopSwarm starts a cluster of two proxies that both hold name
// (interopSize bytes) whole, and writes two .torrent files of it: one
// with user's passkey and the tracker's bare one, whose announces the
// tracker refuses.
func interopSwarm(t *testing.T, name, user string) (c *demo.Cluster, data []byte, withKey, bare string) {
	t.Helper()
	c = start(t, demo.Config{Proxies: 2, ScanInterval: 200 * time.Millisecond, AnnounceInterval: 2 * time.Second})
	data = writeMedia(t, c, name, interopSize)
	waitInfo(t, c, name, "")
	for _, p := range c.Proxies {
		if got := mustGet(t, streamURL(p, name), "", http.StatusOK); !bytes.Equal(got, data) {
			t.Fatalf("%s: bytes differ", p.Name)
		}
		waitComplete(t, p, name)
	}
	withKey = filepath.Join(t.TempDir(), "with-passkey.torrent")
	if err := os.WriteFile(withKey, userTorrent(t, c, name, user), 0o644); err != nil {
		t.Fatal(err)
	}
	bare = filepath.Join(t.TempDir(), "bare.torrent")
	if err := os.WriteFile(bare, mustGet(t, c.Tracker.URL+"/v1/torrents/"+fileinfo.EscapePath(name), "", http.StatusOK), 0o644); err != nil {
		t.Fatal(err)
	}
	return c, data, withKey, bare
}
