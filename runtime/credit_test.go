//go:build linux || darwin

package runtime

import (
	"errors"
	"testing"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// A peer is granted the endpoint's window first: the mailbox capacity in
// messages and WithMailboxBytes in bytes.
func TestCreditWindowIsFirstFrame(t *testing.T) {
	base := herdtest.Take()
	p := newRawPeerWith(t, func(c *endpointConfig) { c.mailboxBytes = 12345 })
	p.echo(1, "x") // the endpoint has written its first frames
	p.mu.Lock()
	credits := p.credits
	p.mu.Unlock()
	if len(credits) == 0 || credits[0].GetFrames() != 4 || credits[0].GetBytes() != 12345 || credits[0].GetWaiting() {
		t.Fatalf("first credit %v, want 4 frames and 12345 bytes", credits)
	}
	close(p.block)
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// A peer that sends user messages beyond its credit (here: more messages
// than the window while the handler is busy) loses its link with a
// protocol error; nothing beyond the window was queued.
func TestCreditExceededEndsLink(t *testing.T) {
	for _, tt := range []struct {
		name  string
		bytes int   // the endpoint's byte budget
		sizes []int // payload sizes of the Block messages written
		ok    int   // how many of them are within credit
	}{
		{"messages", 1 << 20, []int{1, 1, 1, 1, 1}, 4},
		{"bytes", 1000, []int{600, 600}, 1},
		{"oversize first then more", 1000, []int{5000, 1}, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			base := herdtest.Take()
			p := newRawPeerWith(t, func(c *endpointConfig) { c.mailboxBytes = tt.bytes })
			var b []byte
			for _, n := range tt.sizes {
				b = append(b, p.frame(wire.Header{Procedure: procBlock}, marshal(t, &testv1.EchoRequest{Message: string(make([]byte, n))}))...)
			}
			p.write(b, nil)
			for range p.frames {
			}
			<-p.ep.link.Done()
			var pe *ProtocolError
			if err := p.ep.link.Err(); !errors.As(err, &pe) || !errors.Is(err, errCreditExceeded) {
				t.Errorf("link ended with %v, want a protocol error for exceeded credit", err)
			}
			if got := p.ep.credit.recvFrames.Load(); got != int64(tt.ok) {
				t.Errorf("%d messages admitted, want %d", got, tt.ok)
			}
			close(p.block)
			p.close()
			herdtest.Check(t, base, dispatchWait)
		})
	}
}

// A single message larger than the byte budget is delivered when nothing
// else is held, and its credit comes back once it is handled.
func TestCreditOversizeMessageDelivered(t *testing.T) {
	base := herdtest.Take()
	p := newRawPeerWith(t, func(c *endpointConfig) { c.mailboxBytes = 1000 })
	close(p.block)
	big := string(make([]byte, 5000))
	p.write(p.frame(wire.Header{Procedure: procBlock, CallID: 9}, marshal(t, &testv1.EchoRequest{Message: big})), nil)
	if d := p.next(); d.replyTo != 9 || d.hasError {
		t.Fatalf("reply %+v", d)
	}
	// Given back (a quarter of the window in bytes is due at once): the
	// same again is within credit.
	p.write(p.frame(wire.Header{Procedure: procBlock, CallID: 10}, marshal(t, &testv1.EchoRequest{Message: big})), nil)
	if d := p.next(); d.replyTo != 10 || d.hasError {
		t.Fatalf("reply %+v", d)
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// Control requests are not credited but bounded in size; one flagged as
// control for a user procedure is refused, the link stays.
func TestControlRequestBounds(t *testing.T) {
	base := herdtest.Take()
	p := newRawPeerWith(t, func(c *endpointConfig) { c.maxFrame = 1 << 20 })
	p.write(p.frame(wire.Header{Procedure: procEcho, CallID: 5, Flags: wire.FlagSystem}, marshal(t, &testv1.EchoRequest{Message: "x"})), nil)
	if d := p.next(); d.replyTo != 5 || d.code != CodeInvalidArgument {
		t.Fatalf("reply %+v, want invalid_argument", d)
	}
	p.echo(6, "still up")
	big, err := wire.AppendFrameBytes(nil, &wire.Header{Procedure: controlDisconnectProcedure, Flags: wire.FlagSystem}, make([]byte, maxSystemFrame), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	p.write(big, nil)
	for range p.frames {
	}
	<-p.ep.link.Done()
	if err := p.ep.link.Err(); !errors.Is(err, errCreditExceeded) {
		t.Errorf("link ended with %v, want a protocol error", err)
	}
	close(p.block)
	p.close()
	herdtest.Check(t, base, dispatchWait)
}
