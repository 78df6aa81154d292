//go:build linux || darwin

package link

import (
	"sync/atomic"
	"testing"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestSendNowIdle: on an idle link SendNow writes the frame on the
// caller's goroutine: the write is counted and the frame sent before it
// returns, and the writer goroutine never takes a batch. A credited frame
// is refused.
func TestSendNowIdle(t *testing.T) {
	checkLeaks(t)
	c := newCollector(false)
	var batches atomic.Int32
	count := optionFunc(func(c *config) { c.beforeBatch = func() { batches.Add(1) } })
	a, _ := linkPair(t, discard, c.handle, count, WithCredit(nil))
	for i := range uint64(3) {
		before := a.Stats()
		h := wire.Header{Procedure: "/t.T/Credit", CallID: i, Flags: wire.FlagSystem}
		if err := a.SendNow(&h, &herdv1.CreditRequest{Frames: uint32(i + 1)}); err != nil {
			t.Fatal(err)
		}
		if got := a.Stats(); got.Writes != before.Writes+1 || got.FramesSent != before.FramesSent+1 {
			t.Errorf("frame %d: %d writes, %d frames sent by SendNow; want 1, 1 (written by the caller)", i, got.Writes-before.Writes, got.FramesSent-before.FramesSent)
		}
		c.wait(t, int(i)+1)
	}
	if n := batches.Load(); n != 0 {
		t.Errorf("the writer goroutine took %d batches; want 0", n)
	}
	if err := a.SendNow(&wire.Header{Procedure: "/t.T/Req"}, nil); err == nil {
		t.Error("credited frame accepted by SendNow")
	}
	for i, f := range c.wait(t, 3) {
		if f.hdr.CallID != uint64(i) || f.hdr.Procedure != "/t.T/Credit" {
			t.Errorf("frame %d: %+v", i, f.hdr)
		}
	}
}

// TestSendNowBehindQueue: while the writer holds a batch, or frames are
// queued, SendNow queues its frame behind them instead of writing past
// them, and the writer sends it in order.
func TestSendNowBehindQueue(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	c := newCollector(false)
	hold, entered, release := holdWriter()
	a, _ := linkPair(t, discard, c.handle, hold)
	if err := a.SendBytes(ctx, &wire.Header{CallID: 1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	<-entered // the writer holds frame 1 and has not written it
	writes := a.Stats().Writes
	// Nothing queued, but a write under way: frame 2 must wait for it.
	if err := a.SendNow(&wire.Header{CallID: 2, Flags: wire.FlagSystem}, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.SendBytes(ctx, &wire.Header{CallID: 3}, nil, nil); err != nil {
		t.Fatal(err)
	}
	// Frames queued: frame 4 goes behind them.
	if err := a.SendNow(&wire.Header{CallID: 4, Flags: wire.FlagSystem}, nil); err != nil {
		t.Fatal(err)
	}
	if got := a.Stats().Writes; got != writes {
		t.Errorf("SendNow wrote %d times while the writer held a batch", got-writes)
	}
	close(release)
	for i, f := range c.wait(t, 4) {
		if f.hdr.CallID != uint64(i+1) {
			t.Fatalf("frame %d has CallID %d: out of order", i, f.hdr.CallID)
		}
	}
}
