//go:build !linux

package runtime

import "errors"

// sendNotify fails: systemd, and its notification socket, exist only on
// Linux. Notifier.Notify logs the failure at debug level and returns nil.
func sendNotify(socket string, msg []byte) error {
	return errors.New("herd: sd_notify is supported only on Linux")
}

func monotonicUsec() uint64 { return 0 }
