//go:build linux || darwin

package link

import (
	"context"
	"errors"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// TestPromoteReadsOnWhileHandlerRuns: a handler that released its frame and
// then blocks does not stop the link: after Promote a new reader goroutine
// dispatches the frames behind it, in order, while it is still blocked; and
// once it returns the link goes on as before.
func TestPromoteReadsOnWhileHandlerRuns(t *testing.T) {
	checkLeaks(t)
	var bp atomic.Pointer[Link] // set once the link exists; the socket carries no happens-before
	hold := make(chan struct{})
	released := make(chan struct{})
	seen := make(chan uint64, 16)
	h := func(env *wire.Envelope, files []*os.File) error {
		id := env.CallID
		if id == 1 {
			bp.Load().Release()
			bp.Load().Release() // a second call does nothing
			close(released)
			<-hold
		}
		seen <- id
		return nil
	}
	a, bl := linkPair(t, discard, h)
	bp.Store(bl)
	b := bl
	ctx := context.Background()
	if b.Promote() {
		t.Fatal("Promote with no released handler reported true")
	}
	for id := uint64(1); id <= 4; id++ {
		hdr := wire.Header{Procedure: "/t.T/P", CallID: id}
		if err := a.Send(ctx, &hdr, benchPayload, nil); err != nil {
			t.Fatal(err)
		}
	}
	<-released
	if !b.Promote() {
		t.Fatal("Promote of a released handler reported false")
	}
	if b.Promote() {
		t.Fatal("a second Promote reported true")
	}
	for want := uint64(2); want <= 4; want++ {
		select {
		case got := <-seen:
			if got != want {
				t.Fatalf("frame %d dispatched, want %d", got, want)
			}
		case <-time.After(testTimeout):
			t.Fatalf("frame %d not dispatched while frame 1's handler is held", want)
		}
	}
	close(hold)
	if got := <-seen; got != 1 {
		t.Fatalf("frame %d, want the held 1", got)
	}
	hdr := wire.Header{Procedure: "/t.T/P", CallID: 5}
	if err := a.Send(ctx, &hdr, benchPayload, nil); err != nil {
		t.Fatal(err)
	}
	if got := <-seen; got != 5 {
		t.Fatalf("frame %d after the promotion, want 5", got)
	}
	if got := b.Stats().FramesReceived; got != 5 {
		t.Errorf("FramesReceived = %d, want 5", got)
	}
}

// TestReleaseWithoutPromote: a handler that releases its frame but is not
// promoted returns to the same reader, which goes on with the next frame.
func TestReleaseWithoutPromote(t *testing.T) {
	checkLeaks(t)
	var bp atomic.Pointer[Link] // set once the link exists; the socket carries no happens-before
	seen := make(chan uint64, 16)
	h := func(env *wire.Envelope, files []*os.File) error {
		id := env.CallID
		bp.Load().Release()
		seen <- id
		return nil
	}
	a, bl := linkPair(t, discard, h)
	bp.Store(bl)
	ctx := context.Background()
	for id := uint64(1); id <= 50; id++ {
		hdr := wire.Header{Procedure: "/t.T/P", CallID: id}
		if err := a.Send(ctx, &hdr, benchPayload, nil); err != nil {
			t.Fatal(err)
		}
	}
	for want := uint64(1); want <= 50; want++ {
		if got := <-seen; got != want {
			t.Fatalf("frame %d, want %d", got, want)
		}
	}
}

// TestPromotedHandlerErrorEndsLink: a promoted handler's error still ends
// the link, with the error.
func TestPromotedHandlerErrorEndsLink(t *testing.T) {
	checkLeaks(t)
	var bp atomic.Pointer[Link] // set once the link exists; the socket carries no happens-before
	boom := errors.New("boom")
	hold := make(chan struct{})
	released := make(chan struct{})
	h := func(env *wire.Envelope, files []*os.File) error {
		if env.CallID == 1 {
			bp.Load().Release()
			close(released)
			<-hold
			return boom
		}
		return nil
	}
	a, bl := linkPair(t, discard, h)
	bp.Store(bl)
	b := bl
	hdr := wire.Header{Procedure: "/t.T/P", CallID: 1}
	if err := a.Send(context.Background(), &hdr, benchPayload, nil); err != nil {
		t.Fatal(err)
	}
	<-released
	if !b.Promote() {
		t.Fatal("Promote reported false")
	}
	close(hold)
	waitDone(t, b)
	if err := b.Err(); !errors.Is(err, boom) {
		t.Fatalf("Err() = %v, want %v", err, boom)
	}
}
