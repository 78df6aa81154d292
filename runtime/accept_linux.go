//go:build linux && !386

package runtime

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// acceptRaw accepts one connection as a blocking, close-on-exec
// descriptor, without decoding the peer's address (nothing to allocate).
func acceptRaw(fd int) (int, error) {
	nfd, _, e := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(fd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
	if e != 0 {
		return -1, syscall.Errno(e)
	}
	return int(nfd), nil
}
