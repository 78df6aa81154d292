package herdtest

import (
	"time"

	"github.com/herd-go/herd/runtime/internal/leakcheck"
)

// Snapshot is what a process held at one moment: open descriptors,
// goroutines (less the one herd keeps for the life of the process, the
// thread workers are forked from) and live child processes.
type Snapshot = leakcheck.Snapshot

// TB is the part of testing.TB that Check uses.
type TB = leakcheck.TB

// Take records the current counts.
func Take() Snapshot { return leakcheck.Take() }

// Check fails t when, within wait, the process does not get back to at most
// the descriptors and goroutines of base, and to no child process that base
// did not have. It looks again at growing intervals until then, and names
// what is left over (descriptors with their targets, goroutine stacks,
// child PIDs).
func Check(t TB, base Snapshot, wait time.Duration) {
	t.Helper()
	leakcheck.Check(t, base, wait)
}

// Children returns the PIDs of this process's live (not yet reaped or
// zombie) children, read from /proc. It returns nil where /proc is missing.
func Children() []int { return leakcheck.Children() }

// Alive reports whether a process with pid exists (zombies count as gone).
func Alive(pid int) bool { return leakcheck.Alive(pid) }
