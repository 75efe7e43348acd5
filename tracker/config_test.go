package tracker

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestConfigRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no token", Config{DataDir: dir}, "token"},
		{"one-byte token", Config{Token: "x", DataDir: dir}, "at least 16"},
		{"a space for a token", Config{Token: " ", DataDir: dir}, "token is required"},
		{"15 bytes once trimmed", Config{Token: "  0123456789abcde\n", DataDir: dir}, "at least 16"},
		{"no data dir", Config{Token: testToken}, "data directory"},
		{"bad public URL", Config{Token: testToken, DataDir: dir, PublicURL: "ftp://x"}, "public URL"},
		{"negative TTL", Config{Token: testToken, DataDir: dir, PeerTTL: -time.Second}, "negative"},
		{"store not redis", Config{Token: testToken, Store: "mysql://db/x"}, "not a redis:// URL"},
		{"redis not answering", Config{Token: testToken, Store: "redis://" + closedAddr(t) + "/0"}, "store"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(t.Context(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error about %q", err, tc.want)
			}
			if err := Run(t.Context(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c, err := Config{Token: " " + testToken + "\n", DataDir: "d", PublicURL: "https://t.example/"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Token != testToken {
		t.Errorf("token %q, want it trimmed to %q", c.Token, testToken)
	}
	if c.AnnounceInterval != 30*time.Second || c.PeerTTL != 90*time.Second || c.Registry == nil ||
		c.Logger == nil || c.Listen == "" || c.PublicURL != "https://t.example" {
		t.Fatalf("defaults %+v", c)
	}
}

// TestRunStopsWithContext: Run serves on its listener until the context
// ends, then returns nil and stops listening.
func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	logs := make(logLines, 64)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{Token: testToken, DataDir: t.TempDir(), Listen: "127.0.0.1:0",
			Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	}()
	var addr string
	for addr == "" {
		select {
		case line := <-logs:
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "tracker listening" {
				addr = rec.Addr
			}
		case err := <-done:
			t.Fatalf("Run returned before listening: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not log its address within 10 s")
		}
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatalf("tracker not serving on %s: %v", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/healthz: %s", resp.Status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10 s of the context's end")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections after Run returned", addr)
	}
}

// logLines passes each log record (a slog handler writes one a Write) to
// the test, dropping records nobody reads in time.
type logLines chan string

func (l logLines) Write(p []byte) (int, error) {
	select {
	case l <- string(p):
	default:
	}
	return len(p), nil
}
