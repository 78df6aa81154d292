//go:build linux || darwin

package runtime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

const procReport = "/herd.test.v1.TestService/Report"

// reportLog is a Report handler that records what it handled.
type reportLog struct {
	mu   sync.Mutex
	reqs []*testv1.ReportRequest
	sig  chan struct{}

	// peer, once set, is asked for its error events as each report is
	// handled: afterEvent counts reports handled after one.
	peer       atomic.Pointer[rawPeer]
	afterEvent atomic.Int64
}

func newReportLog() *reportLog { return &reportLog{sig: make(chan struct{}, 1)} }

func (l *reportLog) handler() *Handler {
	return NewUnaryHandler(procReport, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
		if p := l.peer.Load(); p != nil && p.eventCount() > 0 {
			l.afterEvent.Add(1)
		}
		l.mu.Lock()
		l.reqs = append(l.reqs, req) // kept: requests are the handler's
		l.mu.Unlock()
		select {
		case l.sig <- struct{}{}:
		default:
		}
		return nil, nil
	})
}

func (l *reportLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.reqs)
}

// wait waits until n reports were handled.
func (l *reportLog) wait(t *testing.T, n int) {
	t.Helper()
	timer := time.NewTimer(dispatchWait)
	defer timer.Stop()
	for l.len() < n {
		select {
		case <-l.sig:
		case <-timer.C:
			t.Fatalf("%d of %d reports handled", l.len(), n)
		}
	}
}

// check fails unless the handled reports are 1..n in order, each its own
// message.
func (l *reportLog) check(t *testing.T, n int) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.reqs) != n {
		t.Fatalf("%d reports handled, want %d", len(l.reqs), n)
	}
	seen := make(map[*testv1.ReportRequest]bool, n)
	for i, r := range l.reqs {
		if r.GetSeq() != uint64(i+1) || r.GetMessage() != "m" || seen[r] {
			t.Fatalf("report %d: seq %d, message %q, seen before %v; want seq %d, its own message", i, r.GetSeq(), r.GetMessage(), seen[r], i+1)
		}
		seen[r] = true
	}
}

func (p *rawPeer) reports(from, n int) []byte {
	var b []byte
	for i := from; i < from+n; i++ {
		b = append(b, p.frame(wire.Header{Procedure: procReport}, marshal(p.t, &testv1.ReportRequest{Seq: uint64(i), Message: "m"}))...)
	}
	return b
}

// waitQueued waits until the user lane holds n messages.
func waitQueued(t *testing.T, ep *endpoint, n int) {
	t.Helper()
	deadline := time.Now().Add(dispatchWait)
	for ep.box.Len() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d messages queued, want %d", ep.box.Len(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestBatchKeepsOrder: while the user lane is busy (a handler blocks on the
// reader and has the reader role handed on), a flood of one-way messages
// is read and posted to the lane in batches (several: more than maxBatch);
// once the handler returns they are handled in the order they were sent.
// A reply to an unknown call read after them (an error event, posted to
// the same lane by the reader) comes after every one of them: the batch is
// posted before the reader handles anything that is not a user message.
func TestBatchKeepsOrder(t *testing.T) {
	base := herdtest.Take()
	const flood = 1000
	log := newReportLog()
	// The raw peer writes without waiting for credit: the window holds
	// the whole flood.
	p := newRawPeerConfig(t, func(c *endpointConfig) { c.mailboxCap = flood + 8 }, log.handler())
	log.peer.Store(p)
	var b []byte
	b = append(b, p.frame(wire.Header{Procedure: procBlock}, marshal(t, &testv1.EchoRequest{}))...)
	b = append(b, p.reports(1, flood)...)
	b = append(b, p.frame(wire.Header{ReplyTo: 1 << 40}, nil)...)
	if err := p.write(b, nil); err != nil {
		t.Fatal(err)
	}
	// Everything behind the blocked handler is queued: the reports went
	// to the lane, not inline.
	waitQueued(t, p.ep, flood+1)
	if n := log.len(); n != 0 {
		t.Fatalf("%d reports handled while the lane was busy", n)
	}
	close(p.block)
	ev := p.event(0)
	if ev.code != CodeInvalidArgument {
		t.Fatalf("error event %+v, want the unknown reply's", ev)
	}
	log.wait(t, flood)
	if n := log.afterEvent.Load(); n != 0 {
		t.Fatalf("%d of the reports read before the unknown reply were handled after its error event", n)
	}
	log.check(t, flood)
	// The lane is idle again: the next ones run inline, still in order.
	if err := p.write(p.reports(flood+1, 10), nil); err != nil {
		t.Fatal(err)
	}
	log.wait(t, flood+10)
	log.check(t, flood+10)
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// TestBatchBackpressureKeepsCredit: a sender that keeps to its credit is
// never refused while its messages are batched behind a busy handler, and
// each handled message gives its credit back: once the lane drains, the
// endpoint has granted back every credited frame of the flood.
func TestBatchBackpressureKeepsCredit(t *testing.T) {
	base := herdtest.Take()
	const window = 300 // the endpoint's window: the whole flood fits, with nothing to spare
	log := newReportLog()
	p := newRawPeerConfig(t, func(c *endpointConfig) { c.mailboxCap = window }, log.handler())
	var b []byte
	b = append(b, p.frame(wire.Header{Procedure: procBlock}, marshal(t, &testv1.EchoRequest{}))...)
	b = append(b, p.reports(1, window-1)...)
	if err := p.write(b, nil); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, p.ep, window-1)
	close(p.block)
	log.wait(t, window-1)
	log.check(t, window-1)
	p.echo(1, "after") // the link is fine: nothing exceeded the credit
	if n := p.eventCount(); n != 0 {
		t.Fatalf("%d error events, first %+v", n, p.event(0))
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// TestRequestsAreTheHandlers: requests come out of blocks (reqarena.go) but
// each is its own message and is never reused: a handler that keeps every
// request finds each one as it was decoded, across many blocks.
func TestRequestsAreTheHandlers(t *testing.T) {
	base := herdtest.Take()
	const n = 10 * arenaMaxMsgs
	log := newReportLog()
	p := newRawPeerConfig(t, func(c *endpointConfig) { c.mailboxCap = n + 8 }, log.handler())
	if err := p.write(p.reports(1, n), nil); err != nil {
		t.Fatal(err)
	}
	log.wait(t, n)
	log.check(t, n)
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// TestArenaBlocks: a block holds at most arenaMaxMsgs requests and
// arenaBlockBytes (a larger message gets a block of its own), and hands
// out distinct zero messages.
func TestArenaBlocks(t *testing.T) {
	a := newTypedArena[testv1.ReportRequest]().(*typedArena[testv1.ReportRequest])
	size := int(unsafe.Sizeof(testv1.ReportRequest{}))
	if a.n < 1 || a.n > arenaMaxMsgs || (a.n > 1 && a.n*size > arenaBlockBytes) {
		t.Fatalf("%d requests of %d bytes per block", a.n, size)
	}
	type big struct {
		testv1.ReportRequest
		_ [arenaBlockBytes]byte
	}
	if n := newTypedArena[big]().(*typedArena[big]).n; n != 1 {
		t.Fatalf("%d requests larger than a block per block, want 1", n)
	}
	seen := map[*testv1.ReportRequest]bool{}
	for i := range 3 * a.n {
		m := a.next().(*testv1.ReportRequest)
		if seen[m] || m.GetSeq() != 0 || m.GetMessage() != "" {
			t.Fatalf("message %d: handed out before, or not zero", i)
		}
		seen[m] = true
		m.Seq = uint64(i + 1)
	}
}
