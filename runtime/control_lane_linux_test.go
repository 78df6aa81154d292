//go:build linux

package runtime_test

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// The control lane (issue 9, finding 6): control requests that a handler
// serves (Listen, CloseListener, Disconnect) never wait for a user handler
// of the same link end that is running, in either direction.

// stuckPrimaryWorker sends the primary an Ask (whose handler does
// not return) and, on SIGUSR1, listens, closes its listener and disconnects
// itself, printing the outcome of each.
func stuckPrimaryWorker() int {
	self, err := runtime.NewSelf(runtime.WithExitOnDisconnect(false))
	if err != nil {
		return 10
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	ctx := context.Background()
	if err := self.Start(ctx); err != nil {
		return 12
	}
	if err := self.Send(ctx, testv1herd.TestServiceAskProcedure, &testv1.AskRequest{Message: "stuck"}); err != nil {
		return 13
	}
	<-usr1
	// Bounds, not pacing: without the control lane these calls wait for
	// the primary's stuck handler and fail here.
	cctx, cancel := context.WithTimeout(ctx, waitLimit/2)
	defer cancel()
	ln, err := runtime.Listen(cctx, "tcp", "127.0.0.1:0")
	fmt.Printf("listen: %v\n", err)
	if err == nil {
		fmt.Printf("close: %v\n", ln.Close())
	}
	fmt.Printf("disconnect: %v\n", self.Disconnect(cctx))
	return 0
}

// stuckWorker has an Ask handler that returns only once the drain hooks
// run (as a server's handler returns when the server shuts down), and says
// "stuck" when it is in it.
func stuckWorker() int {
	self, err := runtime.NewSelf()
	if err != nil {
		return 10
	}
	draining := make(chan struct{})
	self.OnDisconnect(func(ctx context.Context) error {
		close(draining)
		return nil
	})
	if err := self.Register(runtime.NewUnaryHandler(testv1herd.TestServiceAskProcedure, func(ctx context.Context, req *testv1.AskRequest) (*testv1.AskResponse, error) {
		fmt.Println("stuck")
		<-draining
		return nil, nil
	})); err != nil {
		return 11
	}
	if err := self.Start(context.Background()); err != nil {
		return 12
	}
	<-self.Done()
	select {}
}

// TestControlNotBehindStuckPrimaryHandler: while the primary's handler of
// a worker's message does not return, that worker can still listen, close
// its listener and disconnect itself, and its exit event says it exited
// after a disconnect.
func TestControlNotBehindStuckPrimaryHandler(t *testing.T) {
	// A short handler grace: the exit event is delivered without waiting
	// for the handler that never returns.
	c := newCluster(t, runtime.WithSilent(true), runtime.WithHandlerGrace(10*time.Millisecond))
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	defer close(release) // the handler returns when the test ends
	if err := c.p.Register(runtime.NewUnaryHandler(testv1herd.TestServiceAskProcedure, func(ctx context.Context, req *testv1.AskRequest) (*testv1.AskResponse, error) {
		entered <- struct{}{}
		<-release
		return nil, nil
	})); err != nil {
		t.Fatal(err)
	}
	w := c.fork("stuck-primary")
	out := lines(w.Stdout())
	w.Stderr().Close()
	select {
	case <-entered:
	case <-time.After(waitLimit):
		t.Fatal("the primary's handler never ran")
	}
	if err := syscall.Kill(w.PID(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitLine(t, out, "listen: <nil>")
	waitLine(t, out, "close: <nil>")
	waitLine(t, out, "disconnect: <nil>")
	ev := c.waitExit(w)
	if !ev.GetExitedAfterDisconnect() || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_CLEAN {
		t.Fatalf("exit %v, want a clean exit after its own disconnect", ev)
	}
	for range out {
	}
}

// TestControlNotBehindStuckWorkerHandler: the primary's graceful
// Disconnect reaches a worker whose handler is running: its drain hooks
// run (which ends that handler) and it exits by the disconnect, not killed
// at the deadline.
func TestControlNotBehindStuckWorkerHandler(t *testing.T) {
	c := newCluster(t, runtime.WithSilent(true))
	w := c.fork("stuck-worker")
	out := lines(w.Stdout())
	w.Stderr().Close()
	c.rec.waitFor(fmt.Sprintf("online %d", w.ID())) // a Disconnect before then would fail its Start
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := w.Send(ctx, testv1herd.TestServiceAskProcedure, &testv1.AskRequest{Message: "stuck"}); err != nil {
		t.Fatal(err)
	}
	waitLine(t, out, "stuck")
	if err := w.Disconnect(ctx); err != nil {
		t.Errorf("Disconnect: %v", err)
	}
	ev := c.waitExit(w)
	if !ev.GetExitedAfterDisconnect() || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_CLEAN {
		t.Fatalf("exit %v, want a clean exit by the disconnect (not killed at its deadline)", ev)
	}
	for range out {
	}
}
