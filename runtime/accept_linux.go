//go:build linux && !386

package runtime

import (
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime/internal/link"
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

// acceptHandoff accepts one round-robin connection as a non-blocking,
// close-on-exec descriptor. O_NONBLOCK is a status flag of the open file,
// so it travels with the descriptor: the worker's runtime polls the
// received descriptor as it is, without the duplicate net.FileConn would
// make (handoff_conn_unix.go). The primary itself never reads or writes
// it.
//
// It is a raw system call (no entersyscall): accept4 on the non-blocking
// listening socket never blocks, and the scheduler's bookkeeping around a
// plain one costs, besides its own time, a futex wake of the runtime's
// sysmon thread whenever the primary was idle (every new burst of
// connections), and sysmon then polls at 20 us for a while.
func acceptHandoff(fd int) (int, error) {
	nfd, _, e := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(fd), 0, 0, unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0, 0)
	if e != 0 {
		return -1, syscall.Errno(e)
	}
	return int(nfd), nil
}

// setInheritedConnOptions sets on a round-robin TCP listening socket the
// options Go sets on every connection its listeners accept (TCP_NODELAY;
// keep-alive after 15 s idle, every 15 s, 9 probes: net.ListenConfig's
// defaults). Linux copies a listening socket's options to the connections
// accepted from it, so a worker's connection has them without the five
// setsockopt calls net.FileConn makes per connection. Errors are ignored,
// as Go ignores them on accept.
func setInheritedConnOptions(fd int) {
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPCNT, 9)
}

// closeHandoffFD closes the primary's copy of a round-robin connection,
// as a raw system call when the link's guard allows it
// (link.RawSyscallAllowed): close never blocks on these sockets
// (non-blocking, no SO_LINGER), and a plain one, the last plain system
// call on a connection's path through the primary, woke the runtime's
// sysmon thread after every idle spell (about 15 % less primary CPU per
// connection with it raw, together with the link's raw sendmsg).
func closeHandoffFD(fd int) {
	if link.RawSyscallAllowed() {
		unix.RawSyscall(unix.SYS_CLOSE, uintptr(fd), 0, 0)
		return
	}
	closeFD(fd)
}
