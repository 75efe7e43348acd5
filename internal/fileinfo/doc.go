// Package fileinfo holds the file-info record that the tracker serves, the
// origin computes and the proxy trusts: a file's size, piece layout, piece
// SHA-1 hashes, whole-file SHA-256, infohash, the origins that serve it and,
// in tracker answers, its current peers.
//
// Everything that crosses the network in this shape is checked with
// Info.Validate before use: the proxy decodes it from the tracker, which may
// be wrong or hostile.
//
// Report is the other record that crosses the network: the problem a proxy
// reports to the tracker and the origin, checked with Report.Validate.
package fileinfo
