package runtime

import (
	"os"

	"golang.org/x/sys/unix"
)

// deferAcceptSeconds is the TCP_DEFER_ACCEPT value WithDeferAccept sets
// (nginx's "deferred" sets the same). The kernel turns it into a count of
// SYN-ACK retransmissions: a client that connects and sends nothing is
// queued for accept anyway after the first one, about a second later.
const deferAcceptSeconds = 1

// setDeferAccept sets TCP_DEFER_ACCEPT on a listening TCP socket: the
// kernel keeps a connection whose handshake completed without data in the
// listener's SYN queue, and queues it for accept only once its first data
// arrives (or after deferAcceptSeconds).
func setDeferAccept(fd int) error {
	return os.NewSyscallError("setsockopt TCP_DEFER_ACCEPT", unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, deferAcceptSeconds))
}
