// Package httpapi is what every p2sp HTTP server shares: handlers that
// return errors (one place turns an error into a status and a body), the
// /healthz and /readyz probes, serving a handler on a listener until a
// context ends, with a graceful shutdown and Timeouts that close idle and
// stalled connections but never a response that keeps moving, per-address rate limiting
// (IPLimiter, keyed by RemoteAddr), and the shared secret's rules: at
// least MinTokenLen bytes (CheckToken), and failed authentications limited
// per address (AuthGuard).
package httpapi
