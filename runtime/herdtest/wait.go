package herdtest

import (
	"testing"
	"time"
)

// DefaultTimeout bounds every wait of this package unless a shorter one is
// given (Within, or the Timeout field of a Process or Events), or the test's
// own deadline (go test -timeout) comes first. Reaching it fails the test:
// it is a bound on a wait for an event, not a pacing device.
const DefaultTimeout = 60 * time.Second

// deadlineMargin is kept before a test's own deadline, so that a wait fails
// the test with what it was waiting for rather than letting go test panic.
const deadlineMargin = 5 * time.Second

// WaitOption configures one wait.
type WaitOption interface{ applyWait(*waitConfig) }

type waitConfig struct{ timeout time.Duration }

type within time.Duration

func (d within) applyWait(c *waitConfig) { c.timeout = time.Duration(d) }

// Within bounds a wait by d instead of DefaultTimeout.
func Within(d time.Duration) WaitOption { return within(d) }

// limit returns how long a wait may last: timeout (DefaultTimeout when
// zero), and no later than shortly before t's deadline.
func limit(t testing.TB, timeout time.Duration) time.Duration {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := dt.Deadline(); ok {
			if left := time.Until(d) - deadlineMargin; left < timeout {
				timeout = max(left, time.Second)
			}
		}
	}
	return timeout
}

func waitLimit(t testing.TB, opts []WaitOption) time.Duration {
	var c waitConfig
	for _, o := range opts {
		o.applyWait(&c)
	}
	return limit(t, c.timeout)
}

// Receive waits for a value from ch and returns it. It fails the test (with
// what, the thing waited for) when the wait reaches its bound or ch is
// closed.
func Receive[T any](t testing.TB, ch <-chan T, what string, opts ...WaitOption) T {
	t.Helper()
	d := waitLimit(t, opts)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatalf("herdtest: waiting for %s: channel closed", what)
		}
		return v
	case <-timer.C:
		t.Fatalf("herdtest: waiting for %s: nothing after %v", what, d)
	}
	panic("unreachable")
}

// WaitUntil waits until cond reports true, for a condition no event
// announces (a process gone from /proc, a file written by another
// process). It looks at once, then again at growing intervals (1 ms up to
// 50 ms); it fails the test, naming what, when the wait reaches its bound.
// When something does announce the change (a channel, an event, an output
// line), wait for that instead: Receive, Events.WaitFor, Process.WaitLine.
func WaitUntil(t testing.TB, what string, cond func() bool, opts ...WaitOption) {
	t.Helper()
	d := waitLimit(t, opts)
	deadline := time.Now().Add(d)
	backoff := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("herdtest: waiting until %s: still false after %v", what, d)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 50*time.Millisecond)
	}
}
