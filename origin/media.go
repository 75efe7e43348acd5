package origin

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strings"
)

// media is where the origin's files live: a local directory (localMedia,
// the default) or a bucket of S3-compatible object storage (s3Media). It
// names files by slash-separated paths below its root, as
// fileinfo.CleanPath leaves them, and reaches nothing outside that root
// whatever path it is given.
type media interface {
	// list calls fn for every regular file below the root with its name
	// (unchecked: the scan decides whether it can be served) and version.
	list(ctx context.Context, fn func(name string, v version)) error
	// stat returns the version of the regular file p; an error wrapping
	// fs.ErrNotExist or errNotRegular when p is not one.
	stat(ctx context.Context, p string) (version, error)
	// open opens the regular file p and returns the version it reads.
	// Reads of a file that changed since fail rather than mix versions
	// where the media can tell (S3's If-Match); the caller compares
	// versions where it cannot.
	open(ctx context.Context, p string) (mediaFile, version, error)
	// String names the media in logs.
	String() string
	Close() error
}

// mediaFile is an open media file. Seek then Read stream it (the serving
// and hashing path); ReadAt reads anywhere (multipart ranges, container
// headers).
type mediaFile interface {
	io.ReadSeeker
	io.ReaderAt
	io.Closer
}

// readLimiter is implemented by media files whose sequential reads fetch
// ahead (s3Object): Read need not fetch past end, the end of the range
// being served.
type readLimiter interface {
	limitReads(end int64)
}

// localMedia is a media directory on a local file system, every path
// resolved inside an os.Root.
type localMedia struct {
	dir  string
	root *os.Root
	log  *slog.Logger
}

func openLocalMedia(dir string, log *slog.Logger) (*localMedia, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("origin: media directory: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("origin: media %s is not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("origin: open media: %w", err)
	}
	return &localMedia{dir: dir, root: root, log: log}, nil
}

func (m *localMedia) String() string { return m.dir }

func (m *localMedia) Close() error { return m.root.Close() }

// list walks the directory. It skips hidden directories whole, and
// symlinks, pipes, devices and sockets, which are not media (WalkDir does
// not follow symlinked directories either).
func (m *localMedia) list(ctx context.Context, fn func(string, version)) error {
	err := fs.WalkDir(m.root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		if err != nil {
			if p == "." {
				return err
			}
			m.log.Warn("scan: skipping", "path", p, "err", err)
			return nil
		}
		if p == "." {
			return nil
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir
		}
		if !d.Type().IsRegular() {
			return nil
		}
		st, err := d.Info()
		if err != nil {
			return nil // removed since the directory was read
		}
		fn(p, versionOf(st))
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk %s: %w", m.dir, err)
	}
	return nil
}

func (m *localMedia) stat(_ context.Context, p string) (version, error) {
	st, err := m.root.Lstat(p)
	if err != nil {
		return version{}, fmt.Errorf("stat %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return version{}, fmt.Errorf("stat %s: %w", p, errNotRegular)
	}
	return versionOf(st), nil
}

// open returns the *os.File itself, so that serving it can sendfile.
func (m *localMedia) open(_ context.Context, p string) (mediaFile, version, error) {
	f, st, err := openRegular(m.root, p)
	if err != nil {
		return nil, version{}, err
	}
	return f, versionOf(st), nil
}
