//go:build linux

package runtime

import (
	"net"

	"golang.org/x/sys/unix"
)

// sendNotify sends msg in one datagram to socket, a path or an abstract name
// written with a leading '@' (Go's unix addresses map that '@' to the NUL
// byte that starts an abstract name, as sd_notify does). A fresh socket per
// message keeps no descriptor open between notifications, which are rare.
func sendNotify(socket string, msg []byte) error {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer conn.Close()
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
