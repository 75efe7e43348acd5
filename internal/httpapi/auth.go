package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"
)

// MinTokenLen is the shortest shared secret the origin and the tracker
// accept: 16 bytes, what `openssl rand -hex 8` prints, is out of reach of
// the guesses that AuthGuard lets through.
const MinTokenLen = 16

// CheckToken returns the shared secret without surrounding whitespace (an
// HTTP header cannot carry it, so the two sides would never agree), or an
// error if what is left is shorter than MinTokenLen.
func CheckToken(token string) (string, error) {
	t := strings.TrimSpace(token)
	if t == "" {
		return "", fmt.Errorf("a token is required")
	}
	if len(t) < MinTokenLen {
		return "", fmt.Errorf("the token is %d bytes long (after trimming spaces); at least %d are required, e.g. openssl rand -hex 16", len(t), MinTokenLen)
	}
	return t, nil
}

// Failed authentications an address may make: a burst of authFailBurst,
// then one every authFailEvery. A client with a right token that was
// mistyped once is not slowed; guessing is, to 10 a minute.
const (
	authFailBurst = 10
	authFailEvery = 6 * time.Second
	maxAuthAddrs  = 4096
)

// AuthGuard limits failed authentications per address (per /64 for IPv6):
// once an address has failed too often, its requests are refused with 429
// before any token is looked at, the right one too, so that refusals tell
// a guesser nothing.
type AuthGuard struct{ l *IPLimiter }

// NewAuthGuard returns a guard with the project's limits.
func NewAuthGuard() *AuthGuard {
	return &AuthGuard{l: NewIPLimiter(rate.Every(authFailEvery), authFailBurst, maxAuthAddrs)}
}

// Refused returns a 429 *Error, with a Retry-After set on w, if r's
// address has no failures left; nil otherwise. Call it before checking the
// credential.
func (g *AuthGuard) Refused(w http.ResponseWriter, r *http.Request) error {
	if g.l.Exhausted(RemoteAddr(r)) {
		w.Header().Set("Retry-After", fmt.Sprint(int(authFailEvery.Seconds())))
		return Errorf(http.StatusTooManyRequests, "too many failed authentications from this address; retry later")
	}
	return nil
}

// Failed records a failed authentication from r's address.
func (g *AuthGuard) Failed(r *http.Request) { g.l.Allow(RemoteAddr(r)) }

// Prune forgets addresses that have not failed for a while.
func (g *AuthGuard) Prune() { g.l.Prune() }
