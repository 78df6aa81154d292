//go:build unix

package runtime

import "time"

// ForgetActivation forgets the descriptors this process took over as
// systemd's (takeActivation), for tests that set LISTEN_FDS in-process:
// the take-over is once per process, and later tests must not find
// descriptor numbers of an earlier test still declared systemd's.
func ForgetActivation() {
	activation.mu.Lock()
	activation.fds, activation.names = nil, nil
	activation.mu.Unlock()
}

// SetAcceptAheadPatience sets how long an Accept waits for a place under
// WithAcceptAhead before it takes the next connection anyway, and returns
// the previous value. Tests that count what a worker's death costs make it
// long, so that the bound holds however slow the machine.
func SetAcceptAheadPatience(d time.Duration) time.Duration {
	old := acceptAheadPatience
	acceptAheadPatience = d
	return old
}

// SetTakenFlushDelay sets how long a round-robin listener waits before it
// reports the connections its server took alone (takenFlushDelay), and
// returns the previous value. Call it in a worker before it listens.
func SetTakenFlushDelay(d time.Duration) time.Duration {
	old := takenFlushDelay
	takenFlushDelay = d
	return old
}

// SetLinkStartedHook sets a function that Self.Start runs once the link
// reads frames and before the handshake (testHookLinkStarted). Call it in a
// worker before Start.
func SetLinkStartedHook(fn func()) { testHookLinkStarted = fn }
