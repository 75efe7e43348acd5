package tracker

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anacrolix/torrent/metainfo"
)

// TestStorePrivateSwarm: the rules that keep strangers out of a swarm, on
// every store. Each step announces with one of two live passkeys (or an
// unknown or revoked one) and says what the swarm must list afterwards.
func TestStorePrivateSwarm(t *testing.T) {
	forEachStore(t, func(t *testing.T, open storeOpener, _ bool) {
		s := open(t, time.Minute, maxPeersPerSwarm)
		alice := Credential{ID: passkeyID("alice's passkey"), Name: "alice"}
		mallory := Credential{ID: passkeyID("mallory's passkey"), Name: "mallory"}
		for _, c := range []Credential{alice, mallory} {
			if err := s.AddPasskey(t.Context(), c); err != nil {
				t.Fatal(err)
			}
		}
		fi, _ := testFile(t, "p/clip.mp4", 100<<10)
		register(t, s, fi)
		h := hashOf(t, fi)

		// Eight peers from one address fill its share; the ninth is
		// answered but not listed. Another address is not affected.
		var fromOne []string
		for i := range DefaultPeersPerAddr {
			fromOne = append(fromOne, fmt.Sprintf("10.0.0.1:%d", 2000+i))
		}
		type step struct {
			name   string
			cred   credID
			id     string
			addr   string
			ev     Event
			err    bool     // refused: unknown or revoked passkey
			listed bool     // the store says it lists the peer
			want   []string // the swarm's peers afterwards (nil: unchecked)
		}
		steps := []step{}
		for i, a := range fromOne {
			steps = append(steps, step{name: "nat peer " + a, cred: mallory.ID, id: fmt.Sprintf("m%d", i), addr: a, listed: true})
		}
		steps = append(steps, []step{
			{name: "one more from the same address is not listed", cred: mallory.ID, id: "m-extra", addr: "10.0.0.1:3000", want: fromOne},
			{name: "another address is listed", cred: alice.ID, id: "a", addr: "10.0.0.2:4000", listed: true,
				want: append(slices.Clone(fromOne), "10.0.0.2:4000")},
			{name: "a stop with another passkey does nothing", cred: mallory.ID, id: "a", addr: "10.0.0.2:4000", ev: EventStopped,
				want: append(slices.Clone(fromOne), "10.0.0.2:4000")},
			{name: "nor does a change of port", cred: mallory.ID, id: "a", addr: "10.0.0.2:4001",
				want: append(slices.Clone(fromOne), "10.0.0.2:4000")},
			{name: "an unknown passkey is refused", cred: passkeyID("guess"), id: "g", addr: "10.0.0.3:5000", err: true,
				want: append(slices.Clone(fromOne), "10.0.0.2:4000")},
			{name: "the owner's stop removes its peer", cred: mallory.ID, id: "m0", addr: fromOne[0], ev: EventStopped,
				want: append(slices.Clone(fromOne[1:]), "10.0.0.2:4000")},
			{name: "which frees a place for its address", cred: mallory.ID, id: "m-extra", addr: "10.0.0.1:3000", listed: true,
				want: append(slices.Clone(fromOne[1:]), "10.0.0.1:3000", "10.0.0.2:4000")},
			{name: "the owner may change its port", cred: alice.ID, id: "a", addr: "10.0.0.2:4002", listed: true},
		}...)
		for _, st := range steps {
			res, ok, err := annAs(t, s, st.cred, h, st.id, st.addr, 0, st.ev)
			switch {
			case st.err && !errors.Is(err, errUnknownPasskey):
				t.Fatalf("%s: err %v, want errUnknownPasskey", st.name, err)
			case !st.err && (err != nil || !ok):
				t.Fatalf("%s: ok %v, err %v", st.name, ok, err)
			case !st.err && res.listed != st.listed:
				t.Fatalf("%s: listed %v, want %v", st.name, res.listed, st.listed)
			}
			if st.want != nil {
				checkPeers(t, s, h, st.name, st.want)
			}
		}

		// Revoking mallory refuses its announces and drops its peers at
		// once, on every swarm; alice stays.
		n, err := s.Revoke(t.Context(), "mallory")
		if err != nil || n != 1 {
			t.Fatalf("revoke: %d, %v", n, err)
		}
		checkPeers(t, s, h, "after the revocation", []string{"10.0.0.2:4002"})
		if _, _, err := annAs(t, s, mallory.ID, h, "m1", fromOne[1], 0, EventNone); !errors.Is(err, errUnknownPasskey) {
			t.Fatalf("announce with a revoked passkey: %v", err)
		}
		if _, ok, _ := s.Passkey(t.Context(), mallory.ID); ok {
			t.Fatal("the revoked passkey is still known")
		}
		if n, err := s.Revoke(t.Context(), "mallory"); err != nil || n != 0 {
			t.Fatalf("revoking again: %d, %v", n, err)
		}
		// The address's share is free again (the counts followed the drop).
		for i := range DefaultPeersPerAddr {
			if res, _, err := annAs(t, s, alice.ID, h, fmt.Sprintf("b%d", i), fmt.Sprintf("10.0.0.1:%d", 6000+i), 0, EventNone); err != nil || !res.listed {
				t.Fatalf("peer %d of the freed address: listed %v, %v", i, res.listed, err)
			}
		}
		all, err := s.Passkeys(t.Context())
		if err != nil || len(all) != 2 || all[0].Name != "alice" || all[1].Name != "test" {
			t.Fatalf("passkeys %+v %v, want alice and test", all, err)
		}
	})
}

func checkPeers(t *testing.T, s Store, h [20]byte, step string, want []string) {
	t.Helper()
	ps, err := s.Peers(t.Context(), h, MaxNumWant)
	want = slices.Clone(want)
	slices.Sort(want)
	if got := addrs(ps); err != nil || !slices.Equal(got, want) {
		t.Fatalf("%s: peers %v %v, want %v", step, got, err, want)
	}
}

// TestPasskeyAPI: the operator issues and revokes passkeys over HTTP with
// the tracker's token; a .torrent fetched with one announces with it; an
// announce without one, or with a revoked one, is refused.
func TestPasskeyAPI(t *testing.T) {
	tr := startTracker(t, Config{})
	fi, _ := testFile(t, "k.mp4", 100<<10)
	mustRegister(t, tr, fi)
	ih := url.QueryEscape(rawHash(t, fi.InfoHash))
	q := func(id string, port int) string {
		return fmt.Sprintf("?info_hash=%s&peer_id=%s&port=%d&left=0", ih, url.QueryEscape(peerID(id)), port)
	}

	if st, _ := do(t, "POST", tr.URL+"/v1/passkeys", "", map[string]string{"name": "bob"}); st != http.StatusUnauthorized {
		t.Fatalf("issue without the token: %d", st)
	}
	if st, _ := do(t, "POST", tr.URL+"/v1/passkeys", testToken, map[string]string{"name": "../x"}); st != http.StatusBadRequest {
		t.Fatalf("issue with a bad name: %d", st)
	}
	bob, err := IssuePasskey(t.Context(), http.DefaultClient, tr.URL, testToken, "bob")
	if err != nil || len(bob) < 32 {
		t.Fatalf("issue: %q %v", bob, err)
	}

	// The .torrent with bob's passkey announces with it.
	st, body := do(t, "GET", tr.URL+"/v1/torrents/k.mp4?passkey="+bob, "", nil)
	mi, err := metainfo.Load(bytes.NewReader(body))
	if st != http.StatusOK || err != nil || mi.Announce != tr.URL+"/announce/"+bob {
		t.Fatalf("torrent with a passkey: %d %v, announce %q", st, err, mi.Announce)
	}
	if st, _ := do(t, "GET", tr.URL+"/v1/torrents/k.mp4?passkey=guessed", "", nil); st != http.StatusForbidden {
		t.Fatalf("torrent with an unknown passkey: %d, want 403", st)
	}
	if r := announceTo(t, mi.Announce+q("bob", 7001)); r.Failure != "" || r.Complete != 1 {
		t.Fatalf("announce with bob's passkey: %+v", r)
	}

	for _, tc := range []struct{ name, url, reason string }{
		{"no passkey", tr.URL + "/announce" + q("x", 7002), "this tracker is private"},
		{"unknown passkey", tr.URL + "/announce/guessed" + q("x", 7002), "unknown or revoked passkey"},
		{"overlong passkey", tr.URL + "/announce/" + strings.Repeat("k", maxPasskeyLen+1) + q("x", 7002), "this tracker is private"},
	} {
		if r := announceTo(t, tc.url); !strings.Contains(r.Failure, tc.reason) {
			t.Errorf("%s: failure %q, want %q", tc.name, r.Failure, tc.reason)
		}
	}
	waitMetric(t, tr, `p2sp_tracker_announces_total{result="unauthorized"} 3`, time.Second)

	// Revoked: bob's peer is dropped at once, its announces refused.
	if n, err := RevokePasskey(t.Context(), http.DefaultClient, tr.URL, testToken, "bob"); err != nil || n != 1 {
		t.Fatalf("revoke: %d %v", n, err)
	}
	if r := announce(t, tr, fi.InfoHash, "other", 7003, "left=0"); r.Failure != "" || r.Complete != 1 || len(r.compactPeers(t)) != 0 {
		t.Fatalf("after the revocation the swarm still lists bob's peer: %+v", r)
	}
	if r := announceTo(t, mi.Announce+q("bob", 7001)); !strings.Contains(r.Failure, "revoked") {
		t.Fatalf("announce with a revoked passkey: %+v", r)
	}
	if _, err := RevokePasskey(t.Context(), http.DefaultClient, tr.URL, testToken, "bob"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("revoking an unknown name: %v, want a 404", err)
	}
}
