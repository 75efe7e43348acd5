package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/testtool"
)

// TestFFmpegPlaysThroughProxy: a real MP4, made here with ffmpeg, is read
// by ffprobe through the proxy and ffmpeg seeks into it, as a player would.
func TestFFmpegPlaysThroughProxy(t *testing.T) {
	ffmpeg := testtool.Require(t, "ffmpeg")
	ffprobe := testtool.Require(t, "ffprobe")
	c := start(t, demo.Config{Proxies: 2, ScanInterval: 200 * time.Millisecond})
	// Not faststart: the moov atom is at the end, so a player must read the
	// head, then the tail, then seek.
	out := filepath.Join(c.Media, "movie.mp4")
	tmp := filepath.Join(c.Dir, "movie.mp4")
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	gen := exec.CommandContext(ctx, ffmpeg, "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-f", "lavfi", "-i", "sine=frequency=300",
		"-t", "12", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-y", tmp)
	if b, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("make MP4: %v: %s", err, b)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatal(err)
	}
	waitInfo(t, c, "movie.mp4", "")

	for _, p := range c.Proxies {
		url := streamURL(p, "movie.mp4")
		probe := exec.CommandContext(ctx, ffprobe, "-v", "error", "-show_entries", "format=duration:stream=codec_name",
			"-of", "default=noprint_wrappers=1", url)
		b, err := probe.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: ffprobe: %v: %s", p.Name, err, b)
		}
		text := string(b)
		if !strings.Contains(text, "codec_name=h264") || !strings.Contains(text, "codec_name=aac") {
			t.Fatalf("%s: ffprobe sees %q, want h264 and aac streams", p.Name, text)
		}
		dur := 0.0
		for _, line := range strings.Split(text, "\n") {
			if v, ok := strings.CutPrefix(line, "duration="); ok {
				dur, _ = strconv.ParseFloat(v, 64)
			}
		}
		if dur < 11.5 || dur > 12.5 {
			t.Fatalf("%s: duration %v, want 12 s", p.Name, dur)
		}
		// Seek to 8 s and decode two seconds: the frames must decode cleanly.
		seek := exec.CommandContext(ctx, ffmpeg, "-v", "error", "-xerror", "-ss", "8", "-i", url, "-t", "2", "-f", "null", "-")
		if b, err := seek.CombinedOutput(); err != nil {
			t.Fatalf("%s: ffmpeg -ss 8: %v: %s", p.Name, err, b)
		}
	}
}
