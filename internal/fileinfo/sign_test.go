package fileinfo

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func signedInfo(t *testing.T, key ed25519.PrivateKey) *Info {
	t.Helper()
	fi, err := Compute(context.Background(), "films/a.mp4", bytes.NewReader(randomData(300<<10)), 300<<10)
	if err != nil {
		t.Fatal(err)
	}
	fi.ETag = `"4b000-18c2"`
	fi.ModTime = time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	fi.Origins = []string{"http://origin:8080"}
	fi.Sign(key)
	return fi
}

func TestSignVerify(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	otherPub, otherPriv, _ := ed25519.GenerateKey(nil)
	good := signedInfo(t, priv)
	if err := good.Verify([]ed25519.PublicKey{otherPub, pub}); err != nil {
		t.Fatalf("a signed record does not verify: %v", err)
	}
	// Every field that says what the bytes are is covered.
	for _, tc := range []struct {
		name   string
		change func(fi *Info)
		want   error
	}{
		{"path", func(fi *Info) { fi.Path = "films/b.mp4" }, ErrBadSignature},
		{"size", func(fi *Info) { fi.Size++ }, ErrBadSignature},
		{"piece length", func(fi *Info) { fi.PieceLength *= 2 }, ErrBadSignature},
		{"piece hash", func(fi *Info) { fi.Pieces = bytes.Clone(fi.Pieces); fi.Pieces[3] ^= 1 }, ErrBadSignature},
		{"sha256", func(fi *Info) { fi.SHA256 = hex.EncodeToString(make([]byte, 32)) }, ErrBadSignature},
		{"infohash", func(fi *Info) { fi.InfoHash = "00" + fi.InfoHash[2:] }, ErrBadSignature},
		{"etag", func(fi *Info) { fi.ETag = `"other"` }, ErrBadSignature},
		{"mod time", func(fi *Info) { fi.ModTime = fi.ModTime.Add(time.Nanosecond) }, ErrBadSignature},
		{"origins", func(fi *Info) { fi.Origins = []string{"http://attacker:8080"} }, ErrBadSignature},
		{"origin added", func(fi *Info) { fi.Origins = append(fi.Origins, "http://attacker:8080") }, ErrBadSignature},
		{"signature", func(fi *Info) { fi.Signature = bytes.Clone(fi.Signature); fi.Signature[0] ^= 1 }, ErrBadSignature},
		{"signed by another key", func(fi *Info) { fi.Sign(otherPriv) }, ErrBadSignature},
		{"unsigned", func(fi *Info) { fi.Signature = nil }, ErrUnsigned},
		// Not covered: the tracker's peers, and the case of hex digits.
		{"peers", func(fi *Info) { fi.Peers = []Peer{{IP: "10.0.0.1", Port: 6881}} }, nil},
		{"upper-case hex", func(fi *Info) { fi.InfoHash = string(bytes.ToUpper([]byte(fi.InfoHash))) }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi := *good
			tc.change(&fi)
			err := fi.Verify([]ed25519.PublicKey{pub})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Errorf("Verify = %v, want %v", err, tc.want)
			}
		})
	}
	if err := good.Verify(nil); !errors.Is(err, ErrBadSignature) {
		t.Errorf("no trusted key: %v", err)
	}
	if err := good.Verify([]ed25519.PublicKey{pub[:5]}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("a short key: %v", err)
	}
}

// TestSignedJSONRoundTrip: what the tracker stores and returns (JSON)
// still verifies, with its peers added.
func TestSignedJSONRoundTrip(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	fi := signedInfo(t, priv)
	fi.ModTime = fi.ModTime.In(time.FixedZone("X", 3600))
	fi.Sign(priv)
	b, err := json.Marshal(fi)
	if err != nil {
		t.Fatal(err)
	}
	var back Info
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	back.Peers = []Peer{{IP: "127.0.0.1", Port: 1}}
	if err := back.Verify([]ed25519.PublicKey{pub}); err != nil {
		t.Fatal(err)
	}
}

func TestParseKey(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(nil)
	for _, s := range []string{EncodeKey(pub), hex.EncodeToString(pub), " " + EncodeKey(pub) + "\n",
		EncodeKey(pub)[:43]} {
		k, err := ParseKey(s)
		if err != nil || !k.Equal(pub) {
			t.Errorf("ParseKey(%q) = %x, %v", s, k, err)
		}
	}
	for _, s := range []string{"", "abc", hex.EncodeToString(pub[:31]), EncodeKey(append(pub, 0))} {
		if _, err := ParseKey(s); err == nil {
			t.Errorf("ParseKey(%q) accepted", s)
		}
	}
}
