// Package fetch makes the proxy's requests to an origin: a HEAD for a file's
// size and validators, and range GETs that are checked before a byte is
// used. An origin that ignores Range, answers another range than asked,
// or serves another version of the file (ETag) is an error, never bytes:
// a player must never get misaligned or mixed data.
//
// A Pool spreads those requests over several origins of the same media and
// moves a body to another origin when its origin fails mid-body, for a
// version named by its content ETag only (see Pool).
package fetch
