package runtime_test

import "golang.org/x/sys/unix"

type unixSiginfo = unix.Siginfo

// waitidStopped waits until child pid is stopped, leaving its state to be
// waited for.
func waitidStopped(pid int, info *unixSiginfo) error {
	return unix.Waitid(unix.P_PID, pid, info, unix.WSTOPPED|unix.WNOWAIT, nil)
}
