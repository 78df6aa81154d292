//go:build unix

package runtime_test

import (
	"context"
	"fmt"
	"testing"
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
