//go:build linux || darwin

package runtime

import (
	"context"
	"errors"
	goruntime "runtime"
	"testing"
	"time"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
)

type callCtxKey struct{}

// TestCallCtxEnds: a call's context ends once, with the first cause, closes
// a Done channel asked for before or after, and keeps its parent's values.
func TestCallCtxEnds(t *testing.T) {
	parent := context.WithValue(context.Background(), callCtxKey{}, "v")
	c := newCallCtx(parent, 1, 0)
	early := c.Done()
	if c.Err() != nil {
		t.Fatalf("new call context: Err %v", c.Err())
	}
	if _, ok := c.Deadline(); ok {
		t.Error("a call without a deadline has one")
	}
	if got := c.Value(callCtxKey{}); got != "v" {
		t.Errorf("Value = %v, want the parent's", got)
	}
	c.cancel(context.Canceled)
	c.cancel(context.DeadlineExceeded) // no effect: ended already
	<-early
	<-c.Done()
	if !errors.Is(c.Err(), context.Canceled) {
		t.Errorf("Err = %v, want Canceled", c.Err())
	}
	// Never asked for before the end: a closed channel all the same.
	c2 := newCallCtx(parent, 2, 0)
	c2.cancel(context.Canceled)
	<-c2.Done()
}

// TestCallCtxCause: context.Cause of an ended call is its error, also when
// its parent is a cancelable context of the context package that has not
// ended (the primary's handler context).
func TestCallCtxCause(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	c := newCallCtx(parent, 1, 0)
	if got := context.Cause(c); got != nil {
		t.Fatalf("Cause of a live call = %v", got)
	}
	c.cancel(context.Canceled)
	if got := context.Cause(c); !errors.Is(got, context.Canceled) {
		t.Errorf("Cause of an ended call = %v, want Canceled", got)
	}
}

// TestCallCtxParentEnds: a call ends with its parent, at once if the
// parent has ended already.
func TestCallCtxParentEnds(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.Background())
	c := newCallCtx(parent, 1, 0)
	cancelParent()
	<-c.Done()
	if !errors.Is(c.Err(), context.Canceled) {
		t.Errorf("Err = %v, want Canceled", c.Err())
	}
	c2 := newCallCtx(parent, 2, 0)
	if !errors.Is(c2.Err(), context.Canceled) {
		t.Errorf("call under an ended parent: Err = %v, want Canceled at once", c2.Err())
	}
	// Ending the call first unties it from the parent (nothing left behind
	// to run when the parent ends).
	parent2, cancelParent2 := context.WithCancel(context.Background())
	defer cancelParent2()
	c3 := newCallCtx(parent2, 3, 0)
	c3.cancel(context.Canceled)
	if c3.x != nil {
		t.Error("an ended call keeps its extras")
	}
}

// TestCallCtxDeadline: the caller's deadline, or the parent's when that is
// earlier; the call ends with DeadlineExceeded when it passes, at once if
// it has passed.
func TestCallCtxDeadline(t *testing.T) {
	d := time.Now().Add(20 * time.Millisecond)
	c := newCallCtx(context.Background(), 1, d.UnixNano())
	if got, ok := c.Deadline(); !ok || !got.Equal(time.Unix(0, d.UnixNano())) {
		t.Errorf("Deadline = %v %v, want %v", got, ok, d)
	}
	<-c.Done()
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Errorf("Err = %v, want DeadlineExceeded", c.Err())
	}

	past := newCallCtx(context.Background(), 2, time.Now().Add(-time.Second).UnixNano())
	if !errors.Is(past.Err(), context.DeadlineExceeded) {
		t.Errorf("past deadline: Err = %v, want DeadlineExceeded at once", past.Err())
	}

	early := time.Now().Add(time.Hour)
	parent, cancel := context.WithDeadline(context.Background(), early)
	defer cancel()
	c2 := newCallCtx(parent, 3, early.Add(time.Hour).UnixNano())
	if got, _ := c2.Deadline(); !got.Equal(early) {
		t.Errorf("Deadline = %v, want the parent's earlier %v", got, early)
	}
	c3 := newCallCtx(parent, 4, 0)
	if got, ok := c3.Deadline(); !ok || !got.Equal(early) {
		t.Errorf("no deadline of its own: Deadline = %v %v, want the parent's", got, ok)
	}
	// The timer goes with the call.
	c4 := newCallCtx(context.Background(), 5, time.Now().Add(time.Hour).UnixNano())
	c4.cancel(context.Canceled)
	if !errors.Is(c4.Err(), context.Canceled) {
		t.Errorf("Err = %v, want Canceled", c4.Err())
	}
}

// TestCallCtxDerived: contexts derived from a call end with it, by the time
// it has ended, and deriving starts no goroutine per context (the context
// package starts one for a parent of a foreign type without AfterFunc).
func TestCallCtxDerived(t *testing.T) {
	c := newCallCtx(context.Background(), 1, 0)
	const n = 200
	before := goruntime.NumGoroutine()
	kids := make([]context.Context, n)
	for i := range kids {
		var cancel context.CancelFunc
		kids[i], cancel = context.WithCancel(c)
		defer cancel()
	}
	if grown := goruntime.NumGoroutine() - before; grown >= n/2 {
		t.Errorf("%d derived contexts started %d goroutines", n, grown)
	}
	// One derived context ended on its own is untied from the call.
	solo, cancelSolo := context.WithTimeout(c, time.Hour)
	cancelSolo()
	<-solo.Done()
	c.cancel(context.Canceled)
	for i, k := range kids {
		if k.Err() == nil {
			t.Fatalf("derived context %d still live once the call ended", i)
		}
	}
	// Derived from an ended call: ended at once.
	late, cancelLate := context.WithCancel(c)
	defer cancelLate()
	if late.Err() == nil {
		t.Error("a context derived from an ended call is live")
	}
}

// TestCallCtxAfterFunc: context.AfterFunc on a call runs once the call
// ends, unless stopped first.
func TestCallCtxAfterFunc(t *testing.T) {
	c := newCallCtx(context.Background(), 1, 0)
	ran := make(chan struct{})
	context.AfterFunc(c, func() { close(ran) })
	stopped := make(chan struct{})
	stop := context.AfterFunc(c, func() { close(stopped) })
	if !stop() {
		t.Error("stop before the end reported false")
	}
	if stop() {
		t.Error("a second stop reported true")
	}
	c.cancel(context.Canceled)
	<-ran
	select {
	case <-stopped:
		t.Error("a stopped AfterFunc ran")
	default:
	}
	// Registered on an ended call: runs, and cannot be stopped.
	ran2 := make(chan struct{})
	stop2 := context.AfterFunc(c, func() { close(ran2) })
	<-ran2
	if stop2() {
		t.Error("stop after the end reported true")
	}
	// The method itself, as the context package calls it.
	c2 := newCallCtx(context.Background(), 2, 0)
	got := make(chan struct{})
	stop3 := c2.AfterFunc(func() { close(got) })
	c2.cancel(context.Canceled)
	<-got
	if stop3() {
		t.Error("stop after f ran reported true")
	}
}

// TestInflight: calls in the slot and in the map are found by id for a
// cancel, both end with cancelAll, and busy says whether any is left.
func TestInflight(t *testing.T) {
	var f inflight
	if f.busy() {
		t.Fatal("empty set busy")
	}
	a := newCallCtx(context.Background(), 1, 0)
	b := newCallCtx(context.Background(), 2, 0)
	c := newCallCtx(context.Background(), 3, 0)
	f.add(a) // the slot
	f.add(b) // the map
	f.add(c)
	f.cancel(2)
	if b.Err() == nil {
		t.Error("cancel of a call in the map: still live")
	}
	if a.Err() != nil || c.Err() != nil {
		t.Error("cancel ended another call")
	}
	f.cancel(1)
	if a.Err() == nil {
		t.Error("cancel of the call in the slot: still live")
	}
	f.cancel(99) // unknown: nothing
	f.remove(a)
	f.remove(b)
	if !f.busy() {
		t.Error("busy false with a call left")
	}
	d := newCallCtx(context.Background(), 4, 0)
	f.add(d) // the slot again
	f.cancelAll()
	if c.Err() == nil || d.Err() == nil {
		t.Error("cancelAll left a call live")
	}
	f.remove(c)
	f.remove(d)
	if f.busy() {
		t.Error("busy with every call removed")
	}
	// A peer that reuses an id in flight: removing one leaves the other.
	e1 := newCallCtx(context.Background(), 5, 0)
	e2 := newCallCtx(context.Background(), 5, 0)
	filler := newCallCtx(context.Background(), 6, 0)
	f.add(filler)
	f.add(e1)
	f.add(e2) // replaces e1 in the map, as a map did before
	f.remove(e1)
	f.cancel(5)
	if e2.Err() == nil {
		t.Error("the later call of a reused id was not found")
	}
}

// TestCallCtxEndpoint: between two endpoints in this process, a handler's
// context carries the caller's deadline, ends when the caller cancels,
// when the link ends, and once the handler has returned; contexts the
// handler derived end with it.
func TestCallCtxEndpoint(t *testing.T) {
	base := herdtest.Take()
	type seen struct {
		ctx      context.Context
		derived  context.Context
		deadline time.Time
		hasDL    bool
	}
	started := make(chan seen, 1)
	release := make(chan struct{}, 1)
	local := NewMux()
	if err := local.Register(NewUnaryHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		derived, cancel := context.WithCancel(ctx)
		defer cancel()
		dl, ok := ctx.Deadline()
		started <- seen{ctx: ctx, derived: derived, deadline: dl, hasDL: ok}
		if req.GetMessage() == "wait" {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-release:
			}
		}
		return &testv1.EchoResponse{Message: req.GetMessage()}, nil
	})); err != nil {
		t.Fatal(err)
	}
	ea, eb := endpointPair(t, local)
	call := func(ctx context.Context, msg string) error {
		return eb.userCall(ctx, procEcho, &testv1.EchoRequest{Message: msg}, &testv1.EchoResponse{}, nil)
	}

	// Returned: the context ends with the handler, derived ones too.
	if err := call(context.Background(), "now"); err != nil {
		t.Fatal(err)
	}
	s := <-started
	<-s.ctx.Done()
	<-s.derived.Done()
	if s.hasDL {
		t.Errorf("handler saw a deadline %v the caller did not set", s.deadline)
	}

	// The caller's deadline travels; the handler's context ends with it.
	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	want, _ := dctx.Deadline()
	err := call(dctx, "wait")
	dcancel()
	if CodeOf(err) != CodeDeadlineExceeded {
		t.Errorf("call past its deadline: %v", err)
	}
	s = <-started
	if !s.hasDL || s.deadline.UnixNano() != want.UnixNano() {
		t.Errorf("handler deadline %v %v, want %v", s.deadline, s.hasDL, want)
	}
	<-s.ctx.Done()

	// The caller cancels: a Cancel frame ends the handler's context.
	cctx, ccancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- call(cctx, "wait") }()
	s = <-started
	ccancel()
	<-s.ctx.Done()
	<-s.derived.Done()
	if !errors.Is(s.ctx.Err(), context.Canceled) {
		t.Errorf("after the caller cancelled: Err %v", s.ctx.Err())
	}
	if CodeOf(<-errc) != CodeCanceled {
		t.Error("the cancelled call did not fail with Canceled")
	}

	// Two calls at once (one in the slot, one in the map), then the link
	// ends: both contexts end.
	errs := make(chan error, 2)
	go func() { errs <- call(context.Background(), "wait") }()
	s1 := <-started
	// The second waits in the mailbox behind the first; its context
	// exists from the moment it was read.
	go func() { errs <- call(context.Background(), "wait") }()
	for !busyTwo(&ea.inflight) {
		goruntime.Gosched()
	}
	ea.link.Close()
	<-s1.ctx.Done()
	<-s1.derived.Done()
	if !errors.Is(s1.ctx.Err(), context.Canceled) {
		t.Errorf("after the link ended: Err %v", s1.ctx.Err())
	}
	for range 2 {
		if err := <-errs; err == nil {
			t.Error("a call across the ended link succeeded")
		}
	}
	eb.link.Close()
	<-ea.closed
	<-eb.closed
	herdtest.Check(t, base, dispatchWait)
}

// busyTwo reports whether f holds two calls (the slot and the map).
func busyTwo(f *inflight) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.one.Load() != nil && len(f.m) > 0
}
