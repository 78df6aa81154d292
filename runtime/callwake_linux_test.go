package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	goruntime "runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
	"github.com/herd-go/herd/runtime/internal/link"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// Tests of the call waker (callwake.go): the endpoint under test makes the
// calls, and the raw end of its link answers them when the test says, so
// that a reply can come while a call holds the waker, after its context
// ended, or never.

// newCallPeer is newRawPeer whose raw end grants the endpoint credit for
// its calls.
//
// The waker is not used at GOMAXPROCS=1: these tests use it whatever
// GOMAXPROCS they run with (go test -cpu 1), unless they say otherwise.
func newCallPeer(t *testing.T) *rawPeer {
	t.Helper()
	single := singleP
	singleP = func() bool { return false }
	t.Cleanup(func() { singleP = single })
	p := newRawPeer(t)
	grant := &herdv1.CreditRequest{Frames: 1 << 20, Bytes: 1 << 30}
	if err := p.write(p.frame(wire.Header{Procedure: controlCreditProcedure, Flags: wire.FlagSystem}, marshal(t, grant)), nil); err != nil {
		t.Fatal(err)
	}
	return p
}

// callResult is what a call started by startCall returned.
type callResult struct {
	msg   string
	files []*os.File
	err   error
}

// startCall makes an Echo call from the endpoint on a new goroutine; its
// result comes on the channel.
func (p *rawPeer) startCall(ctx context.Context, msg string, opts ...CallOption) <-chan callResult {
	ch := make(chan callResult, 1)
	go func() {
		var files []*os.File
		res := &testv1.EchoResponse{}
		err := p.ep.userCall(ctx, procEcho, &testv1.EchoRequest{Message: msg}, res, append(opts, WithResponseFiles(&files)))
		ch <- callResult{msg: res.GetMessage(), files: files, err: err}
	}()
	return ch
}

// request returns the next call the endpoint made, skipping the cancel
// frames of calls given up before.
func (p *rawPeer) request() decoded {
	p.t.Helper()
	for {
		d := p.next()
		if d.callID != 0 {
			if d.procedure != procEcho {
				p.t.Fatalf("got a call of %q", d.procedure)
			}
			return d
		}
		if d.replyTo == 0 {
			p.t.Fatalf("got %+v, want a call or a cancel", d)
		}
	}
}

// reply answers call id with msg, fds attached.
func (p *rawPeer) reply(id uint64, msg string, fds ...int) {
	p.t.Helper()
	b := p.frame(wire.Header{ReplyTo: id, FDCount: uint32(len(fds))}, marshal(p.t, &testv1.EchoResponse{Message: msg}))
	if err := p.write(b, fds); err != nil {
		p.t.Fatal(err)
	}
}

// result waits for a call's result.
func result(t *testing.T, ch <-chan callResult) callResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(dispatchWait):
		t.Fatal("the call did not return")
	}
	return callResult{}
}

// waker returns the endpoint's waker and whether a call holds it.
func wakerState(ep *endpoint) (w *callWaker, held bool) {
	ep.pendMu.Lock()
	defer ep.pendMu.Unlock()
	return ep.waker, ep.waker != nil && ep.waker.held.Load()
}

// parkedCalls counts the pending calls that hold the waker.
func parkedCalls(ep *endpoint) int {
	ep.pendMu.Lock()
	defer ep.pendMu.Unlock()
	n := 0
	for _, pc := range ep.pending {
		if pc.park != nil {
			n++
		}
	}
	return n
}

// A call waiting alone holds the waker and gets its reply through it, one
// call after another; the waker is given back after each, and closed with
// the link.
func TestCallWakerCompletesCalls(t *testing.T) {
	base := herdtest.Take()
	p := newCallPeer(t)
	for i := range 50 {
		msg := fmt.Sprint("m", i)
		ch := p.startCall(context.Background(), msg)
		d := p.request()
		if _, held := wakerState(p.ep); !held || parkedCalls(p.ep) != 1 {
			t.Fatalf("call %d waits without the waker (held %v, parked calls %d)", i, held, parkedCalls(p.ep))
		}
		p.reply(d.callID, "re:"+msg)
		if r := result(t, ch); r.err != nil || r.msg != "re:"+msg {
			t.Fatalf("call %d: %+v", i, r)
		}
		if _, held := wakerState(p.ep); held {
			t.Fatalf("call %d returned without giving the waker back", i)
		}
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	if w, _ := wakerState(p.ep); w != nil {
		t.Fatal("the waker outlived the link")
	}
	herdtest.Check(t, base, dispatchWait)
}

// Two calls wait at once: one holds the waker, the other its channel, and
// each gets its own reply in whatever order the replies come.
func TestCallWakerOneHolderAtATime(t *testing.T) {
	base := herdtest.Take()
	p := newCallPeer(t)
	for _, secondFirst := range []bool{true, false} {
		a := p.startCall(context.Background(), "a")
		da := p.request()
		b := p.startCall(context.Background(), "b")
		db := p.request()
		if n := parkedCalls(p.ep); n != 1 {
			t.Fatalf("%d waiting calls hold the waker, want 1", n)
		}
		first, second := da, db
		if secondFirst {
			first, second = db, da
		}
		p.reply(first.callID, fmt.Sprint("re:", first.callID))
		p.reply(second.callID, fmt.Sprint("re:", second.callID))
		if r := result(t, a); r.err != nil || r.msg != fmt.Sprint("re:", da.callID) {
			t.Fatalf("call a: %+v", r)
		}
		if r := result(t, b); r.err != nil || r.msg != fmt.Sprint("re:", db.callID) {
			t.Fatalf("call b: %+v", r)
		}
		if _, held := wakerState(p.ep); held {
			t.Fatal("the waker is still held")
		}
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// A call holding the waker whose context is cancelled returns at once
// with canceled, tells the callee, gives the waker back, and its late
// reply is dropped; the next call holds the waker again.
func TestCallWakerCancelled(t *testing.T) {
	base := herdtest.Take()
	p := newCallPeer(t)
	ctx, cancel := context.WithCancel(context.Background())
	a := p.startCall(ctx, "a")
	da := p.request()
	if _, held := wakerState(p.ep); !held {
		t.Fatal("the call waits without the waker")
	}
	cancel()
	if r := result(t, a); CodeOf(r.err) != CodeCanceled {
		t.Fatalf("cancelled call: %+v", r)
	}
	if d := p.next(); d.replyTo != da.callID || d.callID != 0 {
		t.Fatalf("got %+v, want the cancel of call %d", d, da.callID)
	}
	if _, held := wakerState(p.ep); held {
		t.Fatal("the cancelled call kept the waker")
	}
	p.reply(da.callID, "late")
	b := p.startCall(context.Background(), "b")
	db := p.request()
	if _, held := wakerState(p.ep); !held {
		t.Fatal("the next call waits without the waker")
	}
	p.reply(db.callID, "re:b")
	if r := result(t, b); r.err != nil || r.msg != "re:b" {
		t.Fatalf("call after the cancel: %+v", r)
	}
	if n := p.eventCount(); n != 0 {
		t.Fatalf("%d error events; the late reply should be dropped quietly: %+v", n, p.event(0))
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// A call holding the waker whose deadline passes returns with
// deadline_exceeded (the deadline travelled with the call: no cancel
// frame), and gives the waker back.
func TestCallWakerDeadline(t *testing.T) {
	base := herdtest.Take()
	p := newCallPeer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	a := p.startCall(ctx, "a")
	da := p.request()
	if r := result(t, a); CodeOf(r.err) != CodeDeadlineExceeded {
		t.Fatalf("call past its deadline: %+v", r)
	}
	if _, held := wakerState(p.ep); held {
		t.Fatal("the call kept the waker")
	}
	p.reply(da.callID, "late")
	b := p.startCall(context.Background(), "b")
	db := p.request() // a cancel frame of call a would fail here
	p.reply(db.callID, "re:b")
	if r := result(t, b); r.err != nil || r.msg != "re:b" {
		t.Fatalf("call after the deadline: %+v", r)
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// The link ends while a call holds the waker and another waits on its
// channel: both fail with unavailable, the waker is closed (the leak check
// counts its descriptor), and a call made afterwards fails without making
// a new one.
func TestCallWakerLinkEnds(t *testing.T) {
	base := herdtest.Take()
	p := newCallPeer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a := p.startCall(ctx, "a") // with a context: AfterFunc registered too
	p.request()
	b := p.startCall(context.Background(), "b")
	p.request()
	if n := parkedCalls(p.ep); n != 1 {
		t.Fatalf("%d waiting calls hold the waker, want 1", n)
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	for _, ch := range []<-chan callResult{a, b} {
		if r := result(t, ch); CodeOf(r.err) != CodeUnavailable {
			t.Fatalf("call over an ended link: %+v", r)
		}
	}
	if r := result(t, p.startCall(context.Background(), "c")); CodeOf(r.err) != CodeUnavailable {
		t.Fatalf("call after the end: %+v", r)
	}
	if w, _ := wakerState(p.ep); w != nil {
		t.Fatal("a waker outlived the link")
	}
	herdtest.Check(t, base, dispatchWait)
}

// A reply and the caller's cancellation race, many times: each call
// returns its reply or canceled, never hangs or gets another call's
// reply, and the waker is free after each.
func TestCallWakerReplyRacesCancel(t *testing.T) {
	base := herdtest.Take()
	p := newCallPeer(t)
	replied, cancelled := 0, 0
	for i := range 200 {
		ctx, cancel := context.WithCancel(context.Background())
		msg := fmt.Sprint("m", i)
		ch := p.startCall(ctx, msg)
		d := p.request()
		go cancel()
		p.reply(d.callID, "re:"+msg)
		r := result(t, ch)
		switch {
		case r.err == nil && r.msg == "re:"+msg:
			replied++
		case CodeOf(r.err) == CodeCanceled:
			cancelled++
		default:
			t.Fatalf("call %d: %+v", i, r)
		}
		cancel()
		if _, held := wakerState(p.ep); held {
			t.Fatalf("call %d returned holding the waker", i)
		}
	}
	t.Logf("%d replied, %d cancelled", replied, cancelled)
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// The descriptors attached to a reply reach a caller woken through the
// waker.
func TestCallWakerResponseFiles(t *testing.T) {
	base := herdtest.Take()
	p := newCallPeer(t)
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	ch := p.startCall(context.Background(), "a")
	d := p.request()
	if _, held := wakerState(p.ep); !held {
		t.Fatal("the call waits without the waker")
	}
	p.reply(d.callID, "re:a", pipe[0])
	unix.Close(pipe[0])
	r := result(t, ch)
	if r.err != nil || r.msg != "re:a" || len(r.files) != 1 {
		t.Fatalf("reply with a file: %+v", r)
	}
	if _, err := unix.Write(pipe[1], []byte("x")); err != nil {
		t.Fatal(err)
	}
	unix.Close(pipe[1])
	got, err := io.ReadAll(r.files[0])
	r.files[0].Close()
	if err != nil || string(got) != "x" {
		t.Fatalf("read %q, %v from the received file", got, err)
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}

// Many goroutines call between two endpoints at once, some with contexts
// cancelled midway; every call returns its own reply or canceled, and the
// waker passes between them.
func TestCallWakerConcurrentCallers(t *testing.T) {
	base := herdtest.Take()
	fa, fb, err := link.Pair()
	if err != nil {
		t.Fatal(err)
	}
	local := NewMux()
	if err := local.Register(NewUnaryHandler(procEcho, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		return &testv1.EchoResponse{Message: "echo:" + req.GetMessage()}, nil
	})); err != nil {
		t.Fatal(err)
	}
	cfg := endpointConfig{logger: slog.New(slog.DiscardHandler)}.withDefaults()
	noErr := func(Code, string, error) {}
	ea := newEndpoint(cfg, NewMux(), local, nil, context.Background(), noErr)
	eb := newEndpoint(cfg, NewMux(), NewMux(), nil, context.Background(), noErr)
	if err := ea.start(fa); err != nil {
		t.Fatal(err)
	}
	if err := eb.start(fb); err != nil {
		t.Fatal(err)
	}
	const callers, calls = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for g := range callers {
		wg.Go(func() {
			for i := range calls {
				ctx, cancel := context.WithCancel(context.Background())
				if i%7 == g%7 {
					go cancel()
				}
				msg := fmt.Sprint(g, "/", i)
				res := &testv1.EchoResponse{}
				err := eb.userCall(ctx, procEcho, &testv1.EchoRequest{Message: msg}, res, nil)
				cancel()
				if err == nil && res.GetMessage() != "echo:"+msg {
					err = fmt.Errorf("call %s got %q", msg, res.GetMessage())
				}
				if err != nil && CodeOf(err) != CodeCanceled {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if _, held := wakerState(eb); held {
		t.Error("the waker is held after every call returned")
	}
	ea.link.Close()
	eb.link.Close()
	<-ea.closed
	<-eb.closed
	herdtest.Check(t, base, dispatchWait)
}

// A wake that comes after the waker was closed (the reader completing a
// call as the link ends) writes nothing, also when the descriptor number
// has been reused meanwhile: the post goes through the file's reference,
// never to a bare descriptor number.
func TestCallWakerWakeAfterClose(t *testing.T) {
	w := newCallWaker(nil)
	if w == nil {
		t.Fatal("no call waker")
	}
	var num int
	if err := w.rc.Control(func(fd uintptr) { num = int(fd) }); err != nil {
		t.Fatal(err)
	}
	w.wake()
	var got [8]byte
	if n, err := unix.Read(num, got[:]); err != nil || n != 8 || got != w.one {
		t.Fatalf("eventfd read %d %v: %v, want the posted value", n, got, err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	w.close()
	// The pipe's write end takes the closed waker's number.
	if err := unix.Dup3(p[1], num, unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(num)
	w.wake()
	if n, err := unix.Read(p[0], got[:]); n > 0 || err != unix.EAGAIN {
		t.Fatalf("a wake after close reached the reused descriptor: read %d, %v", n, err)
	}
}

// At GOMAXPROCS=1 calls wait on their channels (callwake.go): none makes
// the waker, one call after another, a cancelled one included, and a
// call at GOMAXPROCS=2 on the same endpoint takes it again.
func TestCallWakerNotAtOneP(t *testing.T) {
	base := herdtest.Take()
	p := newCallPeer(t)
	singleP = func() bool { return goruntime.GOMAXPROCS(0) == 1 } // the real one
	defer goruntime.GOMAXPROCS(goruntime.GOMAXPROCS(1))
	for i := range 20 {
		msg := fmt.Sprint("m", i)
		ch := p.startCall(context.Background(), msg)
		d := p.request()
		if w, _ := wakerState(p.ep); w != nil || parkedCalls(p.ep) != 0 {
			t.Fatalf("call %d at GOMAXPROCS=1 made or holds the waker", i)
		}
		p.reply(d.callID, "re:"+msg)
		if r := result(t, ch); r.err != nil || r.msg != "re:"+msg {
			t.Fatalf("call %d: %+v", i, r)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := p.startCall(ctx, "a")
	da := p.request()
	cancel()
	if r := result(t, a); CodeOf(r.err) != CodeCanceled {
		t.Fatalf("cancelled call: %+v", r)
	}
	if d := p.next(); d.replyTo != da.callID || d.callID != 0 {
		t.Fatalf("got %+v, want the cancel of call %d", d, da.callID)
	}
	p.reply(da.callID, "late")

	goruntime.GOMAXPROCS(2)
	b := p.startCall(context.Background(), "b")
	db := p.request()
	if _, held := wakerState(p.ep); !held {
		t.Fatal("a call at GOMAXPROCS=2 waits without the waker")
	}
	p.reply(db.callID, "re:b")
	if r := result(t, b); r.err != nil || r.msg != "re:b" {
		t.Fatalf("call at GOMAXPROCS=2: %+v", r)
	}
	if err := p.close(); !errors.Is(err, ErrLinkClosed) {
		t.Fatal(err)
	}
	herdtest.Check(t, base, dispatchWait)
}
