package proxy

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/p2sp/p2sp/internal/cache"
	"github.com/p2sp/p2sp/internal/fetch"
	"github.com/p2sp/p2sp/internal/fileinfo"
)

// newTestServer is a proxy on a temporary cache whose tracker and origin
// refuse connections: what it does needs neither.
func newTestServer(t *testing.T) *Server {
	t.Helper()
	s, err := New(Config{
		Trackers: []string{"http://127.0.0.1:1"}, Origins: []string{"http://127.0.0.1:1"},
		CacheDir: t.TempDir(), BTListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func randomInfo(t *testing.T, path string, size int) *fileinfo.Info {
	t.Helper()
	data := make([]byte, size)
	rand.Read(data)
	info, err := fileinfo.Compute(t.Context(), path, bytes.NewReader(data), int64(size))
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestActivateBindsToTheLiveEntry: activate returns a file bound to the
// caller's entry, never one left open on an earlier entry of the same
// version; an eviction callback about the earlier entry, arriving late,
// leaves the live file and its torrent alone; a removed entry is refused.
func TestActivateBindsToTheLiveEntry(t *testing.T) {
	s := newTestServer(t)
	info := randomInfo(t, "bind/a.bin", 300_000)
	e1, err := s.cache.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	f1, err := s.activate(info, e1)
	if err != nil {
		t.Fatal(err)
	}
	e1.Release()
	// The entry leaves the cache and the same version is created again
	// before the proxy has heard of it: f1 is still the open file.
	s.cache.Remove(info.InfoHash)
	s.mu.Lock()
	s.files[info.InfoHash] = f1
	s.mu.Unlock()
	e2, err := s.cache.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Release()
	f2, err := s.activate(info, e2)
	if err != nil {
		t.Fatal(err)
	}
	if f2.entry != e2 {
		t.Fatal("activate returned a file bound to a removed entry")
	}
	if f1.ctx.Err() == nil {
		t.Error("the file of the removed entry is still open")
	}

	s.evicted(info.InfoHash) // late, about e1
	s.mu.Lock()
	cur := s.files[info.InfoHash]
	s.mu.Unlock()
	if cur != f2 || f2.ctx.Err() != nil {
		t.Fatal("a late eviction callback about the earlier entry closed the live file")
	}
	if f2.torrent.Closed() {
		t.Fatal("a late eviction callback about the earlier entry dropped the live file's torrent")
	}

	s.cache.Remove(info.InfoHash)
	if _, err := s.activate(info, e2); !errors.Is(err, cache.ErrRemoved) {
		t.Fatalf("activate on a removed entry: %v, want cache.ErrRemoved", err)
	}
}

// TestDropForgetsStagedBytes: a file version dropped (the origin changed
// it) takes what was staged for its path with it, so an adoption that
// got the same version from the tracker just before the drop cannot bring
// it back into the cache; the next request then asks the tracker again.
func TestDropForgetsStagedBytes(t *testing.T) {
	s := newTestServer(t)
	info := randomInfo(t, "drop/a.bin", 300_000)
	sf := s.staging.file(info.Path, fetch.Meta{Size: info.Size, ETag: `"streamed"`})
	if sf == nil {
		t.Fatal("nothing staged")
	}
	sf.write(make([]byte, 1000), 0)
	e, err := s.cache.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.activate(info, e)
	if err != nil {
		t.Fatal(err)
	}
	e.Release()

	s.drop(f, errors.New("changed on the origin"))
	if s.staging.has(info.Path) {
		t.Fatal("the dropped version's path is still staged")
	}
	// The adoption's tracker lookup answered before the drop.
	if err := s.adoptInfo(info, sf); err == nil {
		t.Fatal("adopted staged bytes of a dropped version")
	}
	if e, ok := s.cache.Peek(info.Path); ok {
		e.Release()
		t.Fatal("the dropped version is back in the cache")
	}
}
