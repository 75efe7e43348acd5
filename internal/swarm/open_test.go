package swarm

import (
	"bytes"
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/anacrolix/torrent/metainfo"
	"github.com/anacrolix/torrent/storage"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// flakyStorage fails to open torrents while fail is set, and otherwise
// opens them in inner.
type flakyStorage struct {
	fail  atomic.Bool
	inner storage.ClientImpl
}

var errNoEntry = errors.New("no cache entry for this torrent")

func (s *flakyStorage) OpenTorrent(ctx context.Context, info *metainfo.Info, ih metainfo.Hash) (storage.TorrentImpl, error) {
	if s.fail.Load() {
		return storage.TorrentImpl{}, errNoEntry
	}
	return s.inner.OpenTorrent(ctx, info, ih)
}

// TestOpenStorageError: a torrent whose storage cannot open fails Open with
// the storage's error at once and leaves nothing in the client, so that the
// next Open, with storage that works, gets a working torrent.
func TestOpenStorageError(t *testing.T) {
	data := bytes.Repeat([]byte("p2sp"), 100_000)
	info, err := fileinfo.Compute(t.Context(), "a/b.bin", bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	mm := storage.NewMMap(t.TempDir())
	t.Cleanup(func() { mm.Close() })
	st := &flakyStorage{inner: mm}
	st.fail.Store(true)
	sw, err := New(Config{Listen: "127.0.0.1:0", Storage: st, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sw.Close() })

	if _, err := sw.Open(info, nil); !errors.Is(err, errNoEntry) {
		t.Fatalf("Open with failing storage = %v, want the storage's error", err)
	}
	var ih metainfo.Hash
	if err := ih.FromHexString(info.InfoHash); err != nil {
		t.Fatal(err)
	}
	if _, ok := sw.cl.Torrent(ih); ok {
		t.Fatal("the torrent whose storage failed is still in the client")
	}

	st.fail.Store(false)
	tt, err := sw.Open(info, nil)
	if err != nil {
		t.Fatalf("Open once the storage works: %v", err)
	}
	if got := tt.t.Info(); got == nil || got.TotalLength() != info.Size {
		t.Fatalf("the reopened torrent has info %v, want the file's", got)
	}
}
