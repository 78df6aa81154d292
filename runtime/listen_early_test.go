//go:build unix

package runtime_test

import (
	"context"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// slowStartWorkerMain is the listen tests' worker (listenWorkerMain) whose
// Self.Start pauses between starting its link and its handshake, so that a
// call the primary makes right after Fork is read in that window.
func slowStartWorkerMain() int {
	runtime.SetLinkStartedHook(func() { time.Sleep(100 * time.Millisecond) })
	return listenWorkerMain()
}

// TestListenInHandlerRightAfterFork: a call made right after Fork, whose
// handler listens, is handled once the worker is started, never in the
// window where its link reads but Listen would fail with ErrNotStarted.
// The worker widens that window (slowStartWorkerMain), which the call lands
// in without the fix.
func TestListenInHandlerRightAfterFork(t *testing.T) {
	c := newCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	for range 2 {
		w := c.fork("slow-start")
		res, err := testv1herd.NewTestServiceClient(w).Listen(ctx, &testv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0"})
		if err != nil {
			t.Fatalf("worker %d: Listen call: %v", w.ID(), err)
		}
		if res.GetError() != "" || res.GetAddress() == "" {
			t.Fatalf("worker %d: Listen in a handler right after Fork: %s %s", w.ID(), res.GetErrorName(), res.GetError())
		}
	}
}
