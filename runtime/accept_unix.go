//go:build unix && !(linux && !386)

package runtime

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// acceptRaw accepts one connection as a blocking, close-on-exec
// descriptor. Without accept4, the fork lock keeps a concurrent fork from
// inheriting it before close-on-exec is set.
func acceptRaw(fd int) (int, error) {
	syscall.ForkLock.RLock()
	nfd, _, err := unix.Accept(fd)
	if err == nil {
		unix.CloseOnExec(nfd)
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		if errno, ok := err.(syscall.Errno); ok {
			return -1, errno
		}
		return -1, err
	}
	return nfd, nil
}

// acceptHandoff accepts one round-robin connection. Here it is blocking,
// and the worker serves it through net.FileConn's duplicate
// (newHandoffConn).
func acceptHandoff(fd int) (int, error) { return acceptRaw(fd) }

// setInheritedConnOptions does nothing here: workers serve round-robin
// connections through net.FileConn, which sets Go's options itself.
func setInheritedConnOptions(fd int) {}

// closeHandoffFD closes the primary's copy of a round-robin connection.
func closeHandoffFD(fd int) { closeFD(fd) }
