package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/proxy"
)

// hostileMode is how a hostilePeer answers the requests it gets.
type hostileMode int

const (
	// sendUnrequested answers each request with a block of another piece
	// and never with the block asked for.
	sendUnrequested hostileMode = iota
	// sendShort answers each request with a block half as long as asked.
	sendShort
	// sendGarbage answers each request with random bytes of the right
	// length.
	sendGarbage
)

// BitTorrent message ids (BEP 3) the hostile peer uses.
const (
	msgUnchoke  = 1
	msgBitfield = 5
	msgRequest  = 6
	msgPiece    = 7
)

// TestHostilePeer: a peer the tracker lists as a seeder answers the
// proxy's requests with blocks it did not ask for, blocks of the wrong
// length, or garbage. The player still gets the exact file (the origin
// fills in), nothing from the hostile peer is served as peer data, and the
// proxy stays healthy; a peer sending garbage is caught by the piece hash
// and banned.
func TestHostilePeer(t *testing.T) {
	const size = 6<<20 + 777 // 64 KiB pieces
	// The rate limit keeps the origin busy long enough for the proxy to
	// meet the hostile peer and ask it for pieces.
	c := start(t, demo.Config{RateLimit: 4 << 20, ScanInterval: 200 * time.Millisecond})
	tests := []struct {
		name string
		mode hostileMode
	}{
		{"unrequested", sendUnrequested},
		{"wrong length", sendShort},
		{"garbage", sendGarbage},
	}
	for k, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "hostile/" + strconv.Itoa(k) + ".bin"
			data := writeMedia(t, c, path, size)
			fi := waitInfo(t, c, path, "")
			if fi.PieceLength != 64<<10 {
				t.Fatalf("piece length %d, want 64 KiB", fi.PieceLength)
			}
			hp := startHostilePeer(t, fi, tt.mode)
			pk, err := c.IssuePasskey(t.Context(), "hostile")
			if err != nil {
				t.Fatal(err)
			}
			hp.announce(t, fileinfo.AnnounceURL(c.Tracker.URL, pk))
			waitAnnounced(t, c.Tracker.URL, c.Token, path, hp.port(), 10*time.Second)

			p := startTestProxy(t, c, proxy.Config{PeerGrace: 100 * time.Millisecond, StallTimeout: 30 * time.Second})
			u := p.URL + "/stream/" + fileinfo.EscapePath(path)
			// A first small read opens the file's torrent; the proxy then
			// dials the peers the tracker named.
			if got := mustGet(t, u, "bytes=0-0", http.StatusPartialContent); !bytes.Equal(got, data[:1]) {
				t.Fatal("first byte differs")
			}
			if !hp.waitRequest(10 * time.Second) {
				t.Fatalf("the hostile peer never got a request (%d connections)", hp.conns.Load())
			}
			if got := mustGet(t, u, "", http.StatusOK); !bytes.Equal(got, data) {
				t.Fatal("the player got bytes that differ from the file")
			}

			// Still healthy afterwards.
			mustGet(t, p.URL+"/healthz", "", http.StatusOK)
			if got := mustGet(t, u, "bytes=100000-300000", http.StatusPartialContent); !bytes.Equal(got, data[100000:300001]) {
				t.Fatal("a second range request got bytes that differ")
			}

			f := fileStatusAt(t, p.URL, path)
			banned := bannedAt(t, p.URL)
			closed, sent := hp.closedByProxy.Load(), hp.sent.Load()
			t.Logf("hostile peer: %d connections, %d requests received, %d bad messages sent, %d connections closed by the proxy; proxy: %d verification failures, banned %v, peer %d bytes, origin %s",
				hp.conns.Load(), hp.requests.Load(), sent, closed, f.VerifyFailures, banned, f.PeerBytes, mib(float64(f.OriginBytes)))
			// The hostile peer is the only peer and sent nothing valid:
			// no byte the player got can come from peers.
			if f.PeerBytes != 0 {
				t.Errorf("status reports %d bytes served from peers; the only peer sent nothing valid", f.PeerBytes)
			}
			switch tt.mode {
			case sendUnrequested:
				if closed == 0 {
					t.Error("the proxy kept every connection to a peer that sent unrequested pieces")
				}
			case sendGarbage:
				if f.VerifyFailures == 0 || len(banned) == 0 {
					t.Errorf("garbage from a peer: want verification_failures > 0 and a ban in /v1/status, got %d and %v",
						f.VerifyFailures, banned)
				}
			}
		})
	}
}

func bannedAt(t *testing.T, base string) []string {
	t.Helper()
	var st struct {
		BannedPeers []string `json:"banned_peers"`
	}
	if err := json.Unmarshal(mustGet(t, base+"/v1/status", "", http.StatusOK), &st); err != nil {
		t.Fatal(err)
	}
	return st.BannedPeers
}

// hostilePeer is a hand-written BitTorrent seeder of one file that claims
// every piece and misbehaves when asked for one.
type hostilePeer struct {
	t        *testing.T
	mode     hostileMode
	infoHash [20]byte
	peerID   [20]byte
	pieces   int
	pieceLen int64
	ln       net.Listener

	conns         atomic.Int64
	requests      atomic.Int64
	sent          atomic.Int64
	closedByProxy atomic.Int64
	firstRequest  chan struct{}
	once          sync.Once

	mu       sync.Mutex
	open     map[net.Conn]struct{}
	stopping bool
	wg       sync.WaitGroup
}

// startHostilePeer listens on loopback and serves until the test ends.
func startHostilePeer(t *testing.T, fi *fileinfo.Info, mode hostileMode) *hostilePeer {
	t.Helper()
	ih, err := hex.DecodeString(fi.InfoHash)
	if err != nil || len(ih) != 20 {
		t.Fatalf("infohash %q: %v", fi.InfoHash, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hostilePeer{t: t, mode: mode, pieces: fi.NumPieces(), pieceLen: fi.PieceLength, ln: ln,
		firstRequest: make(chan struct{}), open: map[net.Conn]struct{}{}}
	copy(h.infoHash[:], ih)
	copy(h.peerID[:], "-HOSTILE-")
	rand.Read(h.peerID[9:])
	h.wg.Go(h.acceptLoop)
	t.Cleanup(h.stop)
	return h
}

func (h *hostilePeer) port() int { return h.ln.Addr().(*net.TCPAddr).Port }

// stop closes the listener and every connection and waits for their
// goroutines.
func (h *hostilePeer) stop() {
	h.mu.Lock()
	h.stopping = true
	for c := range h.open {
		c.Close()
	}
	h.mu.Unlock()
	h.ln.Close()
	h.wg.Wait()
}

// announce tells the tracker at announce URL u (with a passkey: a hostile
// peer may well hold one) that the peer seeds the file.
func (h *hostilePeer) announce(t *testing.T, u string) {
	t.Helper()
	q := "info_hash=" + url.QueryEscape(string(h.infoHash[:])) +
		"&peer_id=" + url.QueryEscape(string(h.peerID[:])) +
		"&port=" + strconv.Itoa(h.port()) + "&uploaded=0&downloaded=0&left=0&event=started&compact=1"
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(u + "?" + q)
	if err != nil {
		t.Fatalf("announce: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(body, []byte("failure reason")) {
		t.Fatalf("announce: %s: %q", resp.Status, body)
	}
}

// waitRequest waits until the peer has received a request.
func (h *hostilePeer) waitRequest(within time.Duration) bool {
	select {
	case <-h.firstRequest:
		return true
	case <-time.After(within):
		return false
	}
}

func (h *hostilePeer) acceptLoop() {
	for {
		conn, err := h.ln.Accept()
		if err != nil {
			return
		}
		h.mu.Lock()
		if h.stopping {
			h.mu.Unlock()
			conn.Close()
			return
		}
		h.open[conn] = struct{}{}
		h.mu.Unlock()
		h.wg.Go(func() {
			defer func() {
				h.mu.Lock()
				delete(h.open, conn)
				h.mu.Unlock()
				conn.Close()
			}()
			h.serve(conn)
		})
	}
}

// serve runs one connection: handshake, bitfield, unchoke, then bad
// answers to every request until the proxy hangs up.
func (h *hostilePeer) serve(conn net.Conn) {
	hs := make([]byte, 68)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, hs[:20]); err != nil {
		return
	}
	// The proxy tries an obfuscated (MSE) handshake first, then plain
	// BitTorrent on a new connection: refuse the first.
	if string(hs[:20]) != "\x13BitTorrent protocol" {
		return
	}
	if _, err := io.ReadFull(conn, hs[20:]); err != nil {
		return
	}
	if !bytes.Equal(hs[28:48], h.infoHash[:]) {
		h.t.Logf("hostile peer: handshake for another infohash %x", hs[28:48])
		return
	}
	id := h.conns.Add(1)
	conn.SetReadDeadline(time.Time{})

	var out bytes.Buffer
	out.WriteString("\x13BitTorrent protocol")
	out.Write(make([]byte, 8)) // no extensions
	out.Write(h.infoHash[:])
	out.Write(h.peerID[:])
	bf := make([]byte, (h.pieces+7)/8)
	for i := range h.pieces {
		bf[i/8] |= 0x80 >> (i % 8)
	}
	writeMsg(&out, msgBitfield, bf)
	writeMsg(&out, msgUnchoke, nil)
	if _, err := conn.Write(out.Bytes()); err != nil {
		h.t.Logf("hostile peer conn %d: write handshake: %v", id, err)
		return
	}

	var msgs, reqs int64
	var lenBuf [4]byte
	for {
		_, err := io.ReadFull(conn, lenBuf[:])
		var n uint32
		if err == nil {
			n = binary.BigEndian.Uint32(lenBuf[:])
			if n > 1<<20 {
				err = fmt.Errorf("message of %d bytes", n)
			}
		}
		var msg []byte
		if err == nil && n > 0 {
			msg = make([]byte, n)
			_, err = io.ReadFull(conn, msg)
		}
		if err != nil {
			h.mu.Lock()
			stopping := h.stopping
			h.mu.Unlock()
			if !stopping {
				h.closedByProxy.Add(1)
				h.t.Logf("hostile peer conn %d: closed by the proxy after %d requests and %d bad answers: %v", id, reqs, msgs, err)
			}
			return
		}
		if n == 0 || msg[0] != msgRequest || len(msg) != 13 {
			continue // keep-alive, interested, have, cancel...
		}
		index := binary.BigEndian.Uint32(msg[1:5])
		begin := binary.BigEndian.Uint32(msg[5:9])
		length := binary.BigEndian.Uint32(msg[9:13])
		reqs++
		h.requests.Add(1)
		h.once.Do(func() { close(h.firstRequest) })
		if length > 1<<17 {
			continue
		}
		var block []byte
		switch h.mode {
		case sendUnrequested:
			// Another piece's block; every piece but the last is full
			// length, so the block fits in it.
			other := index
			if h.pieces > 2 {
				other = (index + 1) % uint32(h.pieces-1)
			}
			if other == index {
				other = (index + 1) % uint32(h.pieces)
			}
			index = other
			block = make([]byte, length)
		case sendShort:
			block = make([]byte, length/2)
		case sendGarbage:
			block = make([]byte, length)
		}
		rand.Read(block)
		var pm bytes.Buffer
		payload := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, index), begin)
		writeMsg(&pm, msgPiece, append(payload, block...))
		if _, err := conn.Write(pm.Bytes()); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				h.closedByProxy.Add(1)
			}
			h.t.Logf("hostile peer conn %d: write after %d requests and %d bad answers: %v", id, reqs, msgs, err)
			return
		}
		msgs++
		h.sent.Add(1)
	}
}

// writeMsg appends a length-prefixed BitTorrent message.
func writeMsg(b *bytes.Buffer, id byte, payload []byte) {
	b.Write(binary.BigEndian.AppendUint32(nil, uint32(1+len(payload))))
	b.WriteByte(id)
	b.Write(payload)
}
