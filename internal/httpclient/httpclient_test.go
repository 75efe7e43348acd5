package httpclient

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/p2sp/p2sp/internal/httpapi"
	"github.com/p2sp/p2sp/internal/testtool"
)

// TestVerifies: a transport made with the server's CA file talks to it; one
// with the system's roots or another CA refuses its certificate; a CA
// file that is missing or holds no certificate is an error, not the
// system's roots.
func TestVerifies(t *testing.T) {
	ca, other := testtool.NewCA(t), testtool.NewCA(t)
	cert, key := ca.Issue(t, "127.0.0.1")
	tc, err := httpapi.ServerTLS(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := httpapi.TLSListener(ln, tc)
	srv := &http.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ErrorLog: log.New(io.Discard, "", 0), // the refused handshakes
	}
	go srv.Serve(tl)
	defer srv.Close()
	url := httpapi.URL(tl)

	for _, c := range []struct {
		name, caFile, err string
	}{
		{"the server's CA", ca.File, ""},
		{"system roots", "", "certificate signed by unknown authority"},
		{"another CA", other.File, "certificate signed by unknown authority"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conf, err := TLSConfig(c.caFile)
			if err != nil {
				t.Fatal(err)
			}
			client := &http.Client{Transport: NewTransport(conf)}
			defer client.CloseIdleConnections()
			resp, err := client.Get(url)
			if c.err == "" {
				if err != nil {
					t.Fatalf("GET: %v", err)
				}
				resp.Body.Close()
				return
			}
			if err == nil {
				resp.Body.Close()
			}
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("GET: %v, want %q", err, c.err)
			}
		})
	}
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o600)
	for _, f := range []string{notPEM, filepath.Join(t.TempDir(), "missing.pem")} {
		if _, err := TLSConfig(f); err == nil {
			t.Errorf("TLSConfig(%s): no error", f)
		}
	}
}

func TestReadAll(t *testing.T) {
	const limit = 10
	for _, c := range []struct {
		name   string
		body   string
		length bool
		err    error
	}{
		{"at the limit", strings.Repeat("a", limit), true, nil},
		{"at the limit, chunked", strings.Repeat("a", limit), false, nil},
		{"over, by its length", strings.Repeat("a", limit+1), true, ErrTooLarge},
		{"over, chunked", strings.Repeat("a", limit+1), false, ErrTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			resp := &http.Response{Body: io.NopCloser(strings.NewReader(c.body)), ContentLength: -1}
			if c.length {
				resp.ContentLength = int64(len(c.body))
			}
			b, err := ReadAll(resp, limit)
			if !errors.Is(err, c.err) || err == nil && string(b) != c.body {
				t.Fatalf("ReadAll = %q, %v; want %v", b, err, c.err)
			}
			if err != nil && !strings.Contains(err.Error(), fmt.Sprint(limit)) {
				t.Errorf("%v does not name the limit", err)
			}
		})
	}
}

func TestDecodeJSON(t *testing.T) {
	for _, c := range []struct {
		name, body string
		limit      int64
		err        string
	}{
		{"small", `{"a":1}`, 100, ""},
		{"too large", `{"a":"` + strings.Repeat("x", 100) + `"}`, 100, ErrTooLarge.Error()},
		{"too deep", strings.Repeat("[", 10001) + strings.Repeat("]", 10001), 1 << 20, "exceeded max depth"},
		{"not JSON", `{"a":`, 100, "decode answer"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var v any
			err := DecodeJSON(&http.Response{Body: io.NopCloser(strings.NewReader(c.body)), ContentLength: -1}, c.limit, &v)
			if c.err == "" && err != nil || c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
				t.Fatalf("DecodeJSON: %v, want %q", err, c.err)
			}
		})
	}
}
