package e2e

import (
	"bytes"
	"crypto/rand"
	"net/http"
	"testing"
	"time"

	"github.com/p2sp/p2sp/demo"
	"github.com/p2sp/p2sp/internal/testtool"
	"github.com/p2sp/p2sp/origin"
)

// TestS3Origin: an origin whose media is a bucket of a real S3-compatible
// server (versitygw) answers every range form as the local origin does,
// byte for byte, registers its objects, and a second proxy gets one from
// the first as a peer.
func TestS3Origin(t *testing.T) {
	srv := testtool.StartS3(t, "media")
	small := make([]byte, 300_000)
	big := make([]byte, 4<<20)
	rand.Read(small)
	rand.Read(big)
	srv.Put(t, "media", "p2sp/"+badInputFile, small)
	srv.Put(t, "media", "p2sp/films/big.bin", big)
	c := start(t, demo.Config{
		Proxies: 2, ScanInterval: 200 * time.Millisecond, Media: "s3://media/p2sp",
		S3: origin.S3Config{Endpoint: srv.URL, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey},
	})
	waitInfo(t, c, badInputFile, "")
	for _, tc := range rangeForms(len(small)) {
		resp, body, err := getRangeForm(t, c.Origin.URL, "/files/"+badInputFile, tc)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %s, want %d: %.200s", tc.name, resp.Status, tc.want, body)
			continue
		}
		if err := checkRangeAnswer(resp, body, small); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}

	waitInfo(t, c, "films/big.bin", "")
	if got := mustGet(t, streamURL(c.Proxies[0], "films/big.bin"), "", http.StatusOK); !bytes.Equal(got, big) {
		t.Fatal("proxy1: bytes differ from the object's")
	}
	waitComplete(t, c.Proxies[0], "films/big.bin")
	if got := mustGet(t, streamURL(c.Proxies[1], "films/big.bin"), "", http.StatusOK); !bytes.Equal(got, big) {
		t.Fatal("proxy2: bytes differ from the object's")
	}
	f := status(t, c.Proxies[1]).Files[0]
	t.Logf("proxy2: peer %s, origin %s", mib(float64(f.PeerBytes)), mib(float64(f.OriginBytes)))
	if f.PeerBytes == 0 {
		t.Errorf("proxy2 took nothing from peers (origin %d bytes); want the first proxy as a peer", f.OriginBytes)
	}
}
