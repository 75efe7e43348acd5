package origin

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"slices"
	"testing"

	"github.com/p2sp/p2sp/internal/testtool"
)

// testS3Media starts versitygw with bucket "media" and returns the S3
// media of s3://media/films.
func testS3Media(t *testing.T) (*testtool.S3, *s3Media) {
	t.Helper()
	srv := testtool.StartS3(t, "media")
	m, err := openS3Media("s3://media/films", S3Config{Endpoint: srv.URL, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return srv, m
}

// TestS3MediaList: the objects below the prefix, by their names below it,
// with their sizes; nothing outside the prefix, no folder marker.
func TestS3MediaList(t *testing.T) {
	srv, m := testS3Media(t)
	want := map[string]int64{"a.bin": 10, "dir/b.bin": 3 << 20, "dir/.hidden": 1}
	for name, size := range want {
		srv.Put(t, "media", "films/"+name, randomBytes(int(size), 1))
	}
	srv.Put(t, "media", "filmsX/out.bin", []byte("x"))
	srv.Put(t, "media", "other/out.bin", []byte("x"))
	srv.Put(t, "media", "films/folder/", nil)
	got := map[string]int64{}
	if err := m.list(t.Context(), func(name string, v version) { got[name] = v.size }); err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("list: %v, want %v", got, want)
	}
	v, err := m.stat(t.Context(), "dir/b.bin")
	if err != nil || v.size != 3<<20 || v.tag == "" {
		t.Errorf("stat dir/b.bin: %+v, %v; want size %d and an ETag", v, err, 3<<20)
	}
	for _, p := range []string{"missing.bin", "../other/out.bin", "dir/../a.bin", "/a.bin", "dir//b.bin", "folder/"} {
		if _, err := m.stat(t.Context(), p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stat %q: %v, want fs.ErrNotExist", p, err)
		}
		if _, _, err := m.open(t.Context(), p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("open %q: %v, want fs.ErrNotExist", p, err)
		}
	}
}

// TestS3MediaReads: sequential reads across several GET windows, a read
// limited to a range, and ReadAt across a chunk boundary return the
// object's bytes; a read of an object replaced since it was opened fails
// (If-Match), and its version, so its ETag, changed.
func TestS3MediaReads(t *testing.T) {
	srv, m := testS3Media(t)
	data := randomBytes(3*s3MinWindow+12345, 2)
	srv.Put(t, "media", "films/f.bin", data)
	f, v, err := m.open(t.Context(), "f.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if v.size != int64(len(data)) {
		t.Fatalf("size %d, want %d", v.size, len(data))
	}
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read all: %d bytes, %v; want the object's %d", len(got), err, len(data))
	}
	// A served range: from a seek, limited to its end.
	off, n := int64(s3MinWindow-100), int64(5000)
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	f.(readLimiter).limitReads(off + n)
	got, err = io.ReadAll(io.LimitReader(f, n))
	if err != nil || !bytes.Equal(got, data[off:off+n]) {
		t.Errorf("range %d+%d: %d bytes, %v, not the object's", off, n, len(got), err)
	}
	for _, c := range []struct{ off, n int64 }{{s3Chunk - 10, 20}, {0, 1}, {int64(len(data)) - 7, 7}, {2*s3Chunk + 5, s3Chunk + 10}} {
		b := make([]byte, c.n)
		if k, err := f.ReadAt(b, c.off); err != nil || !bytes.Equal(b, data[c.off:c.off+c.n]) {
			t.Errorf("ReadAt %d+%d: %d, %v, not the object's bytes", c.off, c.n, k, err)
		}
	}
	if k, err := f.ReadAt(make([]byte, 10), int64(len(data))-5); k != 5 || err != io.EOF {
		t.Errorf("ReadAt past the end: %d, %v; want 5, EOF", k, err)
	}

	// The same size, other bytes: only the ETag tells.
	changed := slices.Clone(data)
	changed[0] ^= 1
	srv.Put(t, "media", "films/f.bin", changed)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(f); !errors.Is(err, errChanged) {
		t.Errorf("read after the object changed: %v, want errChanged", err)
	}
	if _, err := f.ReadAt(make([]byte, 10), 0); !errors.Is(err, errChanged) {
		t.Errorf("ReadAt after the object changed: %v, want errChanged", err)
	}
	now, err := m.stat(t.Context(), "f.bin")
	if err != nil {
		t.Fatal(err)
	}
	if now.equal(v) || now.statETag() == v.statETag() {
		t.Errorf("version after a rewrite: %+v, the same as before (%+v)", now, v)
	}
}

// TestS3Origin: an origin on S3 hashes an object, serves it with its
// content ETag, and once the object is replaced serves the new bytes
// under a new ETag.
func TestS3Origin(t *testing.T) {
	srv := testtool.StartS3(t, "media")
	data := randomBytes(200_000, 3)
	srv.Put(t, "media", "v/clip.bin", data)
	// Hidden names and a writer's temporary name are never served (keys
	// with an empty element, "a//b", versitygw stores as "a/b").
	for _, k := range []string{"v/.hidden.bin", "v/.dir/x.bin", "v/up.part"} {
		srv.Put(t, "media", k, []byte("no"))
	}
	o := startOrigin(t, Config{Media: "s3://media/v", S3: S3Config{Endpoint: srv.URL, AccessKeyID: srv.AccessKey, SecretAccessKey: srv.SecretKey}})
	var etag string
	eventually(t, "content ETag", func() bool {
		resp, body := get(t, http.MethodGet, o.url+"/files/clip.bin", nil)
		etag = resp.Header.Get("ETag")
		return resp.StatusCode == http.StatusOK && bytes.Equal(body, data) && bytes.HasPrefix([]byte(etag), []byte(`"sha256-`))
	})
	var paths []string
	for _, e := range o.catalog(t) {
		paths = append(paths, e.Path)
	}
	if !slices.Equal(paths, []string{"clip.bin"}) {
		t.Errorf("catalog %v, want only clip.bin", paths)
	}
	resp, body := get(t, http.MethodGet, o.url+"/files/clip.bin", map[string]string{"Range": "bytes=100-199"})
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[100:200]) {
		t.Errorf("range: %s, %d bytes", resp.Status, len(body))
	}
	changed := randomBytes(200_000, 4)
	srv.Put(t, "media", "v/clip.bin", changed)
	eventually(t, "new bytes under a new ETag", func() bool {
		resp, body := get(t, http.MethodGet, o.url+"/files/clip.bin", nil)
		return resp.StatusCode == http.StatusOK && bytes.Equal(body, changed) && resp.Header.Get("ETag") != etag
	})
	if resp, _ := get(t, http.MethodGet, o.url+"/files/missing.bin", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing object: %s, want 404", resp.Status)
	}
}

func TestParseS3Media(t *testing.T) {
	for _, tc := range []struct {
		media, bucket, prefix string
		ok                    bool
	}{
		{"s3://media", "media", "", true},
		{"s3://media/", "media", "", true},
		{"s3://media/films", "media", "films/", true},
		{"s3://media/films/new/", "media", "films/new/", true},
		{"s3://", "", "", false},
		{"s3:///films", "", "", false},
		{"s3://media/../other", "", "", false},
		{"s3://media/a//b", "", "", false},
	} {
		b, p, err := parseS3Media(tc.media)
		if (err == nil) != tc.ok || b != tc.bucket || p != tc.prefix {
			t.Errorf("parseS3Media(%q) = %q, %q, %v; want %q, %q, ok %v", tc.media, b, p, err, tc.bucket, tc.prefix, tc.ok)
		}
	}
}
