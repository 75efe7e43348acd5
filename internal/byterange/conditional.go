package byterange

import (
	"net/http"
	"strings"
	"time"
)

// The precondition checks follow net/http's fs.go, evaluated in the order
// of RFC 9110 section 13.2.2, against the Content's validators rather than
// the response's header map.

// condResult is the value of one precondition header.
type condResult int

const (
	condNone  condResult = iota // absent or to be ignored
	condTrue                    // holds
	condFalse                   // fails
)

// checkPreconditions evaluates the request's preconditions. It reports
// done when it answered 304 or 412, and otherwise the Range header to
// honour: "" when If-Range failed.
func checkPreconditions(w http.ResponseWriter, r *http.Request, c *Content) (done bool, rangeHeader string) {
	ch := checkIfMatch(r, c.ETag)
	if ch == condNone {
		ch = checkIfUnmodifiedSince(r, c.ModTime)
	}
	if ch == condFalse {
		w.WriteHeader(http.StatusPreconditionFailed)
		return true, ""
	}
	switch checkIfNoneMatch(r, c.ETag) {
	case condFalse:
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			writeNotModified(w)
		} else {
			w.WriteHeader(http.StatusPreconditionFailed)
		}
		return true, ""
	case condNone:
		if checkIfModifiedSince(r, c.ModTime) == condFalse {
			writeNotModified(w)
			return true, ""
		}
	}
	rangeHeader = r.Header.Get("Range")
	if rangeHeader != "" && checkIfRange(r, c.ETag, c.ModTime) == condFalse {
		rangeHeader = ""
	}
	return false, rangeHeader
}

// checkIfMatch: "*" or a strong match with the current ETag (RFC 9110
// section 13.1.1). A field that cannot be parsed fails.
func checkIfMatch(r *http.Request, etag string) condResult {
	im := r.Header.Get("If-Match")
	if im == "" {
		return condNone
	}
	for {
		im = trimOWS(im)
		if im == "" {
			break
		}
		if im[0] == ',' {
			im = im[1:]
			continue
		}
		if im[0] == '*' {
			return condTrue
		}
		t, remain := scanETag(im)
		if t == "" {
			break
		}
		if strongMatch(t, etag) {
			return condTrue
		}
		im = remain
	}
	return condFalse
}

// checkIfUnmodifiedSince is ignored without a modification time or with a
// date that does not parse (RFC 9110 section 13.1.4).
func checkIfUnmodifiedSince(r *http.Request, modtime time.Time) condResult {
	ius := r.Header.Get("If-Unmodified-Since")
	if ius == "" || isZeroTime(modtime) {
		return condNone
	}
	t, err := http.ParseTime(ius)
	if err != nil {
		return condNone
	}
	// Last-Modified carries whole seconds: compare what the client saw.
	if !modtime.Truncate(time.Second).After(t) {
		return condTrue
	}
	return condFalse
}

// checkIfNoneMatch: "*" or a weak match with the current ETag fails (RFC
// 9110 section 13.1.2).
func checkIfNoneMatch(r *http.Request, etag string) condResult {
	inm := r.Header.Get("If-None-Match")
	if inm == "" {
		return condNone
	}
	for {
		inm = trimOWS(inm)
		if inm == "" {
			break
		}
		if inm[0] == ',' {
			inm = inm[1:]
			continue
		}
		if inm[0] == '*' {
			return condFalse
		}
		t, remain := scanETag(inm)
		if t == "" {
			break
		}
		if weakMatch(t, etag) {
			return condFalse
		}
		inm = remain
	}
	return condTrue
}

// checkIfModifiedSince applies to GET and HEAD only (RFC 9110 section
// 13.1.3).
func checkIfModifiedSince(r *http.Request, modtime time.Time) condResult {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return condNone
	}
	ims := r.Header.Get("If-Modified-Since")
	if ims == "" || isZeroTime(modtime) {
		return condNone
	}
	t, err := http.ParseTime(ims)
	if err != nil {
		return condNone
	}
	if !modtime.Truncate(time.Second).After(t) {
		return condFalse
	}
	return condTrue
}

// checkIfRange holds for a strong ETag that strongly matches, or for a date
// equal to the Last-Modified Serve sends; anything else fails, and the
// Range is then ignored (RFC 9110 section 13.1.5).
func checkIfRange(r *http.Request, etag string, modtime time.Time) condResult {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return condNone
	}
	ir := trimOWS(r.Header.Get("If-Range"))
	if ir == "" {
		return condNone
	}
	if t, remain := scanETag(ir); t != "" {
		// The field holds one validator: trailing text makes it invalid.
		if trimOWS(remain) == "" && strongMatch(t, etag) {
			return condTrue
		}
		return condFalse
	}
	if isZeroTime(modtime) {
		return condFalse
	}
	t, err := http.ParseTime(ir)
	if err != nil {
		return condFalse
	}
	if t.Unix() == modtime.Unix() {
		return condTrue
	}
	return condFalse
}

// scanETag returns the entity tag at the start of s (after OWS) and the
// text after it, or "" if s does not start with one (RFC 9110 section
// 8.8.3).
func scanETag(s string) (etag, remain string) {
	s = trimOWS(s)
	start := 0
	if strings.HasPrefix(s, "W/") {
		start = 2
	}
	if len(s[start:]) < 2 || s[start] != '"' {
		return "", ""
	}
	for i := start + 1; i < len(s); i++ {
		c := s[i]
		switch {
		case c == 0x21 || c >= 0x23 && c <= 0x7E || c >= 0x80: // etagc
		case c == '"':
			return s[:i+1], s[i+1:]
		default:
			return "", ""
		}
	}
	return "", ""
}

// strongMatch: both strong and identical.
func strongMatch(a, b string) bool {
	return a == b && a != "" && a[0] == '"'
}

// weakMatch: identical once any W/ prefix is dropped.
func weakMatch(a, b string) bool {
	return b != "" && strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// isZeroTime reports whether t is unknown: zero or the Unix epoch, as in
// net/http, since a file system that does not keep times reports the
// epoch.
func isZeroTime(t time.Time) bool {
	return t.IsZero() || t.Equal(time.Unix(0, 0))
}

// writeNotModified answers 304 without the representation's metadata
// (RFC 9110 section 15.4.5), keeping Last-Modified only when there is no
// ETag to guide caches.
func writeNotModified(w http.ResponseWriter) {
	h := w.Header()
	delete(h, "Content-Type")
	delete(h, "Content-Length")
	delete(h, "Content-Encoding")
	if h.Get("ETag") != "" {
		delete(h, "Last-Modified")
	}
	w.WriteHeader(http.StatusNotModified)
}
