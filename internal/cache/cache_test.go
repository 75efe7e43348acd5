package cache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/p2sp/p2sp/internal/fileinfo"
)

// randomFile returns size random bytes (deterministic per seed) and their
// file info at path p.
func randomFile(t testing.TB, p string, size int64, seed uint64) (*fileinfo.Info, []byte) {
	t.Helper()
	data := make([]byte, size)
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	_, _ = rand.NewChaCha8(key).Read(data)
	info, err := fileinfo.Compute(context.Background(), p, bytes.NewReader(data), size)
	if err != nil {
		t.Fatal(err)
	}
	return info, data
}

func pieceOf(info *fileinfo.Info, data []byte, i int) []byte {
	off, n := info.PieceBounds(i)
	return data[off : off+n]
}

// evictLog records OnEvict calls.
type evictLog struct {
	mu  sync.Mutex
	ihs []string
}

func (l *evictLog) add(ih string) {
	l.mu.Lock()
	l.ihs = append(l.ihs, ih)
	l.mu.Unlock()
}

func (l *evictLog) has(ih string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.ihs, ih)
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// openCache opens a cache on dir and closes it when the test ends.
func openCache(t testing.TB, dir string, capacity int64, ev *evictLog) *Cache {
	t.Helper()
	cfg := Config{Dir: dir, Capacity: capacity, Logger: testLogger(t)}
	if ev != nil {
		cfg.OnEvict = ev.add
	}
	c, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Error(err)
		}
	})
	return c
}

func writeAll(t testing.TB, e *Entry, data []byte) {
	t.Helper()
	info := e.Info()
	for i := range info.NumPieces() {
		if err := e.WritePiece(i, pieceOf(info, data, i)); err != nil {
			t.Fatalf("WritePiece(%d): %v", i, err)
		}
	}
}

// waitFor waits for a state reached by the cache's own goroutines.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func readAll(t testing.TB, e *Entry) []byte {
	t.Helper()
	b := make([]byte, e.Info().Size)
	if _, err := e.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestWritePiece(t *testing.T) {
	info, data := randomFile(t, "films/a.mp4", 1<<20+12345, 1)
	corrupt := bytes.Clone(pieceOf(info, data, 1))
	corrupt[100] ^= 0xff
	tests := []struct {
		name    string
		piece   int
		data    []byte
		wantErr error
		wantBad bool // any error, not ErrHashMismatch
	}{
		{"good piece", 1, pieceOf(info, data, 1), nil, false},
		{"short last piece", info.NumPieces() - 1, pieceOf(info, data, info.NumPieces()-1), nil, false},
		{"one flipped byte", 1, corrupt, ErrHashMismatch, false},
		{"another piece's data", 2, pieceOf(info, data, 1), ErrHashMismatch, false},
		{"truncated", 1, pieceOf(info, data, 1)[:1000], ErrHashMismatch, false},
		{"no such piece", info.NumPieces(), pieceOf(info, data, 1), nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openCache(t, t.TempDir(), 10<<20, nil)
			e, err := c.Create(info)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Release()
			err = e.WritePiece(tt.piece, tt.data)
			switch {
			case tt.wantBad:
				if err == nil {
					t.Fatal("WritePiece succeeded, want an error")
				}
				return
			case !errors.Is(err, tt.wantErr):
				t.Fatalf("WritePiece: %v, want %v", err, tt.wantErr)
			}
			off, n := info.PieceBounds(tt.piece)
			got := make([]byte, n)
			if _, err := e.ReadAt(got, off); err != nil {
				t.Fatal(err)
			}
			if tt.wantErr != nil {
				if e.Have(tt.piece) || e.HaveCount() != 0 {
					t.Error("a rejected piece is marked verified")
				}
				if !bytes.Equal(got, make([]byte, n)) {
					t.Error("a rejected piece's bytes were written")
				}
				return
			}
			if !e.Have(tt.piece) || e.HaveCount() != 1 {
				t.Errorf("Have(%d) = %v, HaveCount = %d after WritePiece", tt.piece, e.Have(tt.piece), e.HaveCount())
			}
			if !bytes.Equal(got, tt.data) {
				t.Error("bytes read back differ from the piece written")
			}
		})
	}
}

func TestWait(t *testing.T) {
	info, data := randomFile(t, "a.mp4", 1<<20, 2)
	tests := []struct {
		name string
		// act runs while Wait(ctx, 2) blocks.
		act  func(c *Cache, e *Entry, cancel context.CancelFunc) error
		want error
	}{
		{"sealed by WritePiece", func(c *Cache, e *Entry, _ context.CancelFunc) error {
			// Another piece first: it must not wake the waiter with nil.
			if err := e.WritePiece(1, pieceOf(info, data, 1)); err != nil {
				return err
			}
			return e.WritePiece(2, pieceOf(info, data, 2))
		}, nil},
		{"sealed by the torrent client", func(c *Cache, e *Entry, _ context.CancelFunc) error {
			p := e.storagePiece(2)
			if _, err := p.WriteAt(pieceOf(info, data, 2), 0); err != nil {
				return err
			}
			return p.MarkComplete()
		}, nil},
		{"context cancelled", func(_ *Cache, _ *Entry, cancel context.CancelFunc) error {
			cancel()
			return nil
		}, context.Canceled},
		{"entry removed", func(c *Cache, e *Entry, _ context.CancelFunc) error {
			c.Remove(e.Info().InfoHash)
			return nil
		}, ErrRemoved},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openCache(t, t.TempDir(), 10<<20, nil)
			e, err := c.Create(info)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Release()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- e.Wait(ctx, 2) }()
			select {
			case err := <-done:
				t.Fatalf("Wait returned %v before anything happened", err)
			case <-time.After(20 * time.Millisecond):
			}
			if err := tt.act(c, e, cancel); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-done:
				if !errors.Is(err, tt.want) {
					t.Fatalf("Wait: %v, want %v", err, tt.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Wait did not return")
			}
		})
	}
}

func TestWaitOnVerifiedPieceReturnsAtOnce(t *testing.T) {
	info, data := randomFile(t, "a.mp4", 600<<10, 3)
	c := openCache(t, t.TempDir(), 10<<20, nil)
	e, err := c.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Release()
	if err := e.WritePiece(0, pieceOf(info, data, 0)); err != nil {
		t.Fatal(err)
	}
	if err := e.Wait(t.Context(), 0); err != nil {
		t.Fatal(err)
	}
}

func TestComplete(t *testing.T) {
	info, data := randomFile(t, "films/b.mkv", 3<<20+777, 4)
	c := openCache(t, t.TempDir(), 10<<20, nil)
	e, err := c.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Release()
	// Pieces arrive out of order, as they do from peers and a seeking
	// player.
	order := rand.New(rand.NewPCG(4, 4)).Perm(info.NumPieces())
	for k, i := range order {
		if e.Complete() {
			t.Fatalf("Complete after %d of %d pieces", k, len(order))
		}
		if err := e.WritePiece(i, pieceOf(info, data, i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "Complete", func() bool { return e.Complete() || e.Failed() != nil })
	if err := e.Failed(); err != nil {
		t.Fatalf("Failed: %v", err)
	}
	if e.HaveCount() != info.NumPieces() {
		t.Errorf("HaveCount = %d, want %d", e.HaveCount(), info.NumPieces())
	}
	if !bytes.Equal(readAll(t, e), data) {
		t.Error("cached bytes differ from the file")
	}
}

func TestWholeFileMismatchRemovesEntry(t *testing.T) {
	info, data := randomFile(t, "films/c.mp4", 1<<20+3, 5)
	// Pieces right, whole-file hash wrong: the SHA-256 is not part of the
	// info dictionary, so the infohash stays valid.
	wrong := sha256.Sum256([]byte("something else"))
	info.SHA256 = hex.EncodeToString(wrong[:])
	if err := info.Validate(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ev := &evictLog{}
	c := openCache(t, dir, 10<<20, ev)
	e, err := c.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, e, data)
	waitFor(t, "Failed", func() bool { return e.Failed() != nil })
	if e.Complete() {
		t.Error("Complete despite the SHA-256 mismatch")
	}
	if err := e.Wait(t.Context(), 0); !errors.Is(err, ErrRemoved) {
		t.Errorf("Wait on the failed entry: %v, want ErrRemoved", err)
	}
	if _, ok := c.Lookup(info.Path); ok {
		t.Error("Lookup finds the failed entry")
	}
	if !ev.has(info.InfoHash) {
		t.Error("OnEvict was not called for the failed entry")
	}
	e.Release()
	if got := c.Stats(); got.Bytes != 0 || got.Entries != 0 {
		t.Errorf("Stats after removal = %+v, want no bytes and no entries", got)
	}
	if des, _ := os.ReadDir(dir); len(des) != 0 {
		t.Errorf("cache directory still holds %d files after the failed entry was released", len(des))
	}
}

func TestRestart(t *testing.T) {
	info, data := randomFile(t, "films/d.mp4", 2<<20+5000, 6)
	n := info.NumPieces()
	tests := []struct {
		name    string
		written []int
		// corrupt flips one byte in these pieces while the cache is down.
		corrupt      []int
		wantHave     []int
		wantComplete bool
	}{
		{"partial", []int{0, 2, 5}, nil, []int{0, 2, 5}, false},
		{"complete", allPieces(n), nil, allPieces(n), true},
		{"complete, one piece rotted", allPieces(n), []int{3}, without(allPieces(n), 3), false},
		{"partial, last piece rotted", []int{1, n - 1}, []int{n - 1}, []int{1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			c, err := Open(t.Context(), Config{Dir: dir, Capacity: 10 << 20, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			e, err := c.Create(info)
			if err != nil {
				t.Fatal(err)
			}
			for _, i := range tt.written {
				if err := e.WritePiece(i, pieceOf(info, data, i)); err != nil {
					t.Fatal(err)
				}
			}
			e.Release()
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}

			if len(tt.corrupt) > 0 {
				f, err := os.OpenFile(filepath.Join(dir, info.InfoHash, "data"), os.O_RDWR, 0)
				if err != nil {
					t.Fatal(err)
				}
				for _, i := range tt.corrupt {
					off, _ := info.PieceBounds(i)
					b := []byte{pieceOf(info, data, i)[7] ^ 0x01}
					if _, err := f.WriteAt(b, off+7); err != nil {
						t.Fatal(err)
					}
				}
				f.Close()
			}

			c = openCache(t, dir, 10<<20, nil)
			e, ok := c.Lookup(info.Path)
			if !ok {
				t.Fatal("entry lost across the restart")
			}
			defer e.Release()
			for i := range n {
				if want := slices.Contains(tt.wantHave, i); e.Have(i) != want {
					t.Errorf("Have(%d) = %v after restart, want %v", i, e.Have(i), want)
				}
			}
			if e.Complete() != tt.wantComplete {
				t.Errorf("Complete = %v after restart, want %v", e.Complete(), tt.wantComplete)
			}
			for _, i := range tt.wantHave {
				off, l := info.PieceBounds(i)
				got := make([]byte, l)
				if _, err := e.ReadAt(got, off); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, pieceOf(info, data, i)) {
					t.Errorf("piece %d differs after restart", i)
				}
			}
			// The dropped pieces can be fetched again, and the file completes.
			for i := range n {
				if !e.Have(i) && slices.Contains(tt.written, i) {
					if err := e.WritePiece(i, pieceOf(info, data, i)); err != nil {
						t.Fatal(err)
					}
				}
			}
			if len(tt.written) == n {
				waitFor(t, "Complete after re-fetching", e.Complete)
			}
		})
	}
}

func allPieces(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func without(s []int, x int) []int {
	return slices.DeleteFunc(slices.Clone(s), func(v int) bool { return v == x })
}

func TestOpenDeletesBadEntries(t *testing.T) {
	info, data := randomFile(t, "e.mp4", 300<<10, 7)
	dir := t.TempDir()
	c, err := Open(t.Context(), Config{Dir: dir, Capacity: 10 << 20, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	writeAll(t, e, data)
	e.Release()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, info.InfoHash)
	garbage := filepath.Join(dir, "0123456789abcdef0123456789abcdef01234567")
	if err := os.MkdirAll(garbage, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(garbage, "info.json"), []byte(`{"path":"../../etc/passwd"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	leftover := filepath.Join(dir, trashPrefix+"x-1")
	if err := os.MkdirAll(leftover, 0o755); err != nil {
		t.Fatal(err)
	}

	c = openCache(t, dir, 10<<20, nil)
	if exists(garbage) || exists(leftover) {
		t.Error("Open kept an invalid entry or a removed entry's leftover")
	}
	if !exists(good) || c.Stats().Entries != 1 {
		t.Error("Open dropped the valid entry")
	}
}

func TestCapacity(t *testing.T) {
	const size = 1 << 20
	var infos []*fileinfo.Info
	for i, p := range []string{"a", "b", "c", "d", "e", "f"} {
		info, _ := randomFile(t, p+".mp4", size, uint64(100+i))
		infos = append(infos, info)
	}
	a, b, cc, d, e, f := infos[0], infos[1], infos[2], infos[3], infos[4], infos[5]
	dir := t.TempDir()
	ev := &evictLog{}
	c := openCache(t, dir, 3*size, ev)

	create := func(info *fileinfo.Info) *Entry {
		t.Helper()
		en, err := c.Create(info)
		if err != nil {
			t.Fatalf("Create(%s): %v", info.Path, err)
		}
		return en
	}
	lookup := func(info *fileinfo.Info) *Entry {
		t.Helper()
		en, ok := c.Lookup(info.Path)
		if !ok {
			t.Fatalf("Lookup(%s) failed", info.Path)
		}
		return en
	}
	// check compares the cache's contents, on disk and in its index, and
	// the OnEvict calls so far with what the test expects.
	check := func(evicted []*fileinfo.Info, want ...*fileinfo.Info) {
		t.Helper()
		for _, info := range infos {
			onDisk := exists(filepath.Join(dir, info.InfoHash))
			inIndex := slices.ContainsFunc(c.Entries(), func(en *Entry) bool { return en.Info().InfoHash == info.InfoHash })
			if wanted := slices.Contains(want, info); inIndex != wanted || onDisk != wanted {
				t.Errorf("%s: in index %v, on disk %v, want %v", info.Path, inIndex, onDisk, wanted)
			}
		}
		var wantEv []string
		for _, info := range evicted {
			wantEv = append(wantEv, info.InfoHash)
		}
		ev.mu.Lock()
		if !slices.Equal(ev.ihs, wantEv) {
			t.Errorf("OnEvict calls %v, want %v", ev.ihs, wantEv)
		}
		ev.mu.Unlock()
		if st := c.Stats(); st.Bytes != int64(len(want))*size || st.Entries != len(want) {
			t.Errorf("Stats = %+v with %d entries of %d bytes", st, len(want), size)
		}
	}

	create(a).Release()
	create(b).Release()
	create(cc).Release()
	check(nil, a, b, cc)

	// A use moves a to the front: b is now the least recently used.
	lookup(a).Release()
	create(d).Release() // LRU order, oldest first: cc, a, d
	check([]*fileinfo.Info{b}, a, cc, d)

	// a is the oldest, but pinned (being streamed): cc goes instead.
	ea := lookup(a)
	lookup(cc).Release()
	lookup(d).Release() // a (pinned), cc, d
	ee := create(e)
	check([]*fileinfo.Info{b, cc}, a, d, e)

	// Everything pinned: no room, and nothing is evicted for trying.
	ed := lookup(d)
	if _, err := c.Create(f); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Create with every entry pinned: %v, want ErrNoSpace", err)
	}
	check([]*fileinfo.Info{b, cc}, a, d, e)

	// A file larger than the whole cache never fits, and evicts nothing.
	ed.Release()
	big, _ := randomFile(t, "big.mp4", 4*size, 200)
	if _, err := c.Create(big); !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Create of a file larger than Capacity: %v, want ErrNoSpace", err)
	}
	check([]*fileinfo.Info{b, cc}, a, d, e)
	if st := c.Stats(); st.Evictions != 2 {
		t.Errorf("Evictions = %d, want 2", st.Evictions)
	}

	// Released, a is evictable again.
	ea.Release()
	ee.Release()
	create(f).Release()
	check([]*fileinfo.Info{b, cc, a}, d, e, f)
}

// TestPeekLeavesRecency: a probed entry (Peek) is evicted as if nobody had
// looked at it; a used one (Lookup) is not.
func TestPeekLeavesRecency(t *testing.T) {
	const size = 1 << 20
	c := openCache(t, t.TempDir(), 2*size, nil)
	infos := map[string]*fileinfo.Info{}
	for i, p := range []string{"a", "b", "c", "d"} {
		infos[p], _ = randomFile(t, p+".mp4", size, uint64(400+i))
	}
	create := func(p string) {
		t.Helper()
		en, err := c.Create(infos[p])
		if err != nil {
			t.Fatal(err)
		}
		en.Release()
	}
	create("a")
	create("b")
	for _, tc := range []struct {
		name       string
		look       func(string) (*Entry, bool)
		of, create string
		want       []string // entries after, oldest first
	}{
		{"Peek", c.Peek, "a", "c", []string{"b.mp4", "c.mp4"}},
		{"Lookup", c.Lookup, "b", "d", []string{"b.mp4", "d.mp4"}},
	} {
		en, ok := tc.look(tc.of + ".mp4")
		if !ok {
			t.Fatalf("%s(%s.mp4) found nothing", tc.name, tc.of)
		}
		en.Release()
		create(tc.create)
		if got := paths(c.Entries()); !slices.Equal(got, tc.want) {
			t.Errorf("after %s of %s and creating %s: entries %v, want %v", tc.name, tc.of, tc.create, got, tc.want)
		}
	}
}

func TestOpenEvictsOldestOverCapacity(t *testing.T) {
	const size = 1 << 20
	dir := t.TempDir()
	c, err := Open(t.Context(), Config{Dir: dir, Capacity: 3 * size, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var infos []*fileinfo.Info
	for i, p := range []string{"a", "b", "c"} {
		info, _ := randomFile(t, p+".mp4", size, uint64(300+i))
		infos = append(infos, info)
		en, err := c.Create(info)
		if err != nil {
			t.Fatal(err)
		}
		en.Release()
	}
	// b becomes the most recently used, a the least.
	en, _ := c.Lookup(infos[1].Path)
	en.Release()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}

	// Open evicts without calling OnEvict: its owner (the proxy) is still
	// being built and holds no torrent of any entry yet.
	ev := &evictLog{}
	c = openCache(t, dir, 2*size, ev)
	if len(ev.ihs) != 0 {
		t.Errorf("OnEvict calls during Open: %v, want none", ev.ihs)
	}
	got := c.Entries()
	if len(got) != 2 || got[0].Info().Path != "c.mp4" || got[1].Info().Path != "b.mp4" {
		t.Errorf("entries after restart: %v, want c.mp4 then b.mp4", paths(got))
	}
	if st := c.Stats(); st.Bytes != 2*size {
		t.Errorf("cache accounts %d bytes after restart, want %d", st.Bytes, 2*size)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("%d entries in the cache directory after restart, want 2 (a deleted)", len(ents))
	}
}

func paths(es []*Entry) []string {
	var s []string
	for _, e := range es {
		s = append(s, e.Info().Path)
	}
	return s
}

func TestCreateReplacesStaleVersion(t *testing.T) {
	for _, pinned := range []bool{false, true} {
		t.Run(map[bool]string{false: "old released", true: "old still streaming"}[pinned], func(t *testing.T) {
			v1, d1 := randomFile(t, "films/a.mp4", 700<<10, 400)
			v2, d2 := randomFile(t, "films/a.mp4", 900<<10, 401)
			dir := t.TempDir()
			ev := &evictLog{}
			c := openCache(t, dir, 10<<20, ev)
			e1, err := c.Create(v1)
			if err != nil {
				t.Fatal(err)
			}
			writeAll(t, e1, d1)
			if !pinned {
				e1.Release()
			}
			e2, err := c.Create(v2)
			if err != nil {
				t.Fatal(err)
			}
			defer e2.Release()
			writeAll(t, e2, d2)

			got, ok := c.Lookup(v1.Path)
			if !ok || got != e2 {
				t.Fatal("Lookup does not return the new version")
			}
			got.Release()
			if !ev.has(v1.InfoHash) {
				t.Error("OnEvict not called for the stale version")
			}
			if c.Stats().Entries != 1 {
				t.Errorf("Stats().Entries = %d, want 1", c.Stats().Entries)
			}
			if exists(filepath.Join(dir, v1.InfoHash)) {
				t.Error("the stale version's directory is still in place")
			}
			if pinned {
				// The player streaming the old version keeps its bytes until
				// it lets go.
				if !bytes.Equal(readAll(t, e1), d1) {
					t.Error("a pinned stale version's bytes changed under its reader")
				}
				if err := e1.Wait(t.Context(), 0); !errors.Is(err, ErrRemoved) {
					t.Errorf("Wait on the stale version: %v, want ErrRemoved", err)
				}
				if want := v1.Size + v2.Size; c.Stats().Bytes != want {
					t.Errorf("Bytes = %d while the old version is pinned, want %d", c.Stats().Bytes, want)
				}
				e1.Release()
			}
			if c.Stats().Bytes != v2.Size {
				t.Errorf("Bytes = %d, want %d", c.Stats().Bytes, v2.Size)
			}
			des, _ := os.ReadDir(dir)
			if len(des) != 1 || des[0].Name() != v2.InfoHash {
				t.Errorf("cache directory holds %v, want only the new version", des)
			}
		})
	}
}

func TestCreateExistingReturnsSameEntry(t *testing.T) {
	info, data := randomFile(t, "a.mp4", 500<<10, 500)
	c := openCache(t, t.TempDir(), 10<<20, nil)
	e1, err := c.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	defer e1.Release()
	writeAll(t, e1, data)
	e2, err := c.Create(info)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Release()
	if e1 != e2 || e2.HaveCount() != info.NumPieces() {
		t.Error("Create of a cached file did not return the cached entry")
	}
	if st := c.Stats(); st.Bytes != info.Size || st.Entries != 1 {
		t.Errorf("Stats = %+v, want one entry of %d bytes", st, info.Size)
	}
}

// TestCompleteThroughTheClient: the whole-file SHA-256 comes out right
// however the pieces arrive: through the BitTorrent client's path (chunks
// written, the piece read whole for its hash, then marked complete), from
// the origin (WritePiece), in order or not, and after a hash pass of bad
// bytes that the client then rewrote.
func TestCompleteThroughTheClient(t *testing.T) {
	info, data := randomFile(t, "films/d.mp4", 2<<20+555, 6)
	n := info.NumPieces()
	inOrder := make([]int, n)
	for i := range inOrder {
		inOrder[i] = i
	}
	reversed := slices.Clone(inOrder)
	slices.Reverse(reversed)
	shuffled := rand.New(rand.NewPCG(6, 6)).Perm(n)
	client := func(t *testing.T, e *Entry, i int, b []byte) {
		p := e.storagePiece(i)
		if _, err := p.WriteAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := p.WriteTo(io.Discard); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct {
		name   string
		order  []int
		origin func(i int) bool // pieces the origin supplies
		bad    bool             // piece order[0] is hashed once with bad bytes first
	}{
		{"client, in order", inOrder, func(int) bool { return false }, false},
		{"client, reversed", reversed, func(int) bool { return false }, false},
		{"client and origin, shuffled", shuffled, func(i int) bool { return i%3 == 0 }, false},
		{"client, a bad pass first", inOrder, func(int) bool { return false }, true},
		// The bad pass's bytes are held ahead of the frontier (see
		// wholeWindow) until the good pass replaces them.
		{"client, reversed, a bad pass first", reversed, func(int) bool { return false }, true},
		{"origin after a bad pass", inOrder, func(i int) bool { return i == 0 }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := openCache(t, t.TempDir(), 10<<20, nil)
			e, err := c.Create(info)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Release()
			for k, i := range tt.order {
				good := pieceOf(info, data, i)
				if k == 0 && tt.bad {
					client(t, e, i, bytes.Repeat([]byte{0xee}, len(good)))
					if err := e.storagePiece(i).MarkNotComplete(); err != nil {
						t.Fatal(err)
					}
				}
				if tt.origin(i) {
					if err := e.WritePiece(i, good); err != nil {
						t.Fatal(err)
					}
					continue
				}
				client(t, e, i, good)
				if err := e.storagePiece(i).MarkComplete(); err != nil {
					t.Fatal(err)
				}
			}
			waitFor(t, "Complete", func() bool { return e.Complete() || e.Failed() != nil })
			if err := e.Failed(); err != nil {
				t.Fatalf("Failed: %v", err)
			}
		})
	}
}
