package origin

import (
	"os"
	"syscall"
)

// changeID returns the file's inode change time (Unix nanoseconds) and
// inode number.
func changeID(fi os.FileInfo) (ctime int64, ino uint64) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0
	}
	return st.Ctim.Nano(), st.Ino
}

// unlinked reports whether the file has no name left: deleted, or renamed
// over, since it was opened.
func unlinked(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Nlink == 0
}
