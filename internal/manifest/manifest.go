package manifest

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"mime"
	"path"
	"strconv"
	"strings"
	"time"
)

// MaxSize bounds a manifest the proxy reads into memory: ten hours of
// two-second HLS segments take about 1 MiB.
const MaxSize = 4 << 20

// StaticTTL is how long a copy of an on-demand manifest is answered from
// before it is revalidated, as long as a complete file in the cache.
const StaticTTL = 30 * time.Second

// Kind is what a manifest's body says of its future.
type Kind int

const (
	// Live may change at any time: revalidate before every answer.
	Live Kind = iota
	// Static will not change: keep it like any file.
	Static
)

func (k Kind) String() string {
	if k == Static {
		return "static"
	}
	return "live"
}

// types are the media types of HLS playlists (RFC 8216 and the
// historical ones players still send) and DASH manifests.
var types = map[string]bool{
	"application/vnd.apple.mpegurl": true,
	"application/x-mpegurl":         true,
	"audio/mpegurl":                 true,
	"audio/x-mpegurl":               true,
	"application/dash+xml":          true,
}

// ByName reports whether a path names a manifest: an HLS playlist
// (.m3u8) or a DASH manifest (.mpd).
func ByName(p string) bool {
	switch strings.ToLower(path.Ext(p)) {
	case ".m3u8", ".mpd":
		return true
	}
	return false
}

// ByType reports whether a Content-Type is a manifest's.
func ByType(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && types[mt]
}

// Classify tells a live manifest from an on-demand one by its body.
// Anything it cannot read as either is Live: revalidating a file that did
// not need it costs a 304, keeping a live one stalls every player.
func Classify(body []byte) Kind {
	b := bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	b = bytes.TrimLeft(b, " \t\r\n")
	switch {
	case bytes.HasPrefix(b, []byte("#EXTM3U")):
		return classifyHLS(b)
	case bytes.HasPrefix(b, []byte("<")):
		return classifyDASH(b)
	}
	return Live
}

// classifyHLS: a playlist with EXT-X-ENDLIST gets no more segments, and
// one of type VOD "MUST NOT change" (RFC 8216 4.3.3.5). EVENT playlists
// and master playlists of live streams may still change.
func classifyHLS(b []byte) Kind {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxSize)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "#EXT-X-ENDLIST" || line == "#EXT-X-PLAYLIST-TYPE:VOD" {
			return Static
		}
	}
	return Live
}

// classifyDASH reads the MPD element's type attribute: "dynamic" is live,
// "static" (the default when absent, ISO/IEC 23009-1 5.3.1.2) is not. Only
// the document's first element is read, so depth is no concern.
func classifyDASH(b []byte) Kind {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.RawToken()
		if err != nil {
			return Live
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if se.Name.Local != "MPD" {
			return Live
		}
		for _, a := range se.Attr {
			if a.Name.Local == "type" {
				if strings.TrimSpace(a.Value) == "static" {
					return Static
				}
				return Live
			}
		}
		return Static
	}
}

// Fresh reports whether a copy of kind k, last validated with the origin
// at checked, may answer a request that arrived at arrived (now is the
// time of the decision). A live copy is fresh only if its validation began
// after the request arrived: requests that wait for one in-flight
// revalidation share its answer, and none gets a copy older than itself.
// A static copy is fresh for StaticTTL.
func Fresh(k Kind, checked, arrived, now time.Time) bool {
	if k == Static {
		return now.Sub(checked) < StaticTTL
	}
	return !checked.Before(arrived)
}

// ServeOnOriginError reports whether a copy of kind k may be answered when
// the origin cannot be asked: only a static one, which cannot have
// changed. A live copy would be the stale playlist players stall on; an
// error makes them retry.
func ServeOnOriginError(k Kind) bool { return k == Static }

// Next returns the media paths of the last n segments an HLS media
// playlist at playlist (a slash-separated media path) names: those a live
// viewer asks for next. Only relative URIs are followed (an absolute URL,
// an absolute path or one with a query names something other than a file
// beside the playlist), and never another playlist. The paths are joined,
// not validated: the caller cleans them like any request path.
func Next(playlist string, body []byte, n int) []string {
	b := bytes.TrimPrefix(body, []byte("\xef\xbb\xbf"))
	if !bytes.HasPrefix(b, []byte("#EXTM3U")) || n <= 0 {
		return nil
	}
	var uris []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), MaxSize)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.Contains(line, "://") || strings.HasPrefix(line, "/") || strings.ContainsAny(line, "?#") || ByName(line):
		default:
			uris = append(uris, line)
		}
	}
	uris = uris[max(0, len(uris)-n):]
	out := make([]string, len(uris))
	for i, u := range uris {
		out[i] = path.Join(path.Dir(playlist), u)
	}
	return out
}

// TargetDuration is an HLS media playlist's EXT-X-TARGETDURATION, the
// longest segment's duration rounded (RFC 8216 4.3.3.1): how often a live
// one gets a new segment. 0 when the body has none.
func TargetDuration(body []byte) time.Duration {
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), MaxSize)
	for sc.Scan() {
		v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "#EXT-X-TARGETDURATION:")
		if !ok {
			continue
		}
		sec, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || sec <= 0 || sec > 3600 {
			return 0
		}
		return time.Duration(sec) * time.Second
	}
	return 0
}
