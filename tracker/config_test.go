package tracker

import (
	"context"
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
		{"no data dir", Config{Token: "t"}, "data directory"},
		{"bad public URL", Config{Token: "t", DataDir: dir, PublicURL: "ftp://x"}, "public URL"},
		{"negative TTL", Config{Token: "t", DataDir: dir, PeerTTL: -time.Second}, "negative"},
		{"store not redis", Config{Token: "t", Store: "mysql://db/x"}, "not a redis:// URL"},
		{"redis not answering", Config{Token: "t", Store: "redis://" + closedAddr(t) + "/0"}, "store"},
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
	c, err := Config{Token: "t", DataDir: "d", PublicURL: "https://t.example/"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.AnnounceInterval != 30*time.Second || c.PeerTTL != 90*time.Second || c.Registry == nil ||
		c.Logger == nil || c.Listen == "" || c.PublicURL != "https://t.example" {
		t.Fatalf("defaults %+v", c)
	}
}

func TestRunStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, Config{Token: "t", DataDir: t.TempDir(), Listen: "127.0.0.1:0"}) }()
	time.Sleep(100 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
