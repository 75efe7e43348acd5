// Package testtool holds what tests need beyond the standard library.
// Require lets a test depend on an outside program (ffmpeg, aria2c,
// nginx, wrk, promtool): on a laptop without one the test skips with a
// clear message; in CI (the CI environment variable set) it fails, because
// in CI nothing may skip. StartRedis runs a Redis server. NewCA makes a certificate authority of the
// test's own, for servers on HTTPS that only the test trusts.
package testtool
