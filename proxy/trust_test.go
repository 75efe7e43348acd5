package proxy

import (
	"crypto/ed25519"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

func TestTrust(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, _, _ := ed25519.GenerateKey(nil)
	signed := &fileinfo.Info{Path: "a.mp4", Size: 1}
	signed.Sign(priv)
	var keyAnswer atomic.Value
	keyAnswer.Store(`{"ed25519":"` + fileinfo.EncodeKey(pub) + `"}`)
	var fetches atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		if r.URL.Path != "/v1/key" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, keyAnswer.Load().(string))
	}))
	defer origin.Close()
	log := slog.New(slog.DiscardHandler)

	for _, tc := range []struct {
		name    string
		keys    []ed25519.PublicKey
		pinned  string // the pin file's content; "" for none
		answer  string // the origin's /v1/key
		verify  error  // nil: signed verifies
		source  string
		fetches int64
	}{
		{name: "configured", keys: []ed25519.PublicKey{otherPub, pub}, source: keysConfigured},
		{name: "configured, other key", keys: []ed25519.PublicKey{otherPub}, verify: fileinfo.ErrBadSignature, source: keysConfigured},
		{name: "pinned before", pinned: fileinfo.EncodeKey(pub) + "\n", source: keysPinned},
		{name: "pinned before, origin now answers another key", pinned: fileinfo.EncodeKey(pub),
			answer: `{"ed25519":"` + fileinfo.EncodeKey(otherPub) + `"}`, source: keysPinned},
		{name: "first use", source: keysPinned, fetches: 1},
		{name: "first use, origin's answer not a key", answer: `{"ed25519":"xyz"}`, verify: errUntrusted, source: keysNone, fetches: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.pinned != "" {
				os.WriteFile(filepath.Join(dir, pinFileName), []byte(tc.pinned), 0o600)
			}
			answer := tc.answer
			if answer == "" {
				answer = `{"ed25519":"` + fileinfo.EncodeKey(pub) + `"}`
			}
			keyAnswer.Store(answer)
			before := fetches.Load()
			tr, err := newTrust(tc.keys, []string{origin.URL}, dir, origin.Client(), log)
			if err != nil {
				t.Fatal(err)
			}
			// Twice: a failed first use is not retried at once.
			for range 2 {
				err = tr.verify(t.Context(), signed)
			}
			if tc.verify == nil && err != nil || tc.verify != nil && (!errors.Is(err, tc.verify) || !errors.Is(err, errUntrusted)) {
				t.Errorf("verify = %v, want %v", err, tc.verify)
			}
			if _, src := tr.state(); src != tc.source {
				t.Errorf("source %q, want %q", src, tc.source)
			}
			if n := fetches.Load() - before; n != tc.fetches {
				t.Errorf("%d fetches of the origin's key, want %d", n, tc.fetches)
			}
			if tc.name == "first use" {
				b, _ := os.ReadFile(filepath.Join(dir, pinFileName))
				if strings.TrimSpace(string(b)) != fileinfo.EncodeKey(pub) {
					t.Errorf("pin file %q", b)
				}
			}
		})
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, pinFileName), []byte("garbage"), 0o600)
	if _, err := newTrust(nil, []string{origin.URL}, dir, origin.Client(), log); err == nil {
		t.Error("a corrupt pin file was accepted")
	}
	unsigned := &fileinfo.Info{Path: "a.mp4"}
	tr, _ := newTrust([]ed25519.PublicKey{pub}, []string{origin.URL}, t.TempDir(), origin.Client(), log)
	if err := tr.verify(t.Context(), unsigned); !errors.Is(err, fileinfo.ErrUnsigned) || !errors.Is(err, errUntrusted) {
		t.Errorf("unsigned: %v", err)
	}
}

// TestTrustOrigins: a proxy of two origins pins each one's key on first
// use, in a file of its own, and accepts info signed by either.
func TestTrustOrigins(t *testing.T) {
	var pubs []ed25519.PublicKey
	var origins []string
	var signed []*fileinfo.Info
	for i := range 2 {
		pub, priv, _ := ed25519.GenerateKey(nil)
		fi := &fileinfo.Info{Path: "a.mp4", Size: int64(i)}
		fi.Sign(priv)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"ed25519":"`+fileinfo.EncodeKey(pub)+`"}`)
		}))
		defer srv.Close()
		pubs, origins, signed = append(pubs, pub), append(origins, srv.URL), append(signed, fi)
	}
	_, strangerPriv, _ := ed25519.GenerateKey(nil)
	forged := &fileinfo.Info{Path: "a.mp4"}
	forged.Sign(strangerPriv)
	dir := t.TempDir()
	tr, err := newTrust(nil, origins, dir, http.DefaultClient, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for i, fi := range signed {
		if err := tr.verify(t.Context(), fi); err != nil {
			t.Errorf("info signed by origin %d: %v", i, err)
		}
	}
	if err := tr.verify(t.Context(), forged); !errors.Is(err, fileinfo.ErrBadSignature) {
		t.Errorf("info signed by a stranger: %v, want a bad signature", err)
	}
	for i, name := range []string{pinFileName, pinFileName + "-2"} {
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if strings.TrimSpace(string(b)) != fileinfo.EncodeKey(pubs[i]) {
			t.Errorf("pin file %s: %q, want origin %d's key", name, b, i)
		}
	}
	// A restart reads both pins back.
	tr, err = newTrust(nil, origins, dir, http.DefaultClient, slog.New(slog.DiscardHandler))
	if keys, src := tr.state(); err != nil || len(keys) != 2 || src != keysPinned {
		t.Errorf("after a restart: %v, keys %q from %q", err, keys, src)
	}
}
