package fileinfo

import (
	"bytes"
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/anacrolix/torrent/metainfo"
)

func randomData(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(n)})
	r.Read(b)
	return b
}

func TestComputeMatchesPlainHashes(t *testing.T) {
	for _, size := range []int{0, 1, 64<<10 - 1, 64 << 10, 64<<10 + 1, 1<<20 + 7, 5<<20 + 12345, 300 << 20} {
		data := randomData(size)
		fi, err := Compute(context.Background(), "dir/f.bin", bytes.NewReader(data), int64(size))
		if err != nil {
			t.Fatalf("size %d: %v", size, err)
		}
		if want := sha256.Sum256(data); fi.SHA256 != hex.EncodeToString(want[:]) {
			t.Errorf("size %d: sha256 %s, want %x", size, fi.SHA256, want)
		}
		if fi.NumPieces() != (size+int(fi.PieceLength)-1)/int(fi.PieceLength) {
			t.Errorf("size %d: %d pieces of %d", size, fi.NumPieces(), fi.PieceLength)
		}
		for i := range fi.NumPieces() {
			off, n := fi.PieceBounds(i)
			if fi.PieceHash(i) != sha1.Sum(data[off:off+n]) {
				t.Fatalf("size %d: piece %d hash differs", size, i)
			}
		}
		if err := fi.Validate(); err != nil {
			t.Errorf("size %d: Validate: %v", size, err)
		}
	}
}

func TestComputeShortReader(t *testing.T) {
	if _, err := Compute(context.Background(), "f", bytes.NewReader(make([]byte, 10)), 20); err == nil {
		t.Fatal("a reader shorter than size must fail")
	}
}

func TestMetaInfoRoundTrip(t *testing.T) {
	data := randomData(3<<20 + 5)
	fi, err := Compute(context.Background(), "films/a b.mp4", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	fi.Origins = []string{"http://127.0.0.1:8080"}
	mi, err := fi.MetaInfo("http://127.0.0.1:7070/announce")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := mi.Write(&buf); err != nil {
		t.Fatal(err)
	}
	back, err := metainfo.Load(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if back.HashInfoBytes().HexString() != fi.InfoHash {
		t.Fatalf("infohash %s, want %s", back.HashInfoBytes().HexString(), fi.InfoHash)
	}
	if got := back.UrlList; len(got) != 1 || got[0] != "http://127.0.0.1:8080/files/films/a%20b.mp4" {
		t.Fatalf("url-list %v", got)
	}
	info, err := back.UnmarshalInfo()
	if err != nil || info.Name != "a b.mp4" || info.Length != int64(len(data)) {
		t.Fatalf("info %+v, %v", info, err)
	}
	// BEP 27: standard clients must not look for peers outside the tracker.
	if info.Private == nil || !*info.Private {
		t.Fatalf("info dictionary not marked private: %v", info.Private)
	}
}

func TestValidateRejects(t *testing.T) {
	good, err := Compute(context.Background(), "a/b.bin", bytes.NewReader(randomData(1<<20)), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		mutate func(*Info)
		want   string
	}{
		{"traversal", func(fi *Info) { fi.Path = "../etc/passwd" }, "path"},
		{"negative size", func(fi *Info) { fi.Size = -1 }, "negative"},
		{"odd piece length", func(fi *Info) { fi.PieceLength = 100000 }, "power of two"},
		{"too many pieces", func(fi *Info) { fi.PieceLength = 16 << 10; fi.Size = 1 << 40 }, "pieces"},
		{"short hashes", func(fi *Info) { fi.Pieces = fi.Pieces[:len(fi.Pieces)-1] }, "piece hashes"},
		{"bad sha256", func(fi *Info) { fi.SHA256 = "xyz" }, "sha256"},
		{"wrong infohash", func(fi *Info) { fi.InfoHash = strings.Repeat("0", 40) }, "infohash"},
		{"tampered piece", func(fi *Info) { fi.Pieces = append([]byte{fi.Pieces[0] ^ 1}, fi.Pieces[1:]...) }, "infohash"},
		{"non-http origin", func(fi *Info) { fi.Origins = []string{"file:///etc"} }, "origin"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fi := *good
			tc.mutate(&fi)
			err := fi.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/a/b.mp4", "a/b.mp4", true},
		{"a", "a", true},
		{"", "", false},
		{"/", "", false},
		{"a//b", "", false},
		{"a/../b", "", false},
		{"./a", "", false},
		{"a\\..\\b", "", false},
		{"a\x00b", "", false},
		{"films/caf\xe9.mp4", "", false}, // Latin-1, not UTF-8
		{"films/café.mp4", "films/café.mp4", true},
		{strings.Repeat("a", 1025), "", false},
	} {
		got, err := CleanPath(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("CleanPath(%q) = %q, %v", tc.in, got, err)
		}
	}
}

func BenchmarkCompute(b *testing.B) {
	data := randomData(256 << 20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, err := Compute(context.Background(), "f", bytes.NewReader(data), int64(len(data))); err != nil {
			b.Fatal(err)
		}
	}
}
