package e2e

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
	"github.com/p2sp/p2sp/internal/testtool"
)

// TestTrackerReplicasOnRedis: two tracker processes on one Redis serve one
// fleet. A proxy announces to replica A and another proxy, which knows only
// replica B, gets it as a peer; replica A is killed (SIGKILL) while that
// proxy streams, and the stream goes on; a file registered through B while
// A is down is visible through A once A restarts, with the peer that had
// announced to A before it died.
func TestTrackerReplicasOnRedis(t *testing.T) {
	const (
		path  = "replicas/film.bin"
		later = "replicas/later.bin"
		size  = 4<<20 + 77
	)
	store := testtool.StartRedis(t)
	bin := buildP2SP(t)
	const token = "replicas-test-token"
	env := []string{"P2SP_TOKEN=" + token}
	trackerArgs := []string{"--store", store, "--log-level", "warn"}
	addrA := loopbackAddr(t)
	trA := startProc(t, bin, "tracker", addrA, env, trackerArgs...)
	trB := startProc(t, bin, "tracker", loopbackAddr(t), env, trackerArgs...)

	// The origin registers with B only; it is rate-limited so that the
	// second proxy has reason to take the file from the first.
	media := t.TempDir()
	data := writeFile(t, media, path, size)
	origin := startProc(t, bin, "origin", loopbackAddr(t), env, "--media", media, "--tracker", trB.URL,
		"--scan-interval", "200ms", "--rate-limit", "2000000", "--log-level", "warn")
	waitInfoAt(t, trA.URL, "", path, "")

	proxyArgs := func(tracker string, btPort int) []string {
		// Issued by one replica, honoured by both.
		return append(passkeyArgs(t, trB.URL, token, "replicas"), "--tracker", tracker, "--origin", origin.URL,
			"--cache-dir", t.TempDir(), "--bt-listen", "127.0.0.1:"+strconv.Itoa(btPort), "--log-level", "warn")
	}
	bt1 := freePort(t)
	p1 := startProxyProc(t, bin, loopbackAddr(t), proxyArgs(trA.URL, bt1)...)
	if got := mustGet(t, p1.URL+"/stream/"+fileinfo.EscapePath(path), "", http.StatusOK); !bytes.Equal(got, data) {
		t.Fatal("first proxy: bytes differ")
	}
	waitCompleteAt(t, p1.URL, path)
	// p1 announced to A; B answers with it.
	waitAnnounced(t, trB.URL, token, path, bt1, 10*time.Second)

	p2 := startProxyProc(t, bin, loopbackAddr(t), proxyArgs(trB.URL, freePort(t))...)
	if got := readAcross(t, p2.URL+"/stream/"+fileinfo.EscapePath(path), 1<<20, trA.kill); !bytes.Equal(got, data) {
		t.Fatalf("second proxy: %d bytes, differing from the file's %d", len(got), len(data))
	}
	f := fileStatusAt(t, p2.URL, path)
	t.Logf("second proxy: peer %s, origin %s", mib(float64(f.PeerBytes)), mib(float64(f.OriginBytes)))
	if f.PeerBytes < size/2 {
		t.Errorf("second proxy took %d of %d bytes from the peer replica B named; want most", f.PeerBytes, size)
	}

	// A's death lost no peer and no registration: B still lists p1, and a
	// file registered through B now shows through A once it is back.
	if !announced(t, trB.URL, token, path, bt1, time.Second) {
		t.Error("replica B lost the peer that had announced to A when A was killed")
	}
	laterData := writeFile(t, media, later, 100<<10)
	info := waitInfoAt(t, trB.URL, "", later, "")
	trA = startProc(t, bin, "tracker", addrA, env, trackerArgs...)
	if got := waitInfoAt(t, trA.URL, "", later, info.SHA256); got.Size != int64(len(laterData)) {
		t.Fatalf("restarted replica A: %s has size %d, want %d", later, got.Size, len(laterData))
	}
	waitAnnounced(t, trA.URL, token, path, bt1, time.Second)
}

// waitCompleteAt waits until the proxy at base holds all of path.
func waitCompleteAt(t *testing.T, base, path string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !fileStatusAt(t, base, path).Complete; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never completed %s: %+v", base, path, fileStatusAt(t, base, path))
		}
	}
}
