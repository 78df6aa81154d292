//go:build linux || darwin

package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestHeldLaneKeepsOrder: the reader keeps the user lane between the
// frames of one read (inline.go), but something posted to the lane
// meanwhile still goes before the frames read after it: an event posted by
// the handler of report 5 runs before report 6, and the ones after, which
// then queue behind it; every report is handled once, in order.
func TestHeldLaneKeepsOrder(t *testing.T) {
	base := herdtest.Take()
	const flood = 200
	var mu sync.Mutex
	var order []string
	var epp atomic.Pointer[endpoint]
	var handled atomic.Int64
	done := make(chan struct{})
	h := NewUnaryHandler(procReport, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
		mu.Lock()
		order = append(order, fmt.Sprint(req.GetSeq()))
		mu.Unlock()
		if req.GetSeq() == 5 {
			err := epp.Load().box.TryPost(inbound{event: func() {
				mu.Lock()
				order = append(order, "event")
				mu.Unlock()
			}})
			if err != nil {
				t.Error(err)
			}
		}
		if handled.Add(1) == flood {
			close(done)
		}
		return nil, nil
	})
	p := newRawPeerConfig(t, func(c *endpointConfig) { c.mailboxCap = flood + 8 }, h)
	epp.Store(p.ep)
	if err := p.write(p.reports(1, flood), nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(dispatchWait):
		t.Fatalf("%d of %d reports handled", handled.Load(), flood)
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	want := []string{"1", "2", "3", "4", "5", "event"}
	for i := 6; i <= flood; i++ {
		want = append(want, fmt.Sprint(i))
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(order, want) {
		t.Fatalf("handled %v,\nwant %v", order, want)
	}
	herdtest.Check(t, base, dispatchWait)
}

// TestLookupAfterOtherProcedure: the reader's handler cache trusts the
// link's KnownProcedure only for the procedure it looked up last: frames
// to an unregistered procedure between two reports are refused, both of
// them, and neither reaches the report handler.
func TestLookupAfterOtherProcedure(t *testing.T) {
	base := herdtest.Take()
	log := newReportLog()
	p := newRawPeerConfig(t, nil, log.handler())
	const nope = "/herd.test.v1.TestService/Nope"
	var b []byte
	b = append(b, p.reports(1, 1)...)
	for range 2 {
		b = append(b, p.frame(wire.Header{Procedure: nope}, marshal(t, &testv1.ReportRequest{Seq: 99, Message: "m"}))...)
	}
	b = append(b, p.reports(2, 1)...)
	if err := p.write(b, nil); err != nil {
		t.Fatal(err)
	}
	log.wait(t, 2)
	for i := range 2 {
		if ev := p.event(i); ev.code != CodeUnimplemented || ev.procedure != nope {
			t.Fatalf("error event %d: %+v; want CodeUnimplemented for %s", i, ev, nope)
		}
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	log.check(t, 2)
	herdtest.Check(t, base, dispatchWait)
}

// TestInlineCreditGivenBack: the credit of messages handled inline under
// a kept lane is held back by the reader and given back when it lets the
// lane go: a peer that writes a whole window at a time gets each window
// back, exactly (three windows, each written once the last came back).
func TestInlineCreditGivenBack(t *testing.T) {
	base := herdtest.Take()
	const window, rounds = 40, 3
	log := newReportLog()
	p := newRawPeerConfig(t, func(c *endpointConfig) { c.mailboxCap = window }, log.handler())
	granted := func() (frames uint64) {
		p.mu.Lock()
		defer p.mu.Unlock()
		for i, c := range p.credits {
			if i > 0 { // the first is the window itself
				frames += uint64(c.GetFrames())
			}
		}
		return frames
	}
	waitGranted := func(want uint64) {
		t.Helper()
		timer := time.NewTimer(dispatchWait)
		defer timer.Stop()
		for granted() < want {
			select {
			case <-p.evSig:
			case <-timer.C:
				t.Fatalf("%d frames of credit given back, want %d", granted(), want)
			}
		}
	}
	for r := range rounds {
		if err := p.write(p.reports(1+r*window, window), nil); err != nil {
			t.Fatal(err)
		}
		log.wait(t, (r+1)*window)
		waitGranted(uint64((r + 1) * window))
	}
	p.echo(1, "after") // the link is fine: nothing exceeded the credit
	if got := granted(); got != rounds*window {
		t.Fatalf("%d frames of credit given back, want %d", got, rounds*window)
	}
	if n := p.eventCount(); n != 0 {
		t.Fatalf("%d error events, first %+v", n, p.event(0))
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	log.check(t, rounds*window)
	herdtest.Check(t, base, dispatchWait)
}
