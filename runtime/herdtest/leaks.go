package herdtest

import (
	"testing"
	"time"
)

// LeakTimeout is how long CheckLeaks gives a test's descriptors, goroutines
// and child processes to be released after the test (they are released
// asynchronously: a reader goroutine returns after its socket closes).
const LeakTimeout = 10 * time.Second

// CheckLeaks takes a snapshot now and, when the test and its cleanups are
// done, fails the test if it did not give back what it took (Check). Call
// it first in a test, so that it runs after every other cleanup (Start's
// and RecordEvents' included: cleanups run last registered first).
func CheckLeaks(t testing.TB) {
	t.Helper()
	base := Take()
	t.Cleanup(func() { Check(t, base, LeakTimeout) })
}

// WaitGone waits for a process that is not a child of this one (a worker
// of a primary under test) to end; on Linux it holds a pidfd, so that the
// PID being reused cannot fool it. When the wait reaches its bound it kills
// the process and fails the test.
func WaitGone(t testing.TB, pid int, opts ...WaitOption) {
	t.Helper()
	d := waitLimit(t, opts)
	if !waitGone(pid, d) {
		killPID(pid)
		t.Errorf("herdtest: process %d still alive after %v", pid, d)
	}
}
