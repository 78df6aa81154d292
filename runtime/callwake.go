package runtime

import (
	"context"
	"encoding/binary"
	"os"
	goruntime "runtime"
	"sync/atomic"
	"syscall"

	"github.com/herd-go/herd/runtime/internal/link"
)

// Waking a waiting caller without waking a thread.
//
// A call's reply is read by the link's reader goroutine, which then has to
// make the waiting caller run. Through a channel that costs, on a machine
// with an idle CPU, a thread wake-up: making a goroutine runnable
// (goready) makes the Go scheduler wake an idle thread to run it (wakep),
// although the reader's own thread is about to go idle and could run the
// caller itself. Measured on 2 CPUs, that was 1.2 of the primary's 3
// context switches per round trip, and half of a round trip's latency
// above the raw socketpair's.
//
// The netpoller has no such cost: a goroutine parked on a descriptor is
// made runnable by whichever thread polls next, and the reader's thread
// polls (without blocking) before it goes idle. So one caller per endpoint
// at a time, the one holding its callWaker, waits for its reply on an
// eventfd registered with the netpoller instead of on its channel, and the
// reader wakes it by writing the eventfd. The reader's thread then finds
// the caller in its next poll and runs it: the round trip costs the
// context switches of the raw socketpair, where the caller reads its reply
// itself. Other callers waiting at the same time use their channels.
//
// The eventfd is only ever written (its counter would overflow after 2^64
// calls): the netpoller's registration is edge-triggered, and every write
// is an edge. The reply's channel still gets its token, always before the
// waker is written: the waker only tells the caller when to look, so a
// caller can always fall back to the channel (the waker closed under it
// when the link ended, its context ended first).
//
// With GOMAXPROCS=1 the channel is the cheaper wait, and callers use it:
// wakep has no idle P to start a thread for (the reader holds the only
// one), so the reader's send leaves the caller in its P's run-next slot,
// and the caller runs as soon as the reader parks, without the eventfd
// write and the netpoll that finds it. Measured (BenchmarkRoundTrip, both
// processes at GOMAXPROCS=1, 2 CPUs, alternated 3+3, load 2.1-2.3): the
// caller's CPU per round trip 16.2-19.5 us with the waker, 13.2-16.2 us on
// the channel, and the round trip 30.0-35.1 against 28.7-30.2 us. That is
// a Pool's worker on a machine with no more CPUs than workers
// (WorkerGOMAXPROCS) calling the primary, or a process pinned to one CPU.

// callWaker is an endpoint's eventfd on which one waiting caller at a time
// parks (see above). It is made by the endpoint's first call
// (acquireWakerLocked) and closed once the link has ended (watch).
type callWaker struct {
	f    *os.File // the eventfd, non-blocking, registered with the netpoller
	rc   syscall.RawConn
	l    *link.Link // the endpoint's link, which the holder may read (callspin.go)
	spin spinPolicy
	held atomic.Bool // a caller holds it (acquired under endpoint.pendMu)
	one  [8]byte     // the value written: 1

	// The holder's call and context's Done channel, read by check on the
	// holder's goroutine.
	pc   *pendingCall
	done <-chan struct{}
	// check and wakeFn are method values bound once: a closure per call
	// would allocate.
	check    func(fd uintptr) bool
	finished func() bool // link.ReadUntil's done
	wakeFn   func()
	post     func(fd uintptr) bool // RawConn.Write callback of wake
}

func (w *callWaker) init(f *os.File, rc syscall.RawConn, l *link.Link) *callWaker {
	w.f, w.rc, w.l = f, rc, l
	binary.NativeEndian.PutUint64(w.one[:], 1) // the eventfd adds it to its counter
	w.check = w.ready
	w.finished = w.over
	w.wakeFn = w.wake
	w.post = w.postOne
	return w
}

// ready is the RawConn.Read callback of await: true once the holder's
// call is finished or its context has ended, false to park on the
// netpoller until the next write.
func (w *callWaker) ready(uintptr) bool {
	if w.pc.fin.Load() {
		return true
	}
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

// over reports whether the holder's call is finished or its context has
// ended: link.ReadUntil's done.
func (w *callWaker) over() bool { return w.ready(0) }

// await waits until pc is finished (true) or ctx has ended (false), and
// then consumes pc.done's token if pc finished: first reading the link
// for the reply itself (callspin.go), then parked on the eventfd.
func (w *callWaker) await(ctx context.Context, pc *pendingCall) bool {
	w.pc, w.done = pc, ctx.Done()
	if d := w.spin.budget(); d > 0 && w.l != nil {
		over, read := w.l.ReadUntil(w.finished, d)
		if read {
			w.spin.record(over)
		}
		if over {
			w.pc, w.done = nil, nil
			if !pc.fin.Load() {
				return false
			}
			<-pc.done
			return true
		}
	}
	var stop func() bool
	if w.done != nil {
		stop = context.AfterFunc(ctx, w.wakeFn)
	}
	err := w.rc.Read(w.check)
	if stop != nil {
		stop()
	}
	w.pc, w.done = nil, nil
	if err != nil {
		// Closed under us: the link has ended (watch), and every call
		// it failed has its token.
		select {
		case <-pc.done:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !pc.fin.Load() {
		return false
	}
	<-pc.done // sent right after fin was set
	return true
}

// wake makes a caller parked in await check again. It may come late, for
// a call already over: the next holder then checks once for nothing. After
// close it does nothing (the write fails on the closed file; the file's
// own reference counting keeps a late write from reaching a reused
// descriptor number).
//
// It writes through the RawConn, whose reference on the descriptor is
// what keeps a late write off a reused number, with a raw system call:
// (*os.File).Write would go through syscall.Syscall, whose entersyscall
// wakes the sysmon thread when the process was idle, a futex wake-up on
// the reader's way to the caller (an eventfd write never blocks).
func (w *callWaker) wake() {
	w.rc.Write(w.post)
}

// postOne is the RawConn.Write callback of wake: one write of w.one.
func (w *callWaker) postOne(fd uintptr) bool {
	eventfdPost(fd, &w.one)
	return true
}

// singleP reports whether the process runs goroutines on one P
// (GOMAXPROCS=1), where callers wait on their channels. A variable for
// the tests.
var singleP = func() bool { return goruntime.GOMAXPROCS(0) == 1 }

// release gives w up for the endpoint's next caller.
func (w *callWaker) release() { w.held.Store(false) }

// close closes the eventfd; a caller parked in await falls back to its
// channel.
func (w *callWaker) close() { w.f.Close() }

// acquireWakerLocked returns the endpoint's waker for a new call to hold,
// making it on the first call, or nil when another call holds it, when
// the process runs one P (see above; GOMAXPROCS may change at any time,
// so it is read per call: a lock, some 20 ns), or when there is none:
// that call waits on its channel. Called with ep.pendMu held.
func (ep *endpoint) acquireWakerLocked() *callWaker {
	if singleP() {
		return nil
	}
	if !ep.wakerMade {
		ep.waker, ep.wakerMade = newCallWaker(ep.link), true
		if ep.waker != nil {
			ep.waker.spin.d = ep.callSpin
		}
	}
	if w := ep.waker; w != nil && w.held.CompareAndSwap(false, true) {
		return w
	}
	return nil
}
