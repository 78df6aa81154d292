//go:build linux || darwin

package link

import (
	"context"
	"errors"
	"os"
	"testing"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// creditPair is a link a with credit on, sending to b, whose handler
// collects. waits gets a token each time a sender of a starts waiting.
func creditPair(t *testing.T) (a, b *Link, c *collector, waits chan struct{}) {
	t.Helper()
	c = newCollector(false)
	waits = make(chan struct{}, 64)
	fa, fb, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	a = startLink(t, fa, discard, WithCredit(func() { waits <- struct{}{} }))
	b = startLink(t, fb, c.handle)
	return a, b, c, waits
}

// sendAsync runs a credited Send on its own goroutine.
func sendAsync(ctx context.Context, a *Link, proc string, payload []byte) chan error {
	ch := make(chan error, 1)
	go func() {
		ch <- a.Send(ctx, &wire.Header{Procedure: proc}, &herdv1.ErrorEvent{Message: string(payload)}, nil)
	}()
	return ch
}

func TestCreditGatesRequestsNotControlFrames(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	a, _, c, waits := creditPair(t)

	// No grant yet: a request waits, and nothing of it is queued.
	cctx, cancel := context.WithCancel(ctx)
	first := sendAsync(cctx, a, "/t/first", nil)
	<-waits
	cancel()
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("request without credit: %v, want context.Canceled", err)
	}
	// Control frames always go: a reply, a cancel, a system frame.
	for _, h := range []wire.Header{{ReplyTo: 7}, {ReplyTo: 7, Flags: wire.FlagCancel}, {Procedure: "/t/sys", Flags: wire.FlagSystem}} {
		if err := a.Send(ctx, &h, nil, nil); err != nil {
			t.Fatalf("control frame %+v: %v", h, err)
		}
	}
	got := c.wait(t, 3)

	// A window of two frames: two go, the third waits for the next grant.
	a.Grant(2, 1<<20)
	for i := range 2 {
		if err := a.Send(ctx, &wire.Header{Procedure: "/t/req"}, nil, nil); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	third := sendAsync(ctx, a, "/t/third", nil)
	<-waits
	if err := a.Send(ctx, &wire.Header{ReplyTo: 8}, nil, nil); err != nil {
		t.Fatal(err)
	}
	got = c.wait(t, 6)
	if p := got[5].hdr.ReplyTo; p != 8 {
		t.Fatalf("frame 6 is %+v, want the reply sent while the third request waited", got[5].hdr)
	}
	a.Grant(1, 0)
	if err := <-third; err != nil {
		t.Fatal(err)
	}
	got = c.wait(t, 7)
	if p := got[6].hdr.Procedure; p != "/t/third" {
		t.Fatalf("frame 7 is %q, want /t/third", p)
	}
	for _, r := range got {
		if r.hdr.Procedure == "/t/first" {
			t.Fatal("the cancelled request was sent")
		}
	}
}

func TestCreditOversizeFrameGoesWhenNothingOutstanding(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	a, _, c, waits := creditPair(t)
	a.Grant(10, 100) // a window of 100 bytes
	big := make([]byte, 1000)
	if err := a.Send(ctx, &wire.Header{Procedure: "/t/big"}, &herdv1.ErrorEvent{Message: string(big)}, nil); err != nil {
		t.Fatal(err)
	}
	c.wait(t, 1)
	// The next one waits until the big one is given back: the window is
	// overdrawn.
	next := sendAsync(ctx, a, "/t/small", nil)
	<-waits
	size := int64(len(frameBytes(t, wire.Header{Procedure: "/t/big"}, &herdv1.ErrorEvent{Message: string(big)})))
	a.Grant(1, size-100) // no bytes available yet
	a.mu.Lock()
	waiting := len(a.credit.q)
	a.mu.Unlock()
	if waiting != 1 {
		t.Fatalf("%d senders waiting after a grant that covers none, want 1", waiting)
	}
	a.Grant(0, 100)
	if err := <-next; err != nil {
		t.Fatal(err)
	}
	c.wait(t, 2)
}

// The peer is told once per sender that comes to the head of the line, not
// in answer to grants.
func TestCreditAsksOncePerWaiter(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	a, _, c, waits := creditPair(t)
	a.Grant(1, 1<<20)
	if err := a.Send(ctx, &wire.Header{Procedure: "/t/0"}, nil, nil); err != nil {
		t.Fatal(err)
	}
	first := sendAsync(ctx, a, "/t/1", nil)
	<-waits
	second := sendAsync(ctx, a, "/t/2", nil)
	poll(t, "two waiting senders", func() bool { a.mu.Lock(); defer a.mu.Unlock(); return len(a.credit.q) == 2 })
	for range 10 {
		a.Grant(0, 1) // bytes only: serves nobody
	}
	a.Grant(1, 0) // serves the first; the second comes to the head
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	<-waits
	a.Grant(1, 0)
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	c.wait(t, 3)
	if n := len(waits); n != 0 {
		t.Fatalf("%d more calls of onWait, want none", n)
	}
}

func TestCreditWaitersFailWhenLinkEnds(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	for _, end := range []string{"close", "shutdown"} {
		t.Run(end, func(t *testing.T) {
			a, _, _, waits := creditPair(t)
			ch := sendAsync(ctx, a, "/t/x", nil)
			<-waits
			if end == "close" {
				a.Close()
			} else if err := a.Shutdown(ctx); err != nil {
				t.Fatal(err)
			}
			if err := <-ch; !errors.Is(err, ErrLinkClosed) {
				t.Fatalf("waiting sender got %v, want ErrLinkClosed", err)
			}
		})
	}
}

func TestCreditAsyncSendRefusesCreditedFrames(t *testing.T) {
	checkLeaks(t)
	a, _, _, _ := creditPair(t)
	a.Grant(10, 1<<20)
	if err := a.SendOwned(&wire.Header{Procedure: "/t/x"}, nil, nil); err == nil {
		t.Fatal("SendOwned of a credited frame succeeded")
	}
	if err := a.SendOwned(&wire.Header{Procedure: "/t/x", Flags: wire.FlagSystem}, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// The receiving side counts frames by wire.Envelope.Len; it must equal what
// the sender charged.
func TestEnvelopeLenIsFrameSize(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	var lens []int
	done := make(chan struct{})
	fa, fb, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	a := startLink(t, fa, discard)
	startLink(t, fb, func(env *wire.Envelope, _ []*os.File) error {
		lens = append(lens, env.Len)
		if len(lens) == 2 {
			close(done)
		}
		return nil
	})
	hs := []wire.Header{{Procedure: "/a"}, {Procedure: "/bb", CallID: 300}}
	for _, h := range hs {
		if err := a.Send(ctx, &h, &herdv1.ErrorEvent{Message: "12345"}, nil); err != nil {
			t.Fatal(err)
		}
	}
	<-done
	for i, h := range hs {
		if want := len(frameBytes(t, h, &herdv1.ErrorEvent{Message: "12345"})); lens[i] != want {
			t.Errorf("frame %d: Len %d, want %d", i, lens[i], want)
		}
	}
}
