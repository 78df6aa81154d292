//go:build !linux

package herdtest

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// Watch is a process to wait for; pidfds exist only on Linux.
type Watch struct{}

// WatchPID is not supported outside Linux.
func WatchPID(pid int) (*Watch, error) { return nil, errors.New("herdtest: pidfd needs Linux") }

// Wait reports false outside Linux.
func (w *Watch) Wait(timeout time.Duration) bool { return false }

// waitGone waits up to d for pid to end, by asking at growing intervals
// whether it can still be signalled (without pidfds, a reused PID can fool
// it).
func waitGone(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	backoff := time.Millisecond
	for {
		p, err := os.FindProcess(pid)
		if err != nil || p.Signal(syscall.Signal(0)) != nil {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}

func killPID(pid int) {
	if p, err := os.FindProcess(pid); err == nil {
		p.Kill()
	}
}
