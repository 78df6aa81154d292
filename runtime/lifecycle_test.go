//go:build unix

package runtime_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
)

// TestDisconnectAllLeavesNoWorker: once Primary.Disconnect returns, every
// worker has exited, so Workers lists none of them.
func TestDisconnectAllLeavesNoWorker(t *testing.T) {
	c := newCluster(t)
	for range 2 {
		w := c.fork("idle")
		c.rec.waitFor(fmt.Sprintf("online %d", w.ID()))
	}
	if err := c.p.Disconnect(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ws := c.p.Workers(); len(ws) != 0 {
		for _, w := range ws {
			t.Errorf("worker %d still listed after Disconnect (dead=%t)", w.ID(), w.IsDead())
		}
	}
}

// TestHelloTimeoutKills: a worker that never handshakes is killed once the
// hello timeout passes, with an error event and an exit event whose cause
// says why.
func TestHelloTimeoutKills(t *testing.T) {
	c := newCluster(t, runtime.WithHelloTimeout(300*time.Millisecond))
	w := c.fork("nostart")
	ev := c.waitExit(w)
	if ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_HELLO_TIMEOUT || ev.GetSignal() != "SIGKILL" || ev.GetExitedAfterDisconnect() {
		t.Errorf("exit %v, want cause hello timeout by SIGKILL", ev)
	}
	want := []string{"fork", "error deadline_exceeded", "disconnect", "exit code=-1 signal=SIGKILL after=false cause=EXIT_CAUSE_HELLO_TIMEOUT"}
	got := c.rec.of(w.ID())
	if len(got) != len(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("event %d = %q, want %q...", i, got[i], want[i])
		}
	}
}

// TestStuckHandlerDoesNotHoldExit: a primary handler that ignores its
// context holds its worker's mailbox, but not past the worker's exit: its
// context then ends, and the exit event is delivered once the handler grace
// has passed, so Wait returns while the handler is still stuck.
func TestStuckHandlerDoesNotHoldExit(t *testing.T) {
	c := newCluster(t, runtime.WithHandlerGrace(200*time.Millisecond))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the cluster's reaping
	started, ctxEnded := make(chan struct{}), make(chan struct{})
	calls := 0
	stuck := runtime.NewUnaryHandler(reportProcedure, func(ctx context.Context, req *herdv1.ErrorEvent) (*herdv1.ErrorEvent, error) {
		calls++
		if calls == 1 {
			close(started)
			<-ctx.Done()
			close(ctxEnded)
		}
		<-release // ignores its context
		return &herdv1.ErrorEvent{}, nil
	})
	// Mode burst sends 500 fire-and-forget reports, then kills itself.
	w := c.fork("burst", runtime.WithRegister(func(r runtime.Registrar) error { return r.Register(stuck) }))
	wait := func(ch chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(waitLimit):
			t.Fatalf("%s: timed out", what)
		}
	}
	wait(started, "first report")
	ev := c.waitExit(w)
	if ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_CLEAN {
		t.Errorf("exit %v", ev)
	}
	wait(ctxEnded, "the stuck handler's context")
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := c.p.Wait(ctx); err != nil {
		t.Fatalf("Primary.Wait: %v", err)
	}
	want := []string{"fork", "online", "disconnect", "exit"}
	got := c.rec.of(w.ID())
	if len(got) != len(want) {
		t.Fatalf("events %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("event %d = %q, want %q...", i, got[i], want[i])
		}
	}
}
