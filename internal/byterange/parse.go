package byterange

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Range is one satisfiable byte range [Start, Start+Length).
type Range struct{ Start, Length int64 }

// ContentRange formats "bytes START-END/SIZE", the Content-Range of r in a
// representation of size bytes.
func (r Range) ContentRange(size int64) string {
	b := make([]byte, 0, 64)
	b = append(b, "bytes "...)
	b = strconv.AppendInt(b, r.Start, 10)
	b = append(b, '-')
	b = strconv.AppendInt(b, r.Start+r.Length-1, 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, size, 10)
	return string(b)
}

// ErrMalformed is wrapped by Parse's errors for a byte range set that
// breaks RFC 9110's grammar ("bytes=abc"); Serve answers it 416 with
// Content-Range: bytes */SIZE and the reason, as nginx does. RFC 9110
// section 14.2 lets a server ignore or reject an invalid range; 400 would
// be neither, and players take it for a dead URL.
var ErrMalformed = errors.New("malformed Range header")

// ErrUnsatisfiable is wrapped by Parse's errors for a well-formed byte range
// set none of whose ranges overlaps the representation; Serve answers it 416
// with Content-Range: bytes */SIZE.
var ErrUnsatisfiable = errors.New("range not satisfiable")

// maxQuoted bounds how much of the client's header an error message repeats.
const maxQuoted = 40

// Parse parses a Range header value for a representation of size bytes.
// A header that is not a range at all (empty, no "unit=", a unit that is
// not a token), a range unit other than "bytes" and an empty byte range
// set give (nil, nil): the whole representation (RFC 9110 section 14.2: an
// unknown unit is ignored, an invalid range may be). Returned errors wrap
// ErrMalformed or ErrUnsatisfiable with a reason.
//
// The ranges come back in the client's order, neither sorted nor merged;
// every one lies inside [0, size) and has a positive Length. Ranges that
// do not overlap the representation, and ranges whose last byte comes
// before their first (invalid by section 14.1.1), are dropped; only when
// none is left is the set unsatisfiable. A number too large for an int64
// is larger than any representation and is taken as the largest int64:
// the grammar is 1*DIGIT, so "bytes=0-99999999999999999999" is the whole
// file and "bytes=99999999999999999999-" is past its end.
func Parse(header string, size int64) ([]Range, error) {
	header = trimOWS(header)
	if header == "" {
		return nil, nil
	}
	unit, set, ok := strings.Cut(header, "=")
	// Range unit names are case-insensitive (RFC 9110 section 14.1). What
	// names no unit is no range request.
	if !ok || !strings.EqualFold(trimOWS(unit), "bytes") {
		return nil, nil
	}
	var ranges []Range
	specs := 0
	// range-set is a #list: empty elements and OWS around commas are allowed
	// (RFC 9110 section 5.6.1.2).
	for spec := range strings.SplitSeq(set, ",") {
		spec = trimOWS(spec)
		if spec == "" {
			continue
		}
		specs++
		r, ok, err := parseSpec(spec, size)
		if err != nil {
			return nil, err
		}
		if ok {
			ranges = append(ranges, r)
		}
	}
	if specs == 0 {
		// "bytes=" asks for nothing in particular: nginx ignores it too.
		return nil, nil
	}
	if len(ranges) == 0 {
		return nil, fmt.Errorf("%w: no range of %s overlaps the %d bytes", ErrUnsatisfiable, quote(set), max(size, 0))
	}
	return ranges, nil
}

// parseSpec parses one byte-range-spec. It reports ok=false for a
// well-formed spec that does not overlap the representation.
func parseSpec(spec string, size int64) (r Range, ok bool, err error) {
	first, last, found := strings.Cut(spec, "-")
	if !found {
		return Range{}, false, fmt.Errorf("%w: range %s has no '-'", ErrMalformed, quote(spec))
	}
	// Whitespace around the '-' is not in RFC 9110's grammar, but net/http
	// accepts it and no byte can be misread because of it.
	first, last = trimOWS(first), trimOWS(last)
	if first == "" {
		// suffix-range: the last n bytes.
		n, err := parseNum(last)
		if err != nil {
			return Range{}, false, fmt.Errorf("%w: suffix length %s: %w", ErrMalformed, quote(last), err)
		}
		// A zero suffix selects nothing, and an empty representation has no
		// last bytes to give: neither can be written as a Content-Range.
		if n == 0 || size <= 0 {
			return Range{}, false, nil
		}
		n = min(n, size)
		return Range{Start: size - n, Length: n}, true, nil
	}
	start, err := parseNum(first)
	if err != nil {
		return Range{}, false, fmt.Errorf("%w: first-byte-pos %s: %w", ErrMalformed, quote(first), err)
	}
	end := int64(-1) // open: to the end
	if last != "" {
		end, err = parseNum(last)
		if err != nil {
			return Range{}, false, fmt.Errorf("%w: last-byte-pos %s: %w", ErrMalformed, quote(last), err)
		}
		if end < start {
			// Invalid (section 14.1.1) but well-formed: it selects no byte,
			// as nginx reads it.
			return Range{}, false, nil
		}
	}
	if start >= size {
		return Range{}, false, nil
	}
	if end < 0 || end >= size-1 {
		return Range{Start: start, Length: size - start}, true, nil
	}
	return Range{Start: start, Length: end - start + 1}, true, nil
}

var errNotNumber = errors.New("not a decimal number")

// parseNum parses 1*DIGIT. Unlike strconv.ParseInt it refuses signs, and a
// number past the largest int64 saturates there: as a byte position or a
// suffix length it is past any representation all the same.
func parseNum(s string) (int64, error) {
	if s == "" {
		return 0, errNotNumber
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errNotNumber
		}
		d := int64(c - '0')
		if n > (1<<63-1-d)/10 {
			n = 1<<63 - 1
			continue
		}
		n = n*10 + d
	}
	return n, nil
}

// trimOWS trims RFC 9110's optional whitespace: spaces and tabs.
func trimOWS(s string) string {
	return strings.Trim(s, " \t")
}

// quote quotes the client's text for an error message, cut to maxQuoted
// bytes so that a 64 KiB header does not come back whole.
func quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.Quote(s[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}
