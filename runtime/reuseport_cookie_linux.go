package runtime

import (
	"os"

	"golang.org/x/sys/unix"
)

// socketCookie returns the kernel's identifier of the socket behind f
// (SO_COOKIE, Linux 4.12+): the same for every descriptor of one socket,
// in any process, and never reused while the system runs. The primary
// uses it to recognise the connections a worker gives back.
func socketCookie(f *os.File) (uint64, bool) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, false
	}
	var c uint64
	var gerr error
	if err := rc.Control(func(fd uintptr) { c, gerr = unix.GetsockoptUint64(int(fd), unix.SOL_SOCKET, unix.SO_COOKIE) }); err != nil || gerr != nil {
		return 0, false
	}
	return c, c != 0
}
