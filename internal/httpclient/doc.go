// Package httpclient builds the HTTP clients the roles talk to each other
// with, and reads their answers within bounds. A transport verifies the
// server's certificate against a CA file or the system's roots (never
// skipping the check), keeps connections alive and bounds every phase
// before the body in time; one is made per purpose and reused, so a
// request finds a warm connection. What a server answers is read into
// memory only up to a limit, past which the answer is refused with
// ErrTooLarge rather than read on.
package httpclient
