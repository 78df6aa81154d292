package link

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// sendFlags are the flags of every sendmsg. macOS has no MSG_NOSIGNAL; Go's
// runtime ignores SIGPIPE for descriptors other than 1 and 2, so a write to
// a socket whose peer is gone fails with EPIPE.
const sendFlags = 0

// Pair returns the two ends of a new connected AF_UNIX SOCK_STREAM
// socketpair, both close-on-exec: give one to New, and the other to the
// peer (for a worker, as an os/exec ExtraFiles entry, which clears
// close-on-exec on the child's copy only).
func Pair() (a, b *os.File, err error) {
	// macOS has no SOCK_CLOEXEC. Holding syscall.ForkLock for reading
	// between socketpair and the fcntls keeps os/exec from forking in
	// between, as the net package does for accept.
	syscall.ForkLock.RLock()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	return os.NewFile(uintptr(fds[0]), "herd-link"), os.NewFile(uintptr(fds[1]), "herd-link"), nil
}

// receiver holds per-link state of recvmsg; macOS needs none.
type receiver struct{}

// recvmsg reads into p, and control messages into oob, with one
// recvmsg(2).
//
// macOS has no MSG_CMSG_CLOEXEC: received descriptors arrive without
// close-on-exec, so it is set on each right after the call, with
// syscall.ForkLock held for reading so that os/exec cannot fork in between
// and leak them into a child.
//
// unix.Recvmsg allocates a source address buffer per call; on Linux the link
// avoids that with a raw system call, which macOS's libc-based system call
// interface does not offer.
func (*receiver) recvmsg(fd int, p, oob []byte) (n, oobn, flags int, err error) {
	syscall.ForkLock.RLock()
	n, oobn, flags, _, err = unix.Recvmsg(fd, p, oob, 0)
	if err == nil && oobn > 0 {
		forEachRight(oob[:oobn], unix.CloseOnExec)
	}
	syscall.ForkLock.RUnlock()
	return n, oobn, flags, err
}

// writeFD writes p to fd with one write(2) (Linux makes it a raw system
// call, see sys_linux.go).
func writeFD(fd int, p []byte) (int, error) { return unix.Write(fd, p) }

// sendmsgFD sends p with the control message oob on fd with one sendmsg.
func sendmsgFD(fd int, p, oob []byte, flags int) (int, error) {
	return unix.SendmsgN(fd, p, oob, nil, flags)
}
