package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/testtool"
)

// browser starts a headless Chromium for the test and returns a context
// that runs actions in one of its tabs. Console errors and uncaught
// exceptions of the page are logged when the test ends.
func browser(t *testing.T, chromium string) context.Context {
	t.Helper()
	var out bytes.Buffer // Chromium's own stderr
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 900),
		chromedp.CombinedOutput(&out),
	)
	var mu sync.Mutex
	var console []string
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		var line string
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.ConsoleAPICalledTypeError && ev.Type != runtime.ConsoleAPICalledTypeWarning {
				return
			}
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			line = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " "))
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			line = fmt.Sprintf("exception: %s at %s:%d", d.Text, d.URL, d.LineNumber+1)
			if d.Exception != nil {
				line += ": " + d.Exception.Description
			}
		default:
			return
		}
		mu.Lock()
		console = append(console, line)
		mu.Unlock()
	}))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		mu.Lock()
		defer mu.Unlock()
		for _, l := range console {
			t.Log("page " + l)
		}
		if t.Failed() && out.Len() > 0 {
			t.Logf("chromium output:\n%s", out.Bytes())
		}
	})
	// The first Run starts the browser; it must not run under a timeout.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// run runs one step of the test with a deadline, failing the test with
// what the step was for.
func run[T any](t *testing.T, ctx context.Context, what string, timeout time.Duration, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// TestPagePlaysAndKeepsLists drives the proxy's page in headless Chromium
// as a user would: it searches the catalog with the keyboard, plays the
// sample MP4 through the proxy past three seconds, seeks, favourites it
// (which the origin then holds), and sees it in "recently played", also
// after a reload, while the page shows where the bytes came from.
func TestPagePlaysAndKeepsLists(t *testing.T) {
	chromium := testtool.Require(t, "chromium")
	c := start(t, demo.Config{Proxies: 1, ScanInterval: 200 * time.Millisecond})
	waitInfo(t, c, demo.SampleName, "")
	waitInfo(t, c, demo.ToneName, "")
	proxy := c.Proxies[0]
	ctx := browser(t, chromium)
	const (
		sampleRow = `#catalog li[data-path="sample.mp4"]`
		video     = `document.querySelector("#player video")`
		catalog   = `[...document.querySelectorAll("#catalog li")].map(li => li.dataset.path)`
	)

	run(t, ctx, "load the page", 30*time.Second, chromedp.Steps(
		chromedp.Navigate(proxy.URL+"/"),
		chromedp.Poll[chromedp.Void](`document.body.dataset.ready === "1"`),
	))
	if got := run(t, ctx, "read the catalog", 10*time.Second, chromedp.Evaluate[[]string](catalog)); !slices.Equal(got, []string{demo.SampleName, demo.ToneName}) {
		t.Fatalf("the page lists %v, want the sample and the tone", got)
	}
	if u := run(t, ctx, "read the user", 5*time.Second, chromedp.Text(chromedp.CSS("#user"))); !strings.Contains(u, c.User) {
		t.Errorf("the page says %q, want the user %q", u, c.User)
	}

	// Search with the keyboard: type, then Enter submits the form.
	run(t, ctx, "search", 30*time.Second, chromedp.Steps(
		chromedp.SendKeys(chromedp.CSS("#search"), "SAMP"+kb.Enter),
		chromedp.Poll[chromedp.Void](catalog+`.join() === "sample.mp4"`),
	))
	if n := run(t, ctx, "read the count", 5*time.Second, chromedp.Text(chromedp.CSS("#catalog-count"))); !strings.Contains(n, "1 match") {
		t.Errorf("the search says %q, want 1 match", n)
	}

	// Play until past 3 s.
	run(t, ctx, "press Play", 10*time.Second, chromedp.Click(chromedp.CSS(sampleRow+` button.play`)))
	src := run(t, ctx, "read the video source", 10*time.Second, chromedp.Poll[string](video+` && `+video+`.currentSrc`))
	if want := proxy.URL + "/stream/" + demo.SampleName; src != want {
		t.Fatalf("the video plays %q, want the proxy's %q", src, want)
	}
	run(t, ctx, "play past 3 s", 60*time.Second, chromedp.Poll[bool](video+`.currentTime > 3`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))

	// Seek forward: playback resumes from there.
	run(t, ctx, "seek", 5*time.Second, chromedp.Evaluate[float64](video+`.currentTime = 12`))
	run(t, ctx, "play on after the seek", 60*time.Second, chromedp.Poll[bool](`(v => !v.seeking && v.currentTime > 13.5 && !v.error)(`+video+`)`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(60*time.Second)))

	// The status panel shows where the bytes came from.
	pieces := run(t, ctx, "see the pieces held", 15*time.Second, chromedp.Poll[string](
		`(t => /^\d+ \/ \d+/.test(t) && t)(document.getElementById("st-pieces").textContent)`,
		chromedp.WithPollingTimeout(15*time.Second)))
	var held, total int
	if _, err := fmt.Sscanf(pieces, "%d / %d", &held, &total); err != nil || held == 0 || total == 0 {
		t.Errorf("pieces held %q, want some of the sample's", pieces)
	}
	fromOrigin := run(t, ctx, "read the origin bytes", 5*time.Second, chromedp.Text(chromedp.CSS("#st-origin")))
	if strings.HasPrefix(fromOrigin, "0 B") || fromOrigin == "–" {
		t.Errorf("the page says %q came from the origin, want the bytes of a first play", fromOrigin)
	}
	if alert := run(t, ctx, "read the alert", 5*time.Second, chromedp.Evaluate[string](
		`(p => p.hidden ? "" : p.textContent)(document.getElementById("verify-error"))`)); alert != "" {
		t.Errorf("the page shows a problem for a good file: %q", alert)
	}

	// Favourite it: the origin has it.
	run(t, ctx, "favourite", 15*time.Second, chromedp.Steps(
		chromedp.Click(chromedp.CSS(sampleRow+` button.fav`)),
		chromedp.WaitVisible(chromedp.CSS(`#favorites li[data-path="sample.mp4"]`)),
	))
	if pressed := run(t, ctx, "read the toggle", 5*time.Second, chromedp.AttributeValue(chromedp.CSS(sampleRow+` button.fav`), "aria-pressed")); pressed.Value != "true" {
		t.Errorf("the favourite toggle is aria-pressed=%q after adding", pressed.Value)
	}
	if got := originFavorites(t, c, c.User, c.UserToken); !slices.Equal(got, []string{":sample.mp4"}) {
		t.Fatalf("the origin has favourites %v, want the sample", got)
	}

	// The play was recorded, on the origin and on the page.
	run(t, ctx, "see recently played", 15*time.Second, chromedp.WaitVisible(chromedp.CSS(`#recent li[data-path="sample.mp4"]`)))
	if got := originRecent(t, c); !slices.Equal(got, []string{demo.SampleName}) {
		t.Fatalf("the origin has recent plays %v, want the sample", got)
	}

	shot := run(t, ctx, "screenshot", 15*time.Second, chromedp.FullScreenshot(100))
	name := filepath.Join(t.TempDir(), "page.png")
	if err := os.WriteFile(name, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", name)
	if dir := os.Getenv("P2SP_ARTIFACTS"); dir != "" {
		// CI keeps this directory; the test's own is removed at its end.
		if err := os.MkdirAll(dir, 0o755); err == nil {
			keep := filepath.Join(dir, "page.png")
			if err := os.WriteFile(keep, shot, 0o644); err == nil {
				t.Logf("screenshot kept: %s", keep)
			}
		}
	}

	// A reload shows the lists again: they come from the origin.
	run(t, ctx, "reload", 30*time.Second, chromedp.Steps(
		chromedp.Reload(),
		chromedp.Poll[chromedp.Void](`document.body.dataset.ready === "1"`),
		chromedp.WaitVisible(chromedp.CSS(`#favorites li[data-path="sample.mp4"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#recent li[data-path="sample.mp4"]`)),
	))
}

// TestPagePlaysLiveStream: a user finds a live HLS stream (ffmpeg encoding
// in real time into the origin's media) in the page's catalog and plays it
// in headless Chromium through the proxy, with hls.js (Chromium has no HLS
// of its own): the video plays, its time advancing with the wall clock.
func TestPagePlaysLiveStream(t *testing.T) {
	chromium := testtool.Require(t, "chromium")
	ffmpeg := testtool.Require(t, "ffmpeg")
	c := start(t, demo.Config{Proxies: 1, ScanInterval: 200 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	encode(ctx, t, ffmpeg, c.Media, 60*time.Second, "-g", "25", "-hls_time", "1")
	bctx := browser(t, chromium)
	const (
		row   = `#catalog li[data-path="live/index.m3u8"]`
		video = `document.querySelector("#player video")`
	)
	run(t, bctx, "load the page and find the stream", 30*time.Second, chromedp.Steps(
		chromedp.Navigate(c.Proxies[0].URL+"/"),
		chromedp.Poll[chromedp.Void](`document.body.dataset.ready === "1"`),
		chromedp.SendKeys(chromedp.CSS("#search"), "index.m3u8"+kb.Enter),
		chromedp.WaitVisible(chromedp.CSS(row+` button.play`)),
	))
	run(t, bctx, "press Play", 10*time.Second, chromedp.Click(chromedp.CSS(row+` button.play`)))
	start := run(t, bctx, "play the live stream", 30*time.Second, chromedp.Poll[float64](
		`(v => v && !v.paused && v.currentTime > 1 && v.currentTime)(`+video+`)`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	began := time.Now()
	if src := run(t, bctx, "read the source", 5*time.Second, chromedp.Evaluate[string](video+`.currentSrc`)); !strings.HasPrefix(src, "blob:") {
		t.Errorf("the video's source is %q, want hls.js's MediaSource (blob:)", src)
	}
	// Live: it keeps playing, its time advancing with the wall clock.
	later := run(t, bctx, "play on for 5 s", 30*time.Second, chromedp.Poll[float64](
		fmt.Sprintf(`(v => !v.error && v.currentTime > %f && v.currentTime)(`+video+`)`, start+5),
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second)))
	wall := time.Since(began)
	t.Logf("the video played from %.1f s to %.1f s in %v of wall time", start, later, wall.Round(time.Millisecond))
	if wall > 8*time.Second {
		t.Errorf("5 s of the live stream took %v of wall time to play", wall)
	}
	if alert := run(t, bctx, "read the alert", 5*time.Second, chromedp.Evaluate[string](
		`(p => p.hidden ? "" : p.textContent)(document.getElementById("verify-error"))`)); alert != "" {
		t.Errorf("the page shows a problem: %q", alert)
	}
}
