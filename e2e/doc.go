// Package e2e tests the whole system as players and operators see it: a
// real tracker, origin and proxies (started through package demo, as
// `p2sp demo` starts them) on 127.0.0.1, real HTTP, real BitTorrent
// connections and real files on disk. It has tests only.
package e2e
