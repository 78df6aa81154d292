//go:build linux || darwin

package link

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

func TestRoundTripBothWays(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	const n = 5000
	ca, cb := newCollector(false), newCollector(false)
	a, b := linkPair(t, ca.handle, cb.handle)

	send := func(l *Link, tag string) error {
		for i := range n {
			h := wire.Header{Procedure: "/test.v1.T/" + tag, CallID: uint64(i + 1), DeadlineUnixNano: int64(i)}
			var err error
			if i%2 == 0 {
				err = l.Send(ctx, &h, &herdv1.HelloRequest{WorkerId: uint64(i), Pid: int64(i)}, nil)
			} else {
				err = l.SendBytes(ctx, &h, []byte(fmt.Sprint(i)), nil)
			}
			if err != nil {
				return err
			}
		}
		return nil
	}
	errc := make(chan error, 2)
	go func() { errc <- send(a, "AtoB") }()
	go func() { errc <- send(b, "BtoA") }()
	for range 2 {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		col *collector
		tag string
	}{{cb, "AtoB"}, {ca, "BtoA"}} {
		frames := c.col.wait(t, n)
		for i, f := range frames {
			if f.hdr.CallID != uint64(i+1) || f.hdr.Procedure != "/test.v1.T/"+c.tag || f.hdr.DeadlineUnixNano != int64(i) {
				t.Fatalf("%s frame %d: header %+v", c.tag, i, f.hdr)
			}
			if i%2 == 0 {
				var m herdv1.HelloRequest
				if err := proto.Unmarshal(f.payload, &m); err != nil || m.WorkerId != uint64(i) || m.Pid != int64(i) {
					t.Fatalf("%s frame %d: payload %v, %v", c.tag, i, &m, err)
				}
			} else if string(f.payload) != fmt.Sprint(i) {
				t.Fatalf("%s frame %d: payload %q", c.tag, i, f.payload)
			}
		}
	}
	sa, sb := a.Stats(), b.Stats()
	if sa.FramesSent != n || sb.FramesReceived != n || sb.FramesSent != n || sa.FramesReceived != n {
		t.Fatalf("stats: a %+v, b %+v", sa, sb)
	}
	if sa.BytesSent != sb.BytesReceived || sb.BytesSent != sa.BytesReceived {
		t.Fatalf("byte counts disagree: a %+v, b %+v", sa, sb)
	}
}

// TestCoalescing holds the writer inside its first batch while 2000 more
// frames are queued, then checks that the writer took them all as one
// batch, written in a handful of writes. Holding the writer with a hook,
// rather than by filling the socket, keeps the test independent of the
// kernel's socket buffer sizes.
func TestCoalescing(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	cb := newCollector(false)
	entered, release := make(chan struct{}), make(chan struct{})
	var batches atomic.Int32
	hold := optionFunc(func(c *config) {
		c.beforeBatch = func() {
			if batches.Add(1) == 1 {
				close(entered)
				<-release
			}
		}
	})
	a, _ := linkPair(t, discard, cb.handle, hold)
	if err := a.SendBytes(ctx, &wire.Header{CallID: 1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	<-entered // the writer holds frame 1 and has not written it
	const small = 2000
	for i := range small {
		if err := a.Send(ctx, &wire.Header{CallID: uint64(i + 2)}, &herdv1.HelloRequest{Pid: int64(i)}, nil); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	frames := cb.wait(t, small+1)
	for i, f := range frames {
		if f.hdr.CallID != uint64(i+1) {
			t.Fatalf("frame %d has call ID %d", i, f.hdr.CallID)
		}
	}
	poll(t, "frames counted as sent", func() bool { return a.Stats().FramesSent == small+1 })
	s := a.Stats()
	t.Logf("%d frames in %d batches, %d writes", s.FramesSent, batches.Load(), s.Writes)
	if n := batches.Load(); n != 2 {
		t.Fatalf("%d batches for 1 frame then %d queued while the writer was busy; want 2", n, small)
	}
	// The second batch is about 30 KiB: one write, a few if the socket
	// takes it in parts.
	if s.Writes*20 > s.FramesSent {
		t.Fatalf("%d writes for %d frames: frames were not coalesced", s.Writes, s.FramesSent)
	}
}

// TestFDsTravel sends pipes' read ends in frames among frames without
// descriptors and reads through the received copies.
func TestFDsTravel(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	cb := newCollector(false)
	t.Cleanup(cb.closeFiles)
	a, _ := linkPair(t, discard, cb.handle)

	type pipeEnds struct{ r, w *os.File }
	var pipes []pipeEnds
	for range 4 {
		r, w := pipe(t)
		pipes = append(pipes, pipeEnds{r, w})
	}
	// Frames: none, {p0, p1}, none, {p2}, {p3}, none.
	plan := [][]int{nil, {0, 1}, nil, {2}, {3}, nil}
	for i, idx := range plan {
		var fds []int
		for _, p := range idx {
			fds = append(fds, int(pipes[p].r.Fd()))
		}
		h := wire.Header{CallID: uint64(i + 1), FDCount: 99} // Send overrides FDCount
		if err := a.SendBytes(ctx, &h, []byte("frame"), fds); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if h.FDCount != uint32(len(fds)) {
			t.Fatalf("Send set FDCount to %d, want %d", h.FDCount, len(fds))
		}
	}
	// The sends with descriptors have completed: our copies may go.
	for _, p := range pipes {
		p.r.Close()
	}
	frames := cb.wait(t, len(plan))
	for i, idx := range plan {
		f := frames[i]
		if len(f.files) != len(idx) || f.hdr.FDCount != uint32(len(idx)) {
			t.Fatalf("frame %d: %d files, FDCount %d; want %d", i, len(f.files), f.hdr.FDCount, len(idx))
		}
		for j, p := range idx {
			msg := fmt.Sprintf("pipe %d", p)
			if _, err := pipes[p].w.WriteString(msg); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			n, err := f.files[j].Read(buf)
			if err != nil || string(buf[:n]) != msg {
				t.Fatalf("frame %d file %d read %q, %v; want %q", i, j, buf[:n], err, msg)
			}
			flags, err := unix.FcntlInt(f.files[j].Fd(), unix.F_GETFD, 0)
			if err != nil || flags&unix.FD_CLOEXEC == 0 {
				t.Fatalf("received descriptor is not close-on-exec (%#x, %v)", flags, err)
			}
		}
	}
}

// TestUnclaimedFDsClosed: descriptors that arrive with a frame claiming none
// end the link with ErrUnclaimedFDs, and are closed at once, while the
// peer's end is still open.
func TestUnclaimedFDsClosed(t *testing.T) {
	checkLeaks(t)
	cb := newCollector(false)
	l, raw := rawPair(t, cb.handle)
	r, w := pipe(t)
	rawSendFDs(t, raw, frameBytes(t, wire.Header{CallID: 1}, nil), int(w.Fd()))
	w.Close()
	waitDone(t, l)
	expectUnclaimed(t, l)
	if len(cb.frames) != 0 {
		t.Fatal("the handler saw the frame")
	}
	expectEOF(t, r)
}

// TestFDCountMismatch: a frame claiming more descriptors than arrived is a
// protocol error; the descriptors that did arrive are closed.
func TestFDCountMismatch(t *testing.T) {
	for _, attach := range []int{0, 1} {
		t.Run(fmt.Sprint(attach, " attached"), func(t *testing.T) {
			checkLeaks(t)
			cb := newCollector(false)
			l, raw := rawPair(t, cb.handle)
			r, w := pipe(t)
			frame := frameBytes(t, wire.Header{CallID: 1, FDCount: 2}, nil)
			if attach > 0 {
				rawSendFDs(t, raw, frame, int(w.Fd()))
			} else {
				rawWrite(t, raw, frame)
			}
			w.Close()
			waitDone(t, l)
			var pe *wire.ProtocolError
			if err := l.Err(); !errors.As(err, &pe) {
				t.Fatalf("Err() = %v, want a *wire.ProtocolError", err)
			}
			if len(cb.frames) != 0 {
				t.Fatal("the handler saw the bad frame")
			}
			expectEOF(t, r)
		})
	}
}

func TestGarbage(t *testing.T) {
	checkLeaks(t)
	l, raw := rawPair(t, func(env *wire.Envelope, files []*os.File) error {
		for _, f := range files {
			f.Close()
		}
		return nil
	})
	r, w := pipe(t)
	// A valid frame with a descriptor, then junk.
	rawSendFDs(t, raw, frameBytes(t, wire.Header{CallID: 1, FDCount: 1}, nil), int(w.Fd()))
	w.Close()
	rawWrite(t, raw, append(be32(3), 0xFF, 0xFF, 0xFF))
	waitDone(t, l)
	var pe *wire.ProtocolError
	if err := l.Err(); !errors.As(err, &pe) {
		t.Fatalf("Err() = %v, want a *wire.ProtocolError", err)
	}
	expectEOF(t, r)
	// The link closed its end: the raw side reads EOF.
	if n, err := unix.Read(raw, make([]byte, 1)); n != 0 || err != nil {
		t.Fatalf("raw read after the link ended = %d, %v; want EOF", n, err)
	}
}

func TestOversizePrefix(t *testing.T) {
	checkLeaks(t)
	l, raw := rawPair(t, discard)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	rawWrite(t, raw, []byte{0xFF, 0xFF, 0xFF, 0xFF})
	waitDone(t, l)
	runtime.ReadMemStats(&after)
	if err := l.Err(); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("Err() = %v, want ErrFrameTooLarge", err)
	}
	if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
		t.Fatalf("rejecting a 4 GiB prefix allocated %d bytes", d)
	}
}

func TestTruncatedFrame(t *testing.T) {
	checkLeaks(t)
	l, raw := rawPair(t, discard)
	frame := frameBytes(t, wire.Header{Procedure: "/a.B/C", CallID: 7}, &herdv1.HelloRequest{Pid: 99})
	rawWrite(t, raw, frame[:len(frame)-2])
	unix.Close(raw)
	waitDone(t, l)
	var pe *wire.ProtocolError
	err := l.Err()
	if !errors.As(err, &pe) || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("Err() = %v, want a *wire.ProtocolError wrapping io.ErrUnexpectedEOF", err)
	}
	if errors.Is(err, io.EOF) {
		t.Fatalf("a truncated frame is not a clean EOF: %v", err)
	}
}

func TestSendTooLarge(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	cb := newCollector(false)
	a, _ := linkPair(t, discard, cb.handle, WithMaxFrameSize(1024))
	if err := a.SendBytes(ctx, &wire.Header{CallID: 1}, make([]byte, 2000), nil); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("SendBytes = %v, want ErrFrameTooLarge", err)
	}
	if err := a.Send(ctx, &wire.Header{CallID: 1}, &herdv1.Envelope{Payload: make([]byte, 2000)}, nil); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("Send = %v, want ErrFrameTooLarge", err)
	}
	if err := a.SendBytes(ctx, &wire.Header{CallID: 2}, make([]byte, 1000), nil); err != nil {
		t.Fatalf("link unusable after an oversize frame: %v", err)
	}
	if f := cb.wait(t, 1); f[0].hdr.CallID != 2 || len(f[0].payload) != 1000 {
		t.Fatalf("received %+v", f[0].hdr)
	}
	if a.Err() != nil {
		t.Fatalf("Err() = %v", a.Err())
	}
}

func TestSendRejects(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	a, _ := linkPair(t, discard, discard)
	if err := a.SendBytes(ctx, nil, nil, make([]int, MaxFDsPerFrame+1)); err == nil {
		t.Fatal("Send with too many descriptors succeeded")
	}
	if err := a.SendBytes(ctx, nil, nil, []int{-1}); err == nil {
		t.Fatal("Send with descriptor -1 succeeded")
	}
	r, _ := pipe(t)
	closed := int(r.Fd())
	r.Close()
	if err := a.SendBytes(ctx, nil, nil, []int{closed}); err == nil {
		t.Fatal("Send with a closed descriptor succeeded")
	}
	if err := a.Send(ctx, &wire.Header{Procedure: "/bad\xff"}, nil, nil); !errors.Is(err, wire.ErrInvalidUTF8) {
		t.Fatalf("Send with an invalid procedure = %v", err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.SendBytes(cancelled, nil, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a cancelled context = %v", err)
	}
	if a.Err() != nil {
		t.Fatalf("rejected sends ended the link: %v", a.Err())
	}
}

// TestBackpressure: a handler that blocks stops its link's reading, which
// fills the sender's socket and then its queue, until Send blocks; Send
// then returns when its context ends, and everything queued still arrives.
func TestBackpressure(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	cb := newCollector(true)
	a, _ := linkPair(t, discard, cb.handle, WithWriteBufferLimit(256<<10))

	sendCtx, cancel := context.WithCancel(ctx)
	go func() {
		// Cancel once a Send is blocked waiting for room.
		for {
			a.mu.Lock()
			blocked := a.spaceCh != nil
			a.mu.Unlock()
			if blocked || sendCtx.Err() != nil {
				cancel()
				return
			}
			runtime.Gosched()
		}
	}()
	payload := make([]byte, 16<<10)
	sent := 0
	var err error
	for ; sent < 1<<14; sent++ { // at most 256 MiB: far more than the buffers hold
		if err = a.SendBytes(sendCtx, &wire.Header{CallID: uint64(sent + 1)}, payload, nil); err != nil {
			break
		}
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("after %d frames Send returned %v, want context.Canceled", sent, err)
	}
	if sent*len(payload) < 256<<10 {
		t.Fatalf("Send blocked after only %d bytes", sent*len(payload))
	}
	t.Logf("Send blocked after %d frames (%d KiB)", sent, sent*len(payload)>>10)
	close(cb.gate)
	frames := cb.wait(t, sent)
	for i, f := range frames {
		if f.hdr.CallID != uint64(i+1) {
			t.Fatalf("frame %d has call ID %d", i, f.hdr.CallID)
		}
	}
	if err := a.SendBytes(ctx, &wire.Header{CallID: 999999}, nil, nil); err != nil {
		t.Fatalf("link unusable after a cancelled Send: %v", err)
	}
	cb.wait(t, sent+1)
}

func TestShutdownFlushes(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	cb := newCollector(true)
	a, b := linkPair(t, discard, cb.handle)
	const n = 3000
	for i := range n {
		if err := a.SendBytes(ctx, &wire.Header{CallID: uint64(i + 1)}, make([]byte, 100), nil); err != nil {
			t.Fatal(err)
		}
	}
	shut := make(chan error, 1)
	go func() { shut <- a.Shutdown(ctx) }()
	cb.wait(t, 1)
	poll(t, "Shutdown to start", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.sendErr != nil
	})
	if err := a.SendBytes(ctx, nil, nil, nil); err != ErrLinkClosed {
		t.Fatalf("Send during Shutdown = %v, want ErrLinkClosed", err)
	}
	close(cb.gate)
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	frames := cb.wait(t, n)
	for i, f := range frames {
		if f.hdr.CallID != uint64(i+1) {
			t.Fatalf("frame %d has call ID %d", i, f.hdr.CallID)
		}
	}
	waitDone(t, a)
	waitDone(t, b)
	if err := a.Err(); err != ErrLinkClosed {
		t.Fatalf("a.Err() = %v, want ErrLinkClosed", err)
	}
	if err := b.Err(); !errors.Is(err, io.EOF) || !errors.Is(err, ErrLinkClosed) {
		t.Fatalf("b.Err() = %v, want io.EOF and ErrLinkClosed", err)
	}
	if len(frames) != n {
		t.Fatalf("received %d frames, sent %d", len(frames), n)
	}
}

func TestShutdownContextEnds(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	cb := newCollector(true)
	a, _ := linkPair(t, discard, cb.handle)
	t.Cleanup(func() { close(cb.gate) })                                    // before the links' cleanups, which wait for the handler
	if err := a.SendBytes(ctx, nil, make([]byte, 8<<20), nil); err != nil { // never fits
		t.Fatal(err)
	}
	cb.wait(t, 0)
	sctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := a.Shutdown(sctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown = %v, want context.Canceled", err)
	}
	waitDone(t, a)
	if err := a.Err(); err != ErrLinkClosed {
		t.Fatalf("Err() = %v, want ErrLinkClosed", err)
	}
}

// stallWriter makes a's writer block inside a write: b's handler holds its
// reader on a first frame, then a sends more than the socket holds.
func stallWriter(t *testing.T, ctx context.Context, a *Link, cb *collector) {
	t.Helper()
	if err := a.SendBytes(ctx, &wire.Header{CallID: 1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	cb.wait(t, 1)
	if err := a.SendBytes(ctx, &wire.Header{CallID: 2}, make([]byte, 4<<20), nil); err != nil {
		t.Fatal(err)
	}
	poll(t, "the writer to take the large frame", func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return len(a.pending) == 0
	})
}

// hasWaiter reports whether a descriptor frame with a waiting sender is
// queued (pending) or being written (inflight).
func hasWaiter(l *Link, inflight bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	recs := l.pendingFDs
	if inflight {
		recs = l.inflight
	}
	for _, r := range recs {
		if r.w != nil && !r.sent {
			return true
		}
	}
	return false
}

func TestAbortFailsFDSenders(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	cb := newCollector(true)
	a, _ := linkPair(t, discard, cb.handle)
	t.Cleanup(func() { close(cb.gate) }) // before the links' cleanups, which wait for the handler
	stallWriter(t, ctx, a, cb)
	r, _ := pipe(t)
	errc := make(chan error, 1)
	go func() { errc <- a.SendBytes(ctx, &wire.Header{CallID: 3}, nil, []int{int(r.Fd())}) }()
	poll(t, "the descriptor frame to be queued", func() bool { return hasWaiter(a, false) })
	cause := errors.New("test abort")
	a.Abort(cause)
	err := <-errc
	if !errors.Is(err, ErrLinkClosed) || !errors.Is(err, cause) {
		t.Fatalf("waiting Send = %v, want ErrLinkClosed and the cause", err)
	}
	waitDone(t, a)
	if a.Err() != cause {
		t.Fatalf("Err() = %v, want %v", a.Err(), cause)
	}
	if err := a.SendBytes(ctx, nil, nil, nil); !errors.Is(err, ErrLinkClosed) || !errors.Is(err, cause) {
		t.Fatalf("Send after Abort = %v", err)
	}
}

// TestCancelFDSendWithdrawn: a descriptor frame still queued when its
// context ends is withdrawn, and never reaches the peer.
func TestCancelFDSendWithdrawn(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	cb := newCollector(true)
	t.Cleanup(cb.closeFiles)
	a, _ := linkPair(t, discard, cb.handle)
	stallWriter(t, ctx, a, cb)
	r, w := pipe(t)
	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- a.SendBytes(sctx, &wire.Header{CallID: 3}, nil, []int{int(r.Fd())}) }()
	poll(t, "the descriptor frame to be queued", func() bool { return hasWaiter(a, false) })
	if err := a.SendBytes(ctx, &wire.Header{CallID: 4}, nil, nil); err != nil {
		t.Fatal(err)
	}
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || errors.Is(err, ErrSendInFlight) {
		t.Fatalf("cancelled Send = %v, want context.Canceled without ErrSendInFlight", err)
	}
	r.Close()
	close(cb.gate)
	r2, w2 := pipe(t)
	if err := a.SendBytes(ctx, &wire.Header{CallID: 5}, nil, []int{int(r2.Fd())}); err != nil {
		t.Fatal(err)
	}
	frames := cb.wait(t, 4)
	var ids []uint64
	for _, f := range frames {
		ids = append(ids, f.hdr.CallID)
	}
	if fmt.Sprint(ids) != "[1 2 4 5]" {
		t.Fatalf("received call IDs %v, want [1 2 4 5]", ids)
	}
	if len(frames[3].files) != 1 {
		t.Fatalf("last frame has %d files", len(frames[3].files))
	}
	w2.WriteString("second")
	buf := make([]byte, 16)
	if n, err := frames[3].files[0].Read(buf); err != nil || string(buf[:n]) != "second" {
		t.Fatalf("read %q, %v through the received descriptor", buf[:n], err)
	}
	// Nothing holds the withdrawn read end any more.
	w.Close()
	r2.Close()
}

// TestCancelFDSendInFlight: a descriptor frame the writer has already taken
// is still sent when its sender's context ends, with the link's own
// duplicates of the descriptors.
func TestCancelFDSendInFlight(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	cb := newCollector(true)
	t.Cleanup(cb.closeFiles)
	a, _ := linkPair(t, discard, cb.handle)
	stallWriter(t, ctx, a, cb) // frames 1 and 2; the writer is stuck in 2
	// Frame 3 is large too, so the writer, once frame 2 is through, gets
	// stuck in it before it reaches frame 4, which carries a descriptor.
	// (2 MiB: more than the socket holds, less than the write queue limit.)
	if err := a.SendBytes(ctx, &wire.Header{CallID: 3}, make([]byte, 2<<20), nil); err != nil {
		t.Fatal(err)
	}
	r, w := pipe(t)
	sctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- a.SendBytes(sctx, &wire.Header{CallID: 4}, nil, []int{int(r.Fd())}) }()
	poll(t, "the descriptor frame to be queued", func() bool { return hasWaiter(a, false) })
	cb.gate <- struct{}{} // let frame 1 go; b blocks again in frame 2's handler
	poll(t, "the writer to take the descriptor frame", func() bool { return hasWaiter(a, true) })
	cancel()
	err := <-errc
	if !errors.Is(err, context.Canceled) || !errors.Is(err, ErrSendInFlight) {
		t.Fatalf("cancelled Send = %v, want ErrSendInFlight and context.Canceled", err)
	}
	r.Close() // the link has its own duplicate
	close(cb.gate)
	frames := cb.wait(t, 4)
	if f := frames[3]; f.hdr.CallID != 4 || len(f.files) != 1 {
		t.Fatalf("frame 4: %+v, %d files", f.hdr, len(f.files))
	}
	w.WriteString("in flight")
	buf := make([]byte, 16)
	if n, err := frames[3].files[0].Read(buf); err != nil || string(buf[:n]) != "in flight" {
		t.Fatalf("read %q, %v through the received descriptor", buf[:n], err)
	}
}

func TestPeerClose(t *testing.T) {
	checkLeaks(t)
	a, b := linkPair(t, discard, discard)
	b.Close()
	waitDone(t, a)
	waitDone(t, b)
	if err := a.Err(); !errors.Is(err, io.EOF) || !errors.Is(err, ErrLinkClosed) {
		t.Fatalf("a.Err() = %v, want io.EOF and ErrLinkClosed", err)
	}
	if err := b.Err(); err != ErrLinkClosed {
		t.Fatalf("b.Err() = %v, want ErrLinkClosed", err)
	}
	if err := a.SendBytes(context.Background(), nil, nil, nil); !errors.Is(err, ErrLinkClosed) {
		t.Fatalf("Send on a closed link = %v", err)
	}
}

func TestHandlerErrorAndClose(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	boom := errors.New("boom")
	var self *Link
	var mu sync.Mutex
	a, b := linkPair(t, discard, func(env *wire.Envelope, _ []*os.File) error {
		if env.CallID == 1 {
			return boom
		}
		mu.Lock()
		defer mu.Unlock()
		return self.Close() // closing from inside the handler must not deadlock
	})
	if err := a.SendBytes(ctx, &wire.Header{CallID: 1}, nil, nil); err != nil {
		t.Fatal(err)
	}
	waitDone(t, b)
	if err := b.Err(); !errors.Is(err, boom) {
		t.Fatalf("Err() = %v, want the handler's error", err)
	}
	waitDone(t, a)

	c, d := linkPair(t, discard, func(env *wire.Envelope, _ []*os.File) error {
		mu.Lock()
		defer mu.Unlock()
		return self.Close()
	})
	mu.Lock()
	self = d
	mu.Unlock()
	if err := c.SendBytes(ctx, &wire.Header{CallID: 2}, nil, nil); err != nil {
		t.Fatal(err)
	}
	waitDone(t, d)
	if d.Err() != ErrLinkClosed {
		t.Fatalf("Err() = %v", d.Err())
	}
}

func TestNewRejects(t *testing.T) {
	checkLeaks(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := New(r, discard); err == nil {
		t.Fatal("New on a pipe succeeded")
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	if _, err := New(os.NewFile(uintptr(fds[0]), "dgram"), discard); err == nil {
		t.Fatal("New on a datagram socket succeeded")
	}
	a, b, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := New(a, nil); err == nil {
		t.Fatal("New with a nil handler succeeded")
	}
	if _, err := New(os.NewFile(^uintptr(0), "none"), discard, WithMaxFrameSize(-1)); err == nil {
		t.Fatal("New with a negative max frame size succeeded")
	}
}

func TestAppendRightsMatchesUnixRights(t *testing.T) {
	for _, fds := range [][]int{{3}, {0, 1, 2}, make([]int, MaxFDsPerFrame)} {
		if got, want := appendRights(nil, fds), unix.UnixRights(fds...); !bytes.Equal(got, want) {
			t.Fatalf("appendRights(%d fds) = %x, want %x", len(fds), got, want)
		}
		var back []int
		back = appendReceivedFDs(back, unix.UnixRights(fds...))
		if fmt.Sprint(back) != fmt.Sprint(fds) {
			t.Fatalf("parsed %v, want %v", back, fds)
		}
	}
}

// TestMaxFrameSizeExact: a frame exactly at the limit passes both ways.
func TestMaxFrameSizeExact(t *testing.T) {
	checkLeaks(t)
	ctx := testContext(t)
	const limit = 100 << 10
	cb := newCollector(false)
	a, _ := linkPair(t, discard, cb.handle, WithMaxFrameSize(limit), WithReadBufferSize(1024))
	h := wire.Header{CallID: 1}
	probe, _ := wire.AppendFrameBytes(nil, &h, make([]byte, limit), 0)
	over := len(probe) - wire.PrefixSize - limit // envelope bytes besides the payload
	payload := make([]byte, limit-over)
	for i := range payload {
		payload[i] = byte(i)
	}
	if err := a.SendBytes(ctx, &h, payload, nil); err != nil {
		t.Fatalf("frame at the limit: %v", err)
	}
	if err := a.SendBytes(ctx, &h, append(payload, 0), nil); !errors.Is(err, wire.ErrFrameTooLarge) {
		t.Fatalf("frame one byte over the limit: %v", err)
	}
	if f := cb.wait(t, 1)[0]; !bytes.Equal(f.payload, payload) {
		t.Fatal("payload corrupted")
	}
}
