package origin

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// writers tells whether anyone holds f open for writing, by asking for a
// read lease: Linux refuses one (EAGAIN) while a writable descriptor of
// the file exists anywhere on the system (fcntl(2), F_SETLEASE). The lease
// is released at once; it never holds up a writer. Without the right to
// take a lease (neither the file's owner nor CAP_LEASE) or on a file
// system without leases, the answer is writersUnknown.
func writers(f *os.File) writerState {
	fd := int(f.Fd())
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EBUSY) {
			return writersOpen
		}
		return writersUnknown
	}
	unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	return writersClosed
}
