package runtime

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/herd-go/herd/runtime/internal/link"
)

// newCallWaker makes a callWaker on a new eventfd, or returns nil if it
// cannot (out of descriptors): the endpoint's callers then wait on their
// channels.
func newCallWaker(l *link.Link) *callWaker {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil
	}
	// A non-blocking descriptor: os.NewFile registers it with the
	// netpoller.
	f := os.NewFile(uintptr(fd), "herd-call-waker")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	return new(callWaker).init(f, rc, l)
}

// eventfdPost adds the 8-byte value at v to the eventfd fd with one raw
// write(2) (see callWaker.wake). Its error is ignored: the descriptor is
// non-blocking and the counter cannot overflow (one is added per call).
func eventfdPost(fd uintptr, v *[8]byte) {
	unix.RawSyscall(unix.SYS_WRITE, fd, uintptr(unsafe.Pointer(v)), uintptr(len(v)))
}
