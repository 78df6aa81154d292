//go:build linux

package runtime

import (
	"net"
	"time"

	"golang.org/x/sys/unix"
)

// notifyTimeout bounds the write of one notification.
const notifyTimeout = time.Second

// sendNotify sends msg in one datagram to socket, a path or an abstract name
// written with a leading '@' (Go's unix addresses map that '@' to the NUL
// byte that starts an abstract name, as sd_notify does). A fresh socket per
// message keeps no descriptor open between notifications, which are rare.
// A datagram to a unix socket whose receive queue is full blocks the sender
// (net.unix.max_dgram_qlen, 10 by default) until the receiver reads: the
// write gives up after notifyTimeout, so that a service manager that does
// not read cannot stall the pool's events, which notify.
func sendNotify(socket string, msg []byte) error {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(notifyTimeout))
	_, err = conn.Write(msg)
	return err
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, the clock of
// MONOTONIC_USEC.
func monotonicUsec() uint64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}
