//go:build unix

package runtime_test

import (
	"context"
	"sync"
	"testing"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
)

// TestDisconnectDuringHandshake disconnects workers right after Fork, while
// they may still be in their handshake: each must stop as after any
// disconnect (status 0, a clean exit that says exitedAfterDisconnect), not
// as a failed start.
func TestDisconnectDuringHandshake(t *testing.T) {
	c := newCluster(t)
	const n = 6
	var wg sync.WaitGroup
	var ws []*runtime.Worker
	for range n {
		w := c.fork("idle")
		ws = append(ws, w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Disconnect(context.Background()); err != nil {
				t.Errorf("disconnect worker %d: %v", w.ID(), err)
			}
		}()
	}
	wg.Wait()
	for _, w := range ws {
		ev := c.waitExit(w)
		if ev.GetCode() != 0 || ev.GetSignal() != "" || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_CLEAN || !ev.GetExitedAfterDisconnect() {
			t.Errorf("worker %d: exit %v", w.ID(), ev)
		}
	}
}
