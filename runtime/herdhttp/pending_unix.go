//go:build unix

package herdhttp

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// pending reports whether c's socket holds bytes not read yet: a request
// arriving. It peeks one byte without blocking (recv with MSG_PEEK and
// MSG_DONTWAIT) through RawConn.Control, which, unlike RawConn.Read, does
// not refuse to run once the read deadline has passed.
func pending(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var b [1]byte
	_ = rc.Control(func(fd uintptr) {
		n, _, _ = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	return n > 0
}
