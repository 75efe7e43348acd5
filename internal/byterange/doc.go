// Package byterange is p2sp's one implementation of HTTP range requests:
// the origin serves media files with it and the proxy serves streams with
// it, so both answer players the same way.
//
// Parse turns a Range header into satisfiable byte ranges; Serve answers a
// request from a Content (size, validators, and an Open that yields the
// bytes of one range), with preconditions, If-Range, 206 single and
// multipart/byteranges responses, 416, and HEAD. Serve never reads more
// than Content-Length bytes from Open's reader, and when a body cannot be
// completed it stops short, so a client sees a failed transfer and never
// wrong bytes. An *io.LimitedReader over an *os.File from Open reaches the
// ResponseWriter's ReadFrom unwrapped, so the kernel can sendfile it, also
// under gin, whose writer hides ReadFrom: Serve finds it through Unwrap.
//
// The behaviour is net/http's ServeContent (fs.go: parseRange,
// serveContent, checkPreconditions), with these differences where net/http
// departs from RFC 9110 or from what p2sp needs:
//
//   - A range unit other than "bytes" is ignored and the whole
//     representation is sent (RFC 9110 section 14.2); net/http answers 416.
//     Unit names are case-insensitive (section 14.1): "Bytes=0-1" works.
//   - "bytes=-0" is unsatisfiable (section 14.1.1: a suffix range needs a
//     non-zero length); net/http sends the whole file.
//   - Invalid ranges are answered per case as nginx answers them (RFC
//     9110 section 14.2 lets a server ignore or reject them, never with
//     400): a header that names no unit ("bytes", "0-5") and an empty set
//     ("bytes=") are ignored, 200 whole; a byte range set that breaks the
//     grammar (letters, signs, "1-2-3") is 416 with Content-Range: bytes
//     */SIZE and the reason; a range whose last byte comes before its
//     first ("5-4") selects nothing, so alone it is 416. Two Range fields
//     are ignored (nginx takes the first): neither is more the client's.
//     Unlike nginx, a number past int64 is a position past any
//     representation (the grammar is 1*DIGIT): "bytes=0-99999999999999999999"
//     is the whole file, 206, where nginx answers 416.
//   - Any byte range on an empty representation is 416: no Content-Range
//     can describe a range of it. net/http answers 200. Without a Range an
//     empty representation is a 200 with an empty body.
//   - Serve does not sniff content types: ContentType, else Name's
//     extension, else application/octet-stream.
//   - Accept-Ranges: bytes is sent on every response Serve writes.
//
// What stays as in net/http: suffix ranges longer than the representation
// select all of it, last-byte-pos is clamped to size-1, first-byte-pos at
// or past the end drops that range (416 when none is left), whitespace
// around list elements (and around '-') is tolerated, ranges are served in
// the order asked and not merged, a set whose lengths add up to more than
// the size is answered 200 whole, If-Range compares an entity tag strongly
// and a date to the second, and error responses drop ETag and
// Last-Modified.
//
// One addition bounds work: a request for more than 100 ranges is answered
// 200 with the whole representation, as section 14.2 allows a server to
// ignore Range.
package byterange
