package httpapi

import (
	"crypto/tls"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/p2sp/p2sp/internal/testtool"
)

func TestServerTLS(t *testing.T) {
	ca := testtool.NewCA(t)
	cert, key := ca.Issue(t, "127.0.0.1")
	otherCert, _ := ca.Issue(t, "127.0.0.1")
	for _, c := range []struct {
		name, cert, key string
		tls             bool
		err             string
	}{
		{"plain", "", "", false, ""},
		{"certificate and key", cert, key, true, ""},
		{"no key", cert, "", false, "both"},
		{"no certificate", "", key, false, "both"},
		{"key of another certificate", otherCert, key, false, "private key does not match"},
		{"missing file", cert + ".missing", key, false, "no such file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tc, err := ServerTLS(c.cert, c.key)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("ServerTLS: %v, want %q", err, c.err)
				}
				return
			}
			if err != nil || (tc != nil) != c.tls {
				t.Fatalf("ServerTLS = %v, %v; want TLS %v", tc, err, c.tls)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			want := "http://"
			if c.tls {
				want = "https://"
			}
			tl := TLSListener(ln, tc)
			if u := URL(TLSListener(tl, tc)); u != want+ln.Addr().String() {
				t.Errorf("URL %s, want %s", u, want+ln.Addr().String())
			}
		})
	}
}

// TestServerTLSReloads: a renewed certificate, written over the files, is
// served from the next handshake on, without a restart; files that then
// do not load leave the renewed one in use.
func TestServerTLSReloads(t *testing.T) {
	ca := testtool.NewCA(t)
	certFile, keyFile := ca.Issue(t, "127.0.0.1")
	tc, err := ServerTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := TLSListener(ln, tc)
	defer tl.Close()
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	serial := func() string {
		t.Helper()
		c, err := tls.Dial("tcp", ln.Addr().String(), ca.ClientTLS())
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	if again := serial(); again != first {
		t.Fatalf("unchanged files: serial %s, then %s", first, again)
	}
	renewedCert, renewedKey := ca.Issue(t, "127.0.0.1")
	copyFile(t, renewedCert, certFile)
	copyFile(t, renewedKey, keyFile)
	renewed := serial()
	if renewed == first {
		t.Fatal("the renewed certificate is not served")
	}
	if err := os.WriteFile(certFile, []byte("half-written"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s := serial(); s != renewed {
		t.Fatalf("after a bad write: serial %s, want the renewed %s", s, renewed)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
