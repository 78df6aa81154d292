//go:build unix

package runtime_test

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
)

// startSignalLoop starts os/signal's watcher goroutine, which lives as
// long as the process once a first Notify has started it, before a test's
// leak-check baseline.
func startSignalLoop() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGWINCH)
	signal.Stop(ch)
}

// runPool runs pl in the background; the channel gets Run's result.
func runPool(pl *runtime.Pool) chan error {
	done := make(chan error, 1)
	go func() { done <- pl.Run(context.Background()) }()
	return done
}

func runResult(t *testing.T, done chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitLimit):
		t.Fatal("Run did not return")
		return nil
	}
}

// TestPoolRunSignals: under Run, SIGHUP to the primary reloads every worker
// and SIGTERM stops them gracefully; Run returns nil since every worker
// exited after its disconnect.
func TestPoolRunSignals(t *testing.T) {
	startSignalLoop()
	c, pl := newPool(t, "idle", runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyOnOnline))
	done := runPool(pl)
	c.rec.waitFor("ready 1 ")
	c.rec.waitFor("ready 2 ")
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	c.rec.waitFor("reload-finished 3,4")
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	if err := runResult(t, done); err != nil {
		t.Errorf("Run: %v", err)
	}
	c.rec.waitFor("exit 3 code=0 signal= after=true cause=EXIT_CAUSE_CLEAN")
	c.rec.waitFor("exit 4 code=0 signal= after=true cause=EXIT_CAUSE_CLEAN")
}

// TestPoolRunSecondSignalKills: a second SIGTERM during the graceful stop
// skips to SIGKILL, and Run says which worker was killed.
func TestPoolRunSecondSignalKills(t *testing.T) {
	startSignalLoop()
	clk := newFakeClock(0)
	c, pl := newPool(t, "stuckdrain", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithClock(clk), runtime.WithWatchdog(0), runtime.WithStopTimeouts(time.Minute, time.Minute))
	done := runPool(pl)
	c.rec.waitFor("ready 1 ")
	clk.waitTimers(t, 1) // the ready timeout's
	syscall.Kill(os.Getpid(), syscall.SIGINT)
	clk.waitTimers(t, 2) // the stop's graceful timeout: the stop is under way
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	err := runResult(t, done)
	var fe *runtime.ForcedError
	if !errors.As(err, &fe) || fe.Worker != 1 || fe.Signal != "SIGKILL" {
		t.Errorf("Run: %v, want worker 1 killed with SIGKILL", err)
	}
	c.rec.waitFor("exit 1 code=-1 signal=SIGKILL after=true cause=EXIT_CAUSE_KILLED")
}
