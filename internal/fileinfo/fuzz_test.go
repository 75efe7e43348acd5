package fileinfo

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzDecodeInfo feeds the proxy's decoding of tracker answers: whatever
// the bytes, decoding and Validate must not panic, and a record that
// validates must be safe to use: its pieces addressable, its .torrent
// buildable and hashing back to its infohash.
func FuzzDecodeInfo(f *testing.F) {
	good, err := Compute(context.Background(), "films/a.mp4", bytes.NewReader(make([]byte, 200<<10)), 200<<10)
	if err != nil {
		f.Fatal(err)
	}
	good.Origins = []string{"http://127.0.0.1:8080"}
	b, _ := json.Marshal(good)
	f.Add(b)
	f.Add([]byte(`{"path":"../x","size":1,"piece_length":65536,"pieces":"AAAAAAAAAAAAAAAAAAAAAAAAAAA=","sha256":"","infohash":""}`))
	f.Add([]byte(`{"path":"a","size":9223372036854775807,"piece_length":16384}`))
	f.Add([]byte(`{"path":"a","size":-1,"piece_length":-65536,"pieces":null}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var fi Info
		if json.Unmarshal(data, &fi) != nil || fi.Validate() != nil {
			return
		}
		n := fi.NumPieces()
		for _, i := range []int{0, n / 2, n - 1} {
			if i < 0 || i >= n {
				continue
			}
			off, l := fi.PieceBounds(i)
			if off < 0 || l <= 0 || off+l > fi.Size {
				t.Fatalf("piece %d bounds [%d,+%d) outside size %d", i, off, l, fi.Size)
			}
			_ = fi.PieceHash(i)
		}
		mi, err := fi.MetaInfo("http://127.0.0.1/announce")
		if err != nil {
			t.Fatalf("valid info, no .torrent: %v", err)
		}
		if !strings.EqualFold(mi.HashInfoBytes().HexString(), fi.InfoHash) {
			t.Fatalf("valid info whose .torrent hashes to %s, not %s", mi.HashInfoBytes().HexString(), fi.InfoHash)
		}
	})
}
