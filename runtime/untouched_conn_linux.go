package runtime

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// kernelTellsUntouched: untouchedConn can say yes here. A round-robin
// worker on TCP then reports what its server accepted lazily (see
// lazyAcceptReports), since the primary asks the kernel about every copy
// a dead worker held.
const kernelTellsUntouched = true

// tcpEstablished and tcpCloseWait are TCP_ESTABLISHED and TCP_CLOSE_WAIT
// of the kernel's tcp_states.h, as tcp_info's state reports them.
const (
	tcpEstablished = 1
	tcpCloseWait   = 8
)

// untouchedConn reports whether nobody has read from or written to the TCP
// connection fd since it was accepted, as far as the kernel can tell: it is
// established (or its client has shut down its side after writing, which
// another server can still answer: close-wait), every byte it received is
// still in its receive queue (the count of bytes received,
// tcpi_bytes_received, equals the queue's length, SIOCINQ), and it has
// sent no data (tcpi_bytes_sent, Linux 4.19, and
// nothing queued to send, SIOCOUTQ). Anything else, a kernel whose
// tcp_info is too short to tell, or a socket that is not TCP, is false.
func untouchedConn(fd int) bool {
	var info unix.TCPInfo
	n := uint32(unsafe.Sizeof(info))
	// getsockopt(2) through x/sys's Syscall6: GetsockoptTCPInfo does not
	// return the length the kernel filled, and an older kernel fills less.
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.IPPROTO_TCP, unix.TCP_INFO,
		uintptr(unsafe.Pointer(&info)), uintptr(unsafe.Pointer(&n)), 0)
	if errno != 0 || uintptr(n) < unsafe.Offsetof(info.Bytes_sent)+unsafe.Sizeof(info.Bytes_sent) {
		return false
	}
	if info.State != tcpEstablished && info.State != tcpCloseWait || info.Bytes_sent != 0 || info.Bytes_acked != 0 || info.Notsent_bytes != 0 {
		return false
	}
	// The client's FIN counts in bytes_received (it takes a sequence
	// number), not in the receive queue.
	received := info.Bytes_received
	if info.State == tcpCloseWait {
		received--
	}
	inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil || uint64(inq) != received {
		return false
	}
	outq, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
	return err == nil && outq == 0
}
