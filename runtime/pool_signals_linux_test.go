//go:build linux

package runtime_test

import (
	"os"
	"syscall"
	"testing"

	"github.com/herd-go/herd/runtime"
)

// TestPoolRunSIGHUPDuringReload: under Run, a SIGHUP that arrives while a
// reload is under way is not lost: one more reload follows the first (a
// binary installed meanwhile is the one left serving). The first reload is
// held until the test makes its replacement ready, so the second SIGHUP
// always arrives during it.
func TestPoolRunSIGHUPDuringReload(t *testing.T) {
	startSignalLoop()
	c, pl := supPool(t, "sup-gated", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyExplicit),
		runtime.WithWatchdog(0))
	done := runPool(pl)
	c.rec.waitFor("online 1")
	sendEcho(t, mustWorker(t, c, 1), "ready now")
	c.rec.waitFor("ready 1 ")

	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	c.rec.waitFor("reload-started 1")
	c.rec.waitFor("online 2")
	// The first reload waits for worker 2 to be ready: this SIGHUP comes
	// during it.
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	sendEcho(t, mustWorker(t, c, 2), "ready now")
	c.rec.waitFor("reload-finished 2")

	c.rec.waitFor("reload-started 2")
	c.rec.waitFor("online 3")
	sendEcho(t, mustWorker(t, c, 3), "ready now")
	c.rec.waitFor("reload-finished 3")

	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	if err := runResult(t, done); err != nil {
		t.Errorf("Run: %v", err)
	}
}
