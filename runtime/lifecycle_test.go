//go:build unix

package runtime_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
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
	stuck := runtime.NewUnaryHandler(testv1herd.TestServiceReportProcedure, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
		calls++
		if calls == 1 {
			close(started)
			<-ctx.Done()
			close(ctxEnded)
		}
		<-release // ignores its context
		return &testv1.ReportResponse{}, nil
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

// missingProcedure is served by neither side: it is not in TestService.
const missingProcedure = "/herd.test.v1.TestService/Missing"

// sendmissingWorker (role "sendmissing") sends a fire-and-forget message to
// a procedure the primary does not serve when asked to (its Ask handler),
// and reports its own error events to the primary as "error <code>
// <procedure> <message>".
func sendmissingWorker() int {
	ctx := context.Background()
	var self *runtime.Self
	report := func(ev *herdv1.ErrorEvent) {
		msg := fmt.Sprintf("error %s %s %s", runtime.Code(ev.GetCode()), ev.GetProcedure(), ev.GetMessage())
		_ = self.Send(ctx, testv1herd.TestServiceReportProcedure, &testv1.ReportRequest{Message: msg})
	}
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second), runtime.WithErrorHandler(report))
	if err != nil {
		return 10
	}
	err = self.Register(runtime.NewUnaryHandler(testv1herd.TestServiceAskProcedure, func(ctx context.Context, req *testv1.AskRequest) (*testv1.AskResponse, error) {
		return &testv1.AskResponse{}, self.Send(ctx, missingProcedure, &testv1.ReportRequest{Message: "lost"})
	}))
	if err != nil {
		return 11
	}
	if err := self.Start(ctx); err != nil {
		return 12
	}
	<-self.Done()
	select {}
}

// TestRejectedSendReachesSender: a fire-and-forget message to a procedure
// the other side does not serve is an error event on the sending side too,
// with code unimplemented and the procedure, in both directions.
func TestRejectedSendReachesSender(t *testing.T) {
	c := newCluster(t)
	w := c.fork("sendmissing")
	c.rec.waitFor(fmt.Sprintf("online %d", w.ID()))
	ctx := context.Background()

	// Primary to worker: the primary's ErrorEvent for that worker. (The
	// worker reports its own receiving-side event as a report.)
	if err := w.Send(ctx, missingProcedure, &testv1.ReportRequest{Message: "lost"}); err != nil {
		t.Fatal(err)
	}
	c.rec.waitFor(fmt.Sprintf("report %d error unimplemented %s", w.ID(), missingProcedure))
	got := c.rec.waitFor(fmt.Sprintf("error %d unimplemented ", w.ID()))
	if !strings.Contains(got, missingProcedure) || !strings.Contains(got, "rejected") {
		t.Errorf("primary's error event %q, want the worker's rejection of %s", got, missingProcedure)
	}

	// Worker to primary: the worker's error handler. (The primary records
	// its own receiving-side event as a second error event.)
	if _, err := testv1herd.NewTestServiceClient(w).Ask(ctx, &testv1.AskRequest{}); err != nil {
		t.Fatal(err)
	}
	lines := waitLines(t, c.rec, w.ID(), 4, func(l string) bool {
		return strings.HasPrefix(l, "report error") || strings.HasPrefix(l, "error")
	})
	// Each side's own event and the other side's notice-driven one (a
	// notice travels in the control lane, so it may overtake a report).
	want := []string{
		"error unimplemented unimplemented: procedure " + missingProcedure + " is not registered",
		"error unimplemented unimplemented: worker 1 rejected a fire-and-forget message to " + missingProcedure + ": does not serve it",
		"report error unimplemented " + missingProcedure + " unimplemented: procedure " + missingProcedure + " is not registered",
		"report error unimplemented " + missingProcedure + " unimplemented: the primary rejected a fire-and-forget message to " + missingProcedure + ": does not serve it",
	}
	slices.Sort(lines)
	if !slices.Equal(lines, want) {
		t.Errorf("error lines\n%q\nwant\n%q", lines, want)
	}
}

// waitLines waits until n of the recorded lines about worker id match and
// returns them.
func waitLines(t *testing.T, rec *recorder, id uint64, n int, match func(string) bool) []string {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		var lines []string
		for _, l := range rec.of(id) {
			if match(l) {
				lines = append(lines, l)
			}
		}
		if len(lines) >= n {
			return lines
		}
		select {
		case <-rec.notify:
		case <-deadline.C:
			t.Fatalf("%d matching lines, want %d: %q", len(lines), n, rec.all())
		}
	}
}
