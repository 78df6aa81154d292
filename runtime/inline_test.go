//go:build linux || darwin

package runtime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// A user handler that runs on the link's reader (its lane was idle) and
// blocks hands the reader role on: a control request written behind it is
// answered while it still blocks, and the user message behind it waits for
// its turn.
func TestInlineHandlerDoesNotHoldUpControl(t *testing.T) {
	base := herdtest.Take()
	p := newRawPeer(t)
	req := marshal(t, &testv1.EchoRequest{Message: "x"})
	var b []byte
	b = append(b, p.frame(wire.Header{Procedure: procBlock, CallID: 1}, req)...)
	b = append(b, p.frame(wire.Header{Procedure: procEcho, CallID: 2}, req)...)
	// Flagged as control: refused on the control lane, answered at once.
	b = append(b, p.frame(wire.Header{Procedure: procEcho, CallID: 3, Flags: wire.FlagSystem}, req)...)
	if err := p.write(b, nil); err != nil {
		t.Fatal(err)
	}
	if d := p.next(); d.replyTo != 3 || !d.hasError || d.code != CodeInvalidArgument {
		t.Fatalf("while the handler blocks, got %+v; want the refusal of call 3", d)
	}
	close(p.block)
	if d := p.next(); d.replyTo != 1 || d.hasError {
		t.Fatalf("got %+v, want the reply to call 1", d)
	}
	d := p.next()
	res := &testv1.EchoResponse{}
	if d.replyTo != 2 || d.hasError || proto.Unmarshal(d.payload, res) != nil || res.GetMessage() != "echo:x" {
		t.Fatalf("got %+v, want the echo of call 2", d)
	}
	p.echo(4, "after") // the reader goes on after the promotion
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// TestInlineBatchBlockedHandsReaderOn: the reports of one read run on the
// reader as one batch (inline.go); a handler in its middle that blocks
// hands the reader role on: a control request of a later read is answered
// while it blocks, and the rest of the batch runs once it returns, before
// the reports read meanwhile. It fails if a batch held the reader role
// while it ran (no answer), or if the rest of the batch were lost or
// overtaken by later reports.
func TestInlineBatchBlockedHandsReaderOn(t *testing.T) {
	base := herdtest.Take()
	log := newReportLog()
	p := newRawPeerConfig(t, func(c *endpointConfig) { c.mailboxCap = 64 }, log.handler())
	var b []byte
	b = append(b, p.reports(1, 10)...)
	b = append(b, p.frame(wire.Header{Procedure: procBlock}, marshal(t, &testv1.EchoRequest{}))...)
	b = append(b, p.reports(11, 10)...)
	if err := p.write(b, nil); err != nil {
		t.Fatal(err)
	}
	log.wait(t, 10)
	b = p.reports(21, 10)
	b = append(b, p.frame(wire.Header{Procedure: procEcho, CallID: 99, Flags: wire.FlagSystem}, marshal(t, &testv1.EchoRequest{}))...)
	if err := p.write(b, nil); err != nil {
		t.Fatal(err)
	}
	if d := p.next(); d.replyTo != 99 || !d.hasError || d.code != CodeInvalidArgument {
		t.Fatalf("while the batch's handler blocks, got %+v; want the refusal of call 99", d)
	}
	if n := log.len(); n != 10 {
		t.Fatalf("%d reports handled while report 10's successor blocks, want 10", n)
	}
	close(p.block)
	log.wait(t, 30)
	log.check(t, 30)
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// TestInlineBatchLaneClosed: a batch whose lane is closed by one of its
// handlers runs no handler after it; the rest is released as a post to a
// closed lane would be, its credit given back and each reported. It fails
// if a handler ran on the closed lane, or credit was lost.
func TestInlineBatchLaneClosed(t *testing.T) {
	base := herdtest.Take()
	var mu sync.Mutex
	var seqs []uint64
	var epp atomic.Pointer[endpoint]
	h := NewUnaryHandler(procReport, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
		mu.Lock()
		seqs = append(seqs, req.GetSeq())
		mu.Unlock()
		if req.GetSeq() == 3 {
			epp.Load().box.Close()
		}
		return nil, nil
	})
	p := newRawPeerConfig(t, func(c *endpointConfig) { c.mailboxCap = 64 }, h)
	epp.Store(p.ep)
	if err := p.write(p.reports(1, 10), nil); err != nil {
		t.Fatal(err)
	}
	for i := range 7 {
		if ev := p.event(i); ev.code != CodeResourceExhausted || ev.procedure != procReport {
			t.Fatalf("error event %d: %+v, want the closed lane's", i, ev)
		}
	}
	deadline := time.Now().Add(dispatchWait)
	for p.ep.credit.relFrames.Load() != 10 {
		if time.Now().After(deadline) {
			t.Fatalf("credit of %d frames given back, want 10", p.ep.credit.relFrames.Load())
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	if len(seqs) != 3 || seqs[0] != 1 || seqs[2] != 3 {
		t.Errorf("handled %v, want [1 2 3]", seqs)
	}
	mu.Unlock()
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}
