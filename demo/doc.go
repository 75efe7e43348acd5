// Package demo runs a whole p2sp system in one process: a tracker, an
// origin over a media directory (sample media by default) and proxies, all
// on 127.0.0.1 with free ports and a fresh random token. `p2sp demo` uses
// it, and so do the end-to-end tests, which stop and restart its services
// to see what players see.
package demo
