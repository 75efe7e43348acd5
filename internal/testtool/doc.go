// Package testtool lets tests depend on outside programs (ffmpeg, aria2c,
// nginx, wrk, promtool): on a laptop without one the test skips with a
// clear message; in CI (the CI environment variable set) it fails, because
// in CI nothing may skip.
package testtool
