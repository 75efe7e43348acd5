package httpapi

import (
	"net"
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
