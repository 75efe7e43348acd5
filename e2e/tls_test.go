package e2e

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/testtool"
	"github.com/p2sp/p2sp/proxy"
)

// startTLS runs a cluster whose tracker, origin and proxies all speak
// HTTPS with a certificate of a CA made for the test, and returns a client
// that trusts that CA alone.
func startTLS(t *testing.T, cfg demo.Config) (*demo.Cluster, *http.Client) {
	t.Helper()
	ca := testtool.NewCA(t)
	cert, key := ca.Issue(t, "127.0.0.1", "localhost")
	cfg.TLS = &demo.TLS{CertFile: cert, KeyFile: key, CAFile: ca.File}
	c := start(t, cfg)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: ca.ClientTLS()}}
	t.Cleanup(client.CloseIdleConnections)
	return c, client
}

// TestTLS: with the tracker, the origin and the proxies on HTTPS (a CA
// made in the test), the origin registers over HTTPS, a file streams byte
// for byte, and the second proxy takes it from the first as a peer (its
// announces go to the tracker over HTTPS too).
func TestTLS(t *testing.T) {
	const size = 8 << 20
	c, client := startTLS(t, demo.Config{Proxies: 2, RateLimit: 4_000_000, ScanInterval: 200 * time.Millisecond})
	for _, s := range append([]*demo.Service{c.Tracker, c.Origin}, c.Proxies...) {
		if !strings.HasPrefix(s.URL, "https://") {
			t.Fatalf("%s serves at %s, want https", s.Name, s.URL)
		}
	}
	data := writeMedia(t, c, "films/secure.bin", size)
	fi := waitInfoWith(t, client, c.Tracker.URL, c.Token, "films/secure.bin", "")
	if len(fi.Origins) == 0 || !strings.HasPrefix(fi.Origins[0], "https://") {
		t.Errorf("registered origins %q, want the origin's https URL", fi.Origins)
	}
	if _, _, err := get(t, c.Tracker.URL+"/healthz", ""); err == nil {
		t.Error("a client without the test CA reached the tracker")
	}

	first, second := c.Proxies[0], c.Proxies[1]
	if got := mustGetWith(t, client, streamURL(first, "films/secure.bin"), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatalf("%s: %d bytes, differ from the origin's %d", first.Name, len(got), len(data))
	}
	for deadline := time.Now().Add(20 * time.Second); !tlsFileStatus(t, client, first, "films/secure.bin").Complete; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never completed the file", first.Name)
		}
	}
	if got := mustGetWith(t, client, streamURL(second, "films/secure.bin"), "bytes=1000-", http.StatusPartialContent); !bytes.Equal(got, data[1000:]) {
		t.Fatalf("%s: %d bytes, differ from the origin's", second.Name, len(got))
	}
	f := tlsFileStatus(t, client, second, "films/secure.bin")
	t.Logf("%s: %d bytes from peers, %d from the origin", second.Name, f.PeerBytes, f.OriginBytes)
	if f.PeerBytes < size/2 {
		t.Errorf("%s took %d bytes from peers (and %d from the origin), want most of %d from %s", second.Name, f.PeerBytes, f.OriginBytes, size, first.Name)
	}
}

func tlsFileStatus(t *testing.T, client *http.Client, p *demo.Service, path string) statusFile {
	t.Helper()
	for _, f := range statusWith(t, client, p.URL).Files {
		if f.Path == path {
			return f
		}
	}
	return statusFile{}
}

// TestTLSUntrusted: a proxy that does not trust the origin's certificate
// (no CA file, so the system's roots; or another CA's) takes nothing from
// it: the player gets an error, not bytes, and the proxy's status says
// the certificate is why.
func TestTLSUntrusted(t *testing.T) {
	c, client := startTLS(t, demo.Config{ScanInterval: 200 * time.Millisecond})
	writeMedia(t, c, "films/secure.bin", 1<<20)
	waitInfoWith(t, client, c.Tracker.URL, c.Token, "films/secure.bin", "")
	other := testtool.NewCA(t)
	for _, tc := range []struct{ name, caFile string }{
		{"system roots", ""},
		{"another CA", other.File},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startTestProxy(t, c, proxy.Config{CAFile: tc.caFile})
			url := p.URL + "/stream/" + fileinfo.EscapePath("films/secure.bin")
			resp, body, err := get(t, url, "")
			if err == nil && resp.StatusCode < 400 {
				t.Fatalf("the player got %s and %d bytes, want an error", resp.Status, len(body))
			}
			if err == nil && !bytes.Contains(body, []byte("certificate")) {
				t.Errorf("the player's error %q does not name the certificate", body)
			}
			st := statusAt(t, p.URL)
			if len(st.Files) != 1 || !strings.Contains(st.Files[0].Error, "x509: certificate signed by unknown authority") {
				t.Errorf("status %+v, want the file's error to name the certificate", st.Files)
			}
		})
	}
}
