package manifest

import (
	"testing"
	"time"
)

func TestByNameAndType(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"live/index.m3u8", true},
		{"live/INDEX.M3U8", true},
		{"show/manifest.mpd", true},
		{"live/seg1.ts", false},
		{"live/index.m3u8.tmp", false},
		{"films/a.mp4", false},
		{"m3u8", false},
	} {
		if got := ByName(tc.name); got != tc.want {
			t.Errorf("ByName(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		ctype string
		want  bool
	}{
		{"application/vnd.apple.mpegurl", true},
		{"application/x-mpegURL", true},
		{"audio/mpegurl; charset=utf-8", true},
		{"application/dash+xml", true},
		{"video/mp2t", false},
		{"application/octet-stream", false},
		{"", false},
		{"not a type;;", false},
	} {
		if got := ByType(tc.ctype); got != tc.want {
			t.Errorf("ByType(%q) = %v, want %v", tc.ctype, got, tc.want)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want Kind
	}{
		{"hls live window", "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:1.0,\nindex7.ts\n", Live},
		{"hls event", "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:EVENT\n#EXTINF:2.0,\na0.ts\n", Live},
		{"hls ended", "#EXTM3U\n#EXTINF:2.0,\na0.ts\n#EXT-X-ENDLIST\n", Static},
		{"hls ended, CRLF", "#EXTM3U\r\n#EXTINF:2.0,\r\na0.ts\r\n#EXT-X-ENDLIST\r\n", Static},
		{"hls vod type", "#EXTM3U\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXTINF:2.0,\na0.ts\n", Static},
		{"hls with BOM", "\xef\xbb\xbf#EXTM3U\n#EXT-X-ENDLIST\n", Static},
		{"hls master", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n", Live},
		{"endlist in a URI is not the tag", "#EXTM3U\n#EXTINF:2.0,\n#EXT-X-ENDLIST.ts\n", Live},
		{"dash dynamic", `<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="dynamic" minimumUpdatePeriod="PT2S"><Period/></MPD>`, Live},
		{"dash static", `<?xml version="1.0"?><MPD xmlns="urn:mpeg:dash:schema:mpd:2011" type="static"><Period/></MPD>`, Static},
		{"dash no type is static", `<MPD mediaPresentationDuration="PT60S"></MPD>`, Static},
		{"dash with a comment first", "<!-- made by x -->\n<MPD type=\"dynamic\"/>", Live},
		{"xml that is no MPD", `<html><body/></html>`, Live},
		{"broken xml", `<MPD type="stat`, Live},
		{"empty", "", Live},
		{"garbage", "\x00\x01\x02", Live},
	} {
		if got := Classify([]byte(tc.body)); got != tc.want {
			t.Errorf("%s: Classify = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestFresh(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name             string
		kind             Kind
		checked, arrived time.Time
		now              time.Time
		want             bool
	}{
		{"live, validated before the request", Live, t0, t0.Add(time.Millisecond), t0.Add(time.Millisecond), false},
		{"live, validation began as the request arrived", Live, t0, t0, t0.Add(time.Second), true},
		{"live, validation began while the request waited", Live, t0.Add(5 * time.Millisecond), t0, t0.Add(10 * time.Millisecond), true},
		{"live, never validated", Live, time.Time{}, t0, t0, false},
		{"static, young", Static, t0, t0.Add(time.Minute), t0.Add(StaticTTL - time.Nanosecond), true},
		{"static, old", Static, t0, t0.Add(time.Minute), t0.Add(StaticTTL), false},
	} {
		if got := Fresh(tc.kind, tc.checked, tc.arrived, tc.now); got != tc.want {
			t.Errorf("%s: Fresh = %v, want %v", tc.name, got, tc.want)
		}
	}
	if ServeOnOriginError(Live) || !ServeOnOriginError(Static) {
		t.Error("only a static copy may answer when the origin cannot")
	}
}

func TestNext(t *testing.T) {
	live := "#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:1.0,\nindex7.ts\n#EXTINF:1.0,\nindex8.ts\n#EXTINF:1.0,\nsub/index9.ts\n"
	for _, tc := range []struct {
		name     string
		playlist string
		body     string
		n        int
		want     []string
	}{
		{"the last two", "live/index.m3u8", live, 2, []string{"live/index8.ts", "live/sub/index9.ts"}},
		{"more than there are", "live/index.m3u8", live, 5, []string{"live/index7.ts", "live/index8.ts", "live/sub/index9.ts"}},
		{"at the top", "index.m3u8", live, 1, []string{"sub/index9.ts"}},
		{"none asked", "live/index.m3u8", live, 0, nil},
		{"absolute URLs, paths and queries are not followed", "live/index.m3u8",
			"#EXTM3U\n#EXTINF:1,\nhttp://cdn.example/a.ts\n#EXTINF:1,\n/abs/b.ts\n#EXTINF:1,\nc.ts?token=1\n#EXTINF:1,\nd.ts\n", 4, []string{"live/d.ts"}},
		{"a master playlist names no segments", "live/master.m3u8", "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\nlow/index.m3u8\n", 3, []string{}},
		{"not a playlist", "live/index.m3u8", "<MPD/>", 3, nil},
	} {
		got := Next(tc.playlist, []byte(tc.body), tc.n)
		if len(got) != len(tc.want) {
			t.Errorf("%s: Next = %q, want %q", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: Next = %q, want %q", tc.name, got, tc.want)
				break
			}
		}
	}
}

func TestTargetDuration(t *testing.T) {
	for _, tc := range []struct {
		body string
		want time.Duration
	}{
		{"#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\na.ts\n", 2 * time.Second},
		{"#EXTM3U\n#EXT-X-TARGETDURATION: 6 \n", 6 * time.Second},
		{"#EXTM3U\n#EXTINF:2.0,\na.ts\n", 0},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:-1\n", 0},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:99999999\n", 0},
		{"#EXTM3U\n#EXT-X-TARGETDURATION:two\n", 0},
	} {
		if got := TargetDuration([]byte(tc.body)); got != tc.want {
			t.Errorf("TargetDuration(%q) = %v, want %v", tc.body, got, tc.want)
		}
	}
}
