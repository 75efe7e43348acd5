package origin

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// version identifies one state of a media file as stat sees it: size and
// modification time, and also the inode change time and the inode number,
// which no program can set back. A rewrite that keeps the size and restores
// the modification time (touch -r, rsync -t, a coarse-mtime file system)
// still changes the change time, and a rename into place the inode.
type version struct {
	size    int64
	modTime time.Time
	ctime   int64 // inode change time, Unix nanoseconds; 0 where unknown
	ino     uint64
	// tag is an object store's ETag (s3Media), which changes with every
	// write of the object; "" on a file system.
	tag string
}

func versionOf(fi os.FileInfo) version {
	ctime, ino := changeID(fi)
	return version{size: fi.Size(), modTime: fi.ModTime(), ctime: ctime, ino: ino}
}

func (v version) equal(o version) bool {
	return v.size == o.size && v.modTime.Equal(o.modTime) && v.ctime == o.ctime && v.ino == o.ino && v.tag == o.tag
}

// statETag is the entity tag of a version whose content is not hashed
// yet: it changes whenever stat says the file may have changed.
func (v version) statETag() string {
	if v.tag != "" {
		return fmt.Sprintf("\"%x-%x-%s\"", v.modTime.UnixNano(), v.size, etagSafe(v.tag))
	}
	return fmt.Sprintf("\"%x-%x-%x-%x\"", v.modTime.UnixNano(), v.size, v.ctime, v.ino)
}

// contentETag is the strong entity tag of hashed content: the SHA-256 of
// the bytes, so it changes exactly when they do, whatever stat says, and
// is the same on every origin that serves the file.
func contentETag(sha256Hex string) string {
	return "\"sha256-" + sha256Hex + "\""
}

// etagSafe keeps the letters, digits and dashes of an object store's ETag
// (a quoted MD5, "-N" for a multipart upload), which may then stand in an
// entity tag of our own.
func etagSafe(tag string) string {
	return strings.Map(func(r rune) rune {
		if r == '-' || ('0' <= r && r <= '9') || ('a' <= r && r <= 'z') || ('A' <= r && r <= 'Z') {
			return r
		}
		return -1
	}, tag)
}
