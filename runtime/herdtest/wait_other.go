//go:build !linux

package herdtest

import (
	"errors"
	"time"
)

// Watch is a process to wait for; pidfds exist only on Linux.
type Watch struct{}

// WatchPID is not supported outside Linux.
func WatchPID(pid int) (*Watch, error) { return nil, errors.New("herdtest: pidfd needs Linux") }

// Wait reports false outside Linux.
func (w *Watch) Wait(timeout time.Duration) bool { return false }
