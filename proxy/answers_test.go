package proxy

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/p2sp/p2sp/internal/httpclient"
)

// hostile answers every GET with what its answers map says for the path:
// a body of the given size, sent with a Content-Length or (endless) in
// chunks until the client stops reading.
type hostile struct {
	size    int
	length  bool
	endless bool
	deep    bool // nested JSON arrays instead of one long string
}

func (h hostile) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.endless {
		chunk := []byte(strings.Repeat("[", 64<<10))
		for i := 0; i < 1<<14; i++ { // 1 GiB at most, if nothing stops it
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
		return
	}
	body := `{"ed25519":"` + strings.Repeat("A", max(h.size-14, 0)) + `"}`
	if h.deep {
		body = strings.Repeat("[", h.size/2) + strings.Repeat("]", h.size/2)
	}
	if h.length {
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
	}
	io.WriteString(w, body)
	if !h.length {
		w.(http.Flusher).Flush()
	}
}

// TestStrangersAnswersBounded: every answer the proxy decodes or relays
// from the tracker or the origin is read within its bound. One too large,
// by its Content-Length, by what arrives or endless, is a clear error
// naming the bound (a 502 for the page's relay), not memory; JSON nested
// as deep as the bound allows is a decode error, not a crash.
func TestStrangersAnswersBounded(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	type call func(t *testing.T, url string) error
	fileInfo := func(t *testing.T, url string) error {
		tc := &trackerClient{bases: []string{url}, client: http.DefaultClient}
		_, err := tc.fileInfoFrom(t.Context(), url, "a.mp4")
		return err
	}
	originKey := func(t *testing.T, url string) error {
		tr, err := newTrust(nil, []string{url}, t.TempDir(), http.DefaultClient, log)
		if err != nil {
			t.Fatal(err)
		}
		_, err = tr.fetch(t.Context(), url)
		return err
	}
	catalog := func(t *testing.T, url string) error {
		s, err := New(Config{Trackers: []string{url}, Origins: []string{url}, CacheDir: t.TempDir(), BTListen: "127.0.0.1:0", Logger: log})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		req := httptest.NewRequest(http.MethodGet, "/v1/catalog?limit=10", nil)
		req.Host = "127.0.0.1"
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusBadGateway {
			return nil
		}
		return errors.New(rec.Body.String())
	}
	for _, d := range []struct {
		name  string
		call  call
		limit int
		// tooLarge is what an oversized answer's error says.
		tooLarge string
	}{
		{"tracker's file info", fileInfo, maxInfoAnswer, httpclient.ErrTooLarge.Error()},
		{"origin's key", originKey, maxKeyAnswer, httpclient.ErrTooLarge.Error()},
		{"origin's catalog, relayed", catalog, maxRelayAnswer, fmt.Sprintf("over %d bytes", maxRelayAnswer)},
	} {
		for _, a := range []struct {
			name string
			h    hostile
			want string // in the error
		}{
			{"one byte too many, with a length", hostile{size: d.limit + 1, length: true}, d.tooLarge},
			{"one byte too many, chunked", hostile{size: d.limit + 1}, d.tooLarge},
			{"endless", hostile{endless: true}, d.tooLarge},
			// Within the bound, as deep as it goes: 10000 levels (all
			// encoding/json allows) need 10000 bytes.
			{"nested", hostile{size: min(d.limit, 1<<20), deep: true}, "decode answer"},
		} {
			if d.limit == maxRelayAnswer && a.h.deep {
				continue // the relay passes JSON on, it does not decode it
			}
			t.Run(d.name+"/"+a.name, func(t *testing.T) {
				srv := httptest.NewServer(a.h)
				defer srv.Close()
				err := d.call(t, srv.URL)
				if err == nil || !strings.Contains(err.Error(), a.want) {
					t.Fatalf("err = %v, want one saying %q", err, a.want)
				}
				if len(err.Error()) > 2000 {
					t.Errorf("an error of %d bytes: it quotes the answer", len(err.Error()))
				}
			})
		}
	}
}
