package tracker

import (
	"net/netip"
	"net/url"
	"testing"
)

func FuzzParseAnnounce(f *testing.F) {
	f.Add("info_hash=%12%34%56%78%9a%bc%de%f1%23%45%67%89%ab%cd%ef%12%34%56%78%9a&peer_id=-AZ2060-012345678901&port=6881&uploaded=0&downloaded=0&left=100&event=started&compact=1", []byte{127, 0, 0, 1})
	f.Add("info_hash=aaaaaaaaaaaaaaaaaaaa&peer_id=bbbbbbbbbbbbbbbbbbbb&port=1&left=0&numwant=-5&compact=0&no_peer_id=1", []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add("info_hash=a&info_hash=b&port=0", []byte{})
	f.Fuzz(func(t *testing.T, query string, ip []byte) {
		remote, _ := netip.AddrFromSlice(ip)
		a, err := ParseAnnounce(query, remote)
		if err != nil {
			return
		}
		q, qerr := url.ParseQuery(query)
		if qerr != nil {
			t.Fatalf("accepted an unparseable query %q", query)
		}
		if len(q["info_hash"]) != 1 || q.Get("info_hash") != string(a.InfoHash[:]) {
			t.Fatalf("info hash %x from %q", a.InfoHash, q["info_hash"])
		}
		if len(q["peer_id"]) != 1 || q.Get("peer_id") != string(a.PeerID[:]) {
			t.Fatalf("peer id %x from %q", a.PeerID, q["peer_id"])
		}
		if a.Addr.Port() < MinPeerPort || a.Addr.Addr() != remote.Unmap().WithZone("") {
			t.Fatalf("address %v from remote %v", a.Addr, remote)
		}
		if a.Left < 0 || a.Uploaded < 0 || a.Downloaded < 0 || a.NumWant < 0 || a.NumWant > MaxNumWant {
			t.Fatalf("out of range: %+v", a)
		}
		switch a.Event {
		case EventNone, EventStarted, EventCompleted, EventStopped:
		default:
			t.Fatalf("event %q", a.Event)
		}
	})
}
