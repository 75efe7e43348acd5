package e2e

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/proxy"
)

// forgingRelay stands between proxies and the real tracker (an attacker on
// the path, or a tracker gone bad): it passes everything on but answers the
// info of one path with a record of its own.
func forgingRelay(t *testing.T, trackerURL, path string, forged *fileinfo.Info) string {
	t.Helper()
	target, err := url.Parse(trackerURL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	body, err := json.Marshal(forged)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/files/"+path {
			w.Header().Set("Content-Type", "application/json")
			w.Write(body)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestForgedFileInfo: a tracker answer that names other bytes for a path
// (the attacker's piece hashes with the real ETag copied in, and the
// attacker's own seeder as the peer) cannot make a proxy serve them,
// however it is signed: the player gets the origin's bytes, the attacker's
// seeder sends nothing, and /v1/status names the refused info.
func TestForgedFileInfo(t *testing.T) {
	const (
		path  = "films/a.mp4"
		other = "films/b.mp4"
		size  = 2<<20 + 100
	)
	c := start(t, demo.Config{ScanInterval: 200 * time.Millisecond})
	real := writeMedia(t, c, path, size)
	writeMedia(t, c, other, size)
	realInfo := waitInfo(t, c, path, "")
	otherInfo := waitInfo(t, c, other, "")

	// The attacker runs a system of its own, with its own origin (and
	// key), and a proxy that holds and seeds its bytes under that path.
	ac := start(t, demo.Config{Proxies: 1, ScanInterval: 200 * time.Millisecond})
	fake := writeMedia(t, ac, path, size)
	fakeInfo := waitInfo(t, ac, path, "")
	seeder := ac.Proxies[0]
	if got := mustGet(t, streamURL(seeder, path), "", http.StatusOK); !bytes.Equal(got, fake) {
		t.Fatal("the attacker's proxy does not hold the attacker's bytes")
	}
	waitComplete(t, seeder, path)
	attackerPeer := []fileinfo.Peer{{IP: "127.0.0.1", Port: seeder.Proxy.BTPort()}}

	forge := func(base *fileinfo.Info, edit func(fi *fileinfo.Info)) *fileinfo.Info {
		fi := *base
		fi.ETag, fi.ModTime = realInfo.ETag, realInfo.ModTime
		fi.Peers = attackerPeer
		edit(&fi)
		return &fi
	}
	for _, tc := range []struct {
		name   string
		forged *fileinfo.Info
		keys   []ed25519.PublicKey // nil: the cluster's origin key
		want   string
	}{
		{"signed by the attacker's origin", forge(fakeInfo, func(*fileinfo.Info) {}), nil, "does not verify"},
		{"the real signature copied", forge(fakeInfo, func(fi *fileinfo.Info) { fi.Signature = realInfo.Signature }), nil, "does not verify"},
		{"unsigned", forge(fakeInfo, func(fi *fileinfo.Info) { fi.Signature = nil }), nil, "not signed"},
		{"another file's signed info under this path", forge(otherInfo, func(fi *fileinfo.Info) {
			// Renamed, with the infohash of the new name, so that it is
			// consistent: only the signature tells.
			fi.Path, fi.ETag, fi.ModTime = path, otherInfo.ETag, otherInfo.ModTime
			ih, _ := fi.ComputeInfoHash()
			fi.InfoHash = ih.HexString()
		}), nil, "does not verify"},
		{"another file's signed info, inconsistent", forge(otherInfo, func(fi *fileinfo.Info) { fi.Path = path }), nil, "infohash"},
		{"signed by the attacker, key pinned on first use", forge(fakeInfo, func(*fileinfo.Info) {}), []ed25519.PublicKey{}, "does not verify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seederSent := fileStatusAt(t, seeder.URL, path).UploadedBytes
			cacheDir := t.TempDir()
			victim := startTestProxy(t, c, proxy.Config{
				Trackers: []string{forgingRelay(t, c.Tracker.URL, path, tc.forged)}, OriginKeys: tc.keys, CacheDir: cacheDir,
			})
			for range 2 { // the second time, nothing of the attacker's was kept either
				if got := mustGet(t, victim.URL+"/stream/"+fileinfo.EscapePath(path), "", http.StatusOK); !bytes.Equal(got, real) {
					t.Fatalf("the player got other bytes than the origin's (attacker's: %v)", bytes.Equal(got, fake))
				}
			}
			f := fileStatusAt(t, victim.URL, path)
			t.Logf("victim's status: peer_bytes %d, origin_bytes %d, refused_info %q", f.PeerBytes, f.OriginBytes, f.RefusedInfo)
			if !strings.Contains(f.RefusedInfo, path) || !strings.Contains(f.RefusedInfo, tc.want) {
				t.Errorf("refused_info %q, want it to name %s and say %q", f.RefusedInfo, path, tc.want)
			}
			if f.PeerBytes != 0 || f.OriginBytes != 2*size {
				t.Errorf("peer bytes %d, origin bytes %d, want 0 and %d", f.PeerBytes, f.OriginBytes, 2*size)
			}
			if sent := fileStatusAt(t, seeder.URL, path).UploadedBytes - seederSent; sent != 0 {
				t.Errorf("the attacker's seeder sent %d bytes to the victim", sent)
			}
			var st struct {
				Keys   []string `json:"origin_keys"`
				Source string   `json:"origin_key_source"`
			}
			if err := json.Unmarshal(mustGet(t, victim.URL+"/v1/status", "", http.StatusOK), &st); err != nil {
				t.Fatal(err)
			}
			if len(st.Keys) != 1 || st.Keys[0] != fileinfo.EncodeKey(c.OriginKey) {
				t.Errorf("trusted keys %v, want the origin's %s", st.Keys, fileinfo.EncodeKey(c.OriginKey))
			}
			if tc.keys != nil {
				pinned, err := os.ReadFile(filepath.Join(cacheDir, "origin-key"))
				if err != nil || strings.TrimSpace(string(pinned)) != fileinfo.EncodeKey(c.OriginKey) || st.Source != "pinned" {
					t.Errorf("pinned key %q (%v), source %q", pinned, err, st.Source)
				}
			}
		})
	}

	// The same relay passes genuine info on: a path it does not forge
	// plays from the origin's signed info, with nothing refused.
	victim := startTestProxy(t, c, proxy.Config{Trackers: []string{forgingRelay(t, c.Tracker.URL, path, fakeInfo)}})
	mustGet(t, victim.URL+"/stream/"+fileinfo.EscapePath(other), "", http.StatusOK)
	waitComplete(t, &demo.Service{URL: victim.URL}, other)
	if f := fileStatusAt(t, victim.URL, other); f.RefusedInfo != "" || !f.Complete {
		t.Errorf("genuine info through the relay: %+v", f)
	}
}
