package swarm

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/httpclient"
)

// Announce events, as sent in the event parameter.
const (
	EventNone      Event = ""
	EventStarted   Event = "started"
	EventCompleted Event = "completed"
	EventStopped   Event = "stopped"
)

// Event is an announce's event.
type Event string

// Bounds on what a tracker may make an announce cost: the answer is read
// into memory whole, so its size is capped; a real answer with
// maxAnswerPeers compact peers is about 1 KiB. Peers past maxAnswerPeers
// are ignored.
const (
	maxAnswerBytes = 2 << 20
	maxAnswerPeers = 500
)

// announceAnswer is what the proxy uses of an announce answer.
type announceAnswer struct {
	interval time.Duration
	peers    []fileinfo.Peer
	// swarm is the number of peers the tracker counts (complete plus
	// incomplete), for the planner's share of the origin budget.
	swarm int64
}

// parseAnnounceAnswer decodes a BEP 3 announce answer: the interval, the
// peers in compact (BEP 23, BEP 7's peers6) or dictionary form, or the
// tracker's failure reason as an error. Everything else is skipped.
func parseAnnounceAnswer(b []byte) (announceAnswer, error) {
	var a announceAnswer
	var failure []byte
	failed := false
	d := &bdecoder{b: b}
	err := d.dict(func(key []byte) error {
		var err error
		switch string(key) {
		case "failure reason":
			failure, err = d.str()
			failed = true
		case "interval":
			var n int64
			if n, err = d.int(); err == nil {
				if n < 0 || n > int64(24*time.Hour/time.Second) {
					return fmt.Errorf("%w: interval %d out of range", errBencode, n)
				}
				a.interval = time.Duration(n) * time.Second
			}
		case "peers":
			if c, _ := d.peek(); c == 'l' {
				err = d.list(func() error { return a.dictPeer(d) })
			} else {
				err = a.compactPeers(d, 4)
			}
		case "peers6":
			err = a.compactPeers(d, 16)
		case "complete", "incomplete":
			var n int64
			if n, err = d.int(); err == nil && n > 0 {
				a.swarm += min(n, 1<<32)
			}
		default:
			err = d.skip()
		}
		return err
	})
	if err == nil {
		err = d.end()
	}
	if err != nil {
		return announceAnswer{}, err
	}
	if failed {
		return announceAnswer{}, fmt.Errorf("tracker refused the announce: %q", truncate(failure, 200))
	}
	return a, nil
}

// compactPeers reads a string of addresses of ipLen bytes, each followed
// by a two-byte port.
func (a *announceAnswer) compactPeers(d *bdecoder, ipLen int) error {
	s, err := d.str()
	if err != nil {
		return err
	}
	n := ipLen + 2
	if len(s)%n != 0 {
		return fmt.Errorf("%w: compact peers of %d bytes, not a multiple of %d", errBencode, len(s), n)
	}
	for ; len(s) > 0; s = s[n:] {
		ip, _ := netip.AddrFromSlice(s[:ipLen])
		a.add(ip, int(binary.BigEndian.Uint16(s[ipLen:n])))
	}
	return nil
}

// dictPeer reads one {"ip": ..., "port": ...} peer.
func (a *announceAnswer) dictPeer(d *bdecoder) error {
	var ip netip.Addr
	var port int64
	err := d.dict(func(key []byte) error {
		switch string(key) {
		case "ip":
			s, err := d.str()
			if err == nil {
				ip, _ = netip.ParseAddr(string(s))
			}
			return err
		case "port":
			var err error
			port, err = d.int()
			return err
		default:
			return d.skip()
		}
	})
	if err == nil && port > 0 && port <= 65535 {
		a.add(ip, int(port))
	}
	return err
}

func (a *announceAnswer) add(ip netip.Addr, port int) {
	if !ip.IsValid() || port == 0 || len(a.peers) >= maxAnswerPeers {
		return
	}
	a.peers = append(a.peers, fileinfo.Peer{IP: ip.Unmap().String(), Port: port})
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// announceRequest is one announce's parameters.
type announceRequest struct {
	infoHash, peerID [20]byte
	port             int
	uploaded, left   int64
	event            Event
}

// announceURL adds the request's parameters to the tracker's announce URL.
func (r *announceRequest) announceURL(base string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("announce URL %q is not an http(s) URL", base)
	}
	q := u.Query()
	q.Set("info_hash", string(r.infoHash[:]))
	q.Set("peer_id", string(r.peerID[:]))
	q.Set("port", strconv.Itoa(r.port))
	q.Set("uploaded", strconv.FormatInt(r.uploaded, 10))
	q.Set("downloaded", "0")
	q.Set("left", strconv.FormatInt(r.left, 10))
	q.Set("compact", "1")
	if r.event != EventNone {
		q.Set("event", string(r.event))
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

// announce makes one announce with hc and decodes the answer, reading at
// most maxAnswerBytes of it.
func announce(ctx context.Context, hc *http.Client, base string, r *announceRequest) (announceAnswer, error) {
	u, err := r.announceURL(base)
	if err != nil {
		return announceAnswer{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return announceAnswer{}, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return announceAnswer{}, err
	}
	// Closing without draining drops the connection of an answer that was
	// too long: better than reading the rest of it.
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return announceAnswer{}, fmt.Errorf("tracker answered %s", resp.Status)
	}
	body, err := httpclient.ReadAll(resp, maxAnswerBytes)
	if err != nil {
		return announceAnswer{}, err
	}
	return parseAnnounceAnswer(body)
}

// newHTTPClient is the swarm's one client for announces when the caller
// gives none: certificates verified against the system's roots,
// connections kept alive across announces, every phase bounded in time.
func newHTTPClient() *http.Client {
	tc, _ := httpclient.TLSConfig("") // no file to fail on
	return &http.Client{Timeout: 30 * time.Second, Transport: httpclient.NewTransport(tc)}
}
