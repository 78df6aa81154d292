//go:build linux

package herdtest

import (
	"errors"
	"time"

	"golang.org/x/sys/unix"
)

// Watch holds a pidfd on pid, so that a later Wait cannot be fooled by the
// PID being reused. A process that is already gone gives a Watch that is
// done at once.
type Watch struct {
	fd int
}

// WatchPID starts watching pid.
func WatchPID(pid int) (*Watch, error) {
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return &Watch{fd: -1}, nil
	}
	if err != nil {
		return nil, err
	}
	return &Watch{fd: fd}, nil
}

// Wait waits until the process has exited (a pidfd becomes readable then),
// or timeout; it reports whether the process exited. It releases the pidfd.
func (w *Watch) Wait(timeout time.Duration) bool {
	if w.fd < 0 {
		return true
	}
	defer func() { unix.Close(w.fd); w.fd = -1 }()
	pfd := []unix.PollFd{{Fd: int32(w.fd), Events: unix.POLLIN}}
	deadline := time.Now().Add(timeout)
	for {
		n, err := unix.Poll(pfd, int(time.Until(deadline)/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n == 1
	}
}

// waitGone waits up to d for pid to end.
func waitGone(pid int, d time.Duration) bool {
	w, err := WatchPID(pid)
	if err != nil {
		return !Alive(pid)
	}
	return w.Wait(d)
}

func killPID(pid int) { unix.Kill(pid, unix.SIGKILL) }
