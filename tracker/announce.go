package tracker

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
)

// Event is an announce's event parameter.
type Event string

// The events of BEP 3; EventNone is a regular, periodic announce.
const (
	EventNone      Event = ""
	EventStarted   Event = "started"
	EventCompleted Event = "completed"
	EventStopped   Event = "stopped"
)

// Bounds of an announce's numwant.
const (
	DefaultNumWant = 50
	MaxNumWant     = 200
)

// maxQueryLen bounds the query string ParseAnnounce looks at; a real
// announce is a few hundred bytes.
const maxQueryLen = 4 << 10

// Announce is a parsed, checked BitTorrent HTTP announce request.
type Announce struct {
	InfoHash [20]byte
	PeerID   [20]byte
	// Addr is the peer's address: the request's remote IP (any "ip"
	// parameter is ignored, so nobody can announce somebody else) and the
	// announced port.
	Addr       netip.AddrPort
	Uploaded   int64
	Downloaded int64
	Left       int64
	Event      Event
	// NumWant is how many peers to answer with, in [0, MaxNumWant].
	NumWant int
	// Compact asks for BEP 23 compact peers; true unless compact=0.
	Compact bool
	// NoPeerID leaves peer ids out of a non-compact answer.
	NoPeerID bool
	// Cred is the passkey the announce URL carried (its SHA-256).
	Cred credID
}

// ParseAnnounce parses the query string of an announce request made from
// remote. It accepts only what a correct client sends: info_hash and
// peer_id of exactly 20 bytes once URL-decoded, a port in
// MinPeerPort..65535 (nobody may make proxies dial a system service),
// non-negative uploaded, downloaded and left (left is required), a known
// event, and compact 0 or 1. A negative numwant means the default; a large
// one is capped at MaxNumWant. Unknown parameters are ignored.
func ParseAnnounce(rawQuery string, remote netip.Addr) (Announce, error) {
	var a Announce
	if len(rawQuery) > maxQueryLen {
		return a, fmt.Errorf("query longer than %d bytes", maxQueryLen)
	}
	if !remote.IsValid() {
		return a, errors.New("unknown remote address")
	}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return a, errors.New("malformed query string")
	}
	if err := hash20(q, "info_hash", &a.InfoHash); err != nil {
		return a, err
	}
	if err := hash20(q, "peer_id", &a.PeerID); err != nil {
		return a, err
	}
	port, err := single(q, "port", true)
	if err != nil {
		return a, err
	}
	pn, err := strconv.ParseUint(port, 10, 16)
	if err != nil || pn < MinPeerPort {
		return a, fmt.Errorf("port is not in %d..65535", MinPeerPort)
	}
	a.Addr = netip.AddrPortFrom(remote.Unmap().WithZone(""), uint16(pn))
	for _, f := range []struct {
		key      string
		required bool
		v        *int64
	}{
		{"uploaded", false, &a.Uploaded},
		{"downloaded", false, &a.Downloaded},
		{"left", true, &a.Left},
	} {
		s, err := single(q, f.key, f.required)
		if err != nil {
			return a, err
		}
		if s == "" {
			continue
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			return a, fmt.Errorf("%s is not a non-negative integer", f.key)
		}
		*f.v = n
	}
	ev, err := single(q, "event", false)
	if err != nil {
		return a, err
	}
	switch Event(ev) {
	case EventNone, EventStarted, EventCompleted, EventStopped:
		a.Event = Event(ev)
	case "paused":
		// BEP 21: a partial seed that wants nothing more (transmission
		// sends it for a torrent with unwanted files). It stays in the
		// swarm, so to the swarm it is a regular announce.
		a.Event = EventNone
	default:
		return a, errors.New("unknown event")
	}
	a.NumWant = DefaultNumWant
	nw, err := single(q, "numwant", false)
	if err != nil {
		return a, err
	}
	if nw != "" {
		n, err := strconv.ParseInt(nw, 10, 64)
		// An overflowing numwant still means "as many as you can".
		if err != nil && !(errors.Is(err, strconv.ErrRange) && n > 0) {
			return a, errors.New("numwant is not an integer")
		}
		if n >= 0 {
			a.NumWant = int(min(n, MaxNumWant))
		}
	}
	a.Compact = true
	switch c, err := single(q, "compact", false); {
	case err != nil:
		return a, err
	case c == "0":
		a.Compact = false
	case c != "" && c != "1":
		return a, errors.New("compact is not 0 or 1")
	}
	a.NoPeerID = q.Get("no_peer_id") == "1"
	return a, nil
}

// single returns the one value of key, "" when it is absent and not
// required. A repeated key is an error: which value would count?
func single(q url.Values, key string, required bool) (string, error) {
	vs := q[key]
	switch {
	case len(vs) > 1:
		return "", fmt.Errorf("%s given more than once", key)
	case len(vs) == 0 && required:
		return "", fmt.Errorf("%s is missing", key)
	case len(vs) == 0:
		return "", nil
	}
	return vs[0], nil
}

// hash20 reads the required, single, 20-byte parameter key into dst.
func hash20(q url.Values, key string, dst *[20]byte) error {
	s, err := single(q, key, true)
	if err != nil {
		return err
	}
	if len(s) != len(dst) {
		return fmt.Errorf("%s is %d bytes, not 20", key, len(s))
	}
	copy(dst[:], s)
	return nil
}
