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

// TestReclaim: a handler that released its frame learns with Reclaim
// whether it is still the reader: yes when nobody promoted it (and then
// Promote does nothing until the next Release), no when Promote handed the
// role to a new goroutine meanwhile. A zero token reclaims nothing.
func TestReclaim(t *testing.T) {
	checkLeaks(t)
	var bp atomic.Pointer[Link]
	type result struct {
		id                uint64
		reclaimed, promo  bool
		tokenZero, second bool
	}
	results := make(chan result, 4)
	h := func(env *wire.Envelope, files []*os.File) error {
		l, id := bp.Load(), env.CallID // env is not ours after Release
		tok := l.Release()
		r := result{id: id, tokenZero: tok == 0, second: l.Release() != 0}
		if id == 2 {
			r.promo = l.Promote()
		}
		r.reclaimed = l.Reclaim(tok)
		if id == 1 {
			r.promo = l.Promote() // after a successful Reclaim: nothing to promote
		}
		results <- r
		return nil
	}
	a, bl := linkPair(t, discard, h)
	bp.Store(bl)
	ctx := context.Background()
	for id := uint64(1); id <= 3; id++ {
		hdr := wire.Header{Procedure: "/t.T/P", CallID: id}
		if err := a.Send(ctx, &hdr, benchPayload, nil); err != nil {
			t.Fatal(err)
		}
		var r result
		select {
		case r = <-results:
		case <-time.After(10 * time.Second):
			t.Fatalf("frame %d not handled", id)
		}
		if r.tokenZero || r.second {
			t.Fatalf("frame %d: Release token zero %v, second Release non-zero %v", id, r.tokenZero, r.second)
		}
		switch {
		case id == 1 && (!r.reclaimed || r.promo):
			t.Fatalf("frame 1 (not promoted): Reclaim %v, Promote after it %v; want true, false", r.reclaimed, r.promo)
		case id == 2 && (!r.promo || r.reclaimed):
			t.Fatalf("frame 2 (promoted): Promote %v, Reclaim %v; want true, false", r.promo, r.reclaimed)
		case id == 3 && !r.reclaimed:
			t.Fatal("frame 3, on the promoted reader: Reclaim false")
		}
	}
	if bl.Reclaim(0) {
		t.Fatal("Reclaim(0) returned true")
	}
}

// TestReleasedHandler: ReleasedHandler names each run of a released
// handler with its own token (the runtime's inline watchdog promotes only a
// run it saw at two firings), reports none outside a released handler, and
// PromoteReleased promotes only the run its token names: not an earlier
// run's token, not the current run's token once reclaimed.
func TestReleasedHandler(t *testing.T) {
	checkLeaks(t)
	var bp atomic.Pointer[Link]
	type result struct {
		before, during, after bool   // ReleasedHandler's report
		tok                   uint64 // during
		stalePromo, promo     bool
		reclaimed             bool
	}
	results := make(chan result, 4)
	var prev uint64 // the previous run's token (handlers run one at a time)
	h := func(env *wire.Envelope, files []*os.File) error {
		l, id := bp.Load(), env.CallID
		var r result
		_, r.before = l.ReleasedHandler()
		tok := l.Release()
		r.tok, r.during = l.ReleasedHandler()
		if prev != 0 {
			r.stalePromo = l.PromoteReleased(prev) // an earlier run's token
		}
		prev = r.tok
		if id == 2 {
			r.promo = l.PromoteReleased(r.tok)
		}
		r.reclaimed = l.Reclaim(tok)
		_, r.after = l.ReleasedHandler()
		if id == 1 && l.PromoteReleased(r.tok) {
			t.Error("PromoteReleased promoted a reclaimed run")
		}
		results <- r
		return nil
	}
	a, bl := linkPair(t, discard, h)
	bp.Store(bl)
	ctx := context.Background()
	seen := map[uint64]bool{}
	for id := uint64(1); id <= 3; id++ {
		hdr := wire.Header{Procedure: "/t.T/P", CallID: id}
		if err := a.Send(ctx, &hdr, benchPayload, nil); err != nil {
			t.Fatal(err)
		}
		var r result
		select {
		case r = <-results:
		case <-time.After(10 * time.Second):
			t.Fatalf("frame %d not handled", id)
		}
		if r.before || !r.during {
			t.Fatalf("frame %d: ReleasedHandler before Release %v, after it %v; want false, true", id, r.before, r.during)
		}
		if seen[r.tok] {
			t.Fatalf("frame %d: token %#x named an earlier run too", id, r.tok)
		}
		seen[r.tok] = true
		if r.stalePromo {
			t.Fatalf("frame %d: PromoteReleased with the previous run's token promoted", id)
		}
		switch {
		case id == 2 && (!r.promo || r.reclaimed):
			t.Fatalf("frame 2: PromoteReleased %v, Reclaim %v; want true, false", r.promo, r.reclaimed)
		case id != 2 && (!r.reclaimed || r.after):
			t.Fatalf("frame %d: Reclaim %v, ReleasedHandler after it %v; want true, false", id, r.reclaimed, r.after)
		}
	}
}
