package runtime

import (
	"sync/atomic"
	"time"
)

// Running a handler on the link's reader (leader/follower).
//
// A request that finds its lane idle and empty is handled on the reader
// goroutine itself, at once, instead of being posted to the drainer: a
// round trip then costs no goroutine hand-off (and, on an idle machine, no
// thread wake-up) on the callee's side. Ordering is the mailbox's
// (actor.Mailbox.TryHandle): the handler runs as the lane's drainer would.
//
// While the handler runs, the reader would read nothing more, so the role of
// reader is handed to a new goroutine (link.Promote) when the handler may
// block or takes long: at once when it waits for the peer (a call, or a
// send waiting for credit or queue space), and otherwise when a watchdog
// finds it still running after inlineGrace. Control traffic and replies to
// other callers are then read again within that bound.

// inlineGrace is how long a handler runs on the reader before the watchdog
// gives the reader role to a new goroutine. It bounds how long frames
// behind a busy inline handler wait to be read; a handler that blocks on the
// peer gives the role up at once.
const inlineGrace = time.Millisecond

// readerWatch is the watchdog of inline handlers: one timer per endpoint,
// armed by the first inline handler and re-armed only while handlers keep
// running, so that a stream of short handlers costs no timer operation
// each.
type readerWatch struct {
	seq     atomic.Uint64 // odd while an inline handler runs
	armed   atomic.Bool
	last    atomic.Uint64 // seq at the previous firing
	t       *time.Timer
	promote func() bool
}

func (w *readerWatch) init(promote func() bool) {
	w.promote = promote
	w.t = time.AfterFunc(time.Hour, w.fire)
	w.t.Stop()
}

// start is called as an inline handler starts.
func (w *readerWatch) start() {
	w.seq.Add(1)
	if !w.armed.Load() && w.armed.CompareAndSwap(false, true) {
		w.t.Reset(inlineGrace)
	}
}

// end is called as an inline handler returns.
func (w *readerWatch) end() { w.seq.Add(1) }

// fire runs when the timer expires: a handler that has been running since
// the previous firing gets its reader role handed over.
func (w *readerWatch) fire() {
	s := w.seq.Load()
	if s&1 == 1 {
		if w.last.Swap(s) == s {
			w.promote()
		}
		w.t.Reset(inlineGrace)
		return
	}
	w.armed.Store(false)
	// A handler that started just before the store saw the timer armed.
	if w.seq.Load()&1 == 1 && w.armed.CompareAndSwap(false, true) {
		w.t.Reset(inlineGrace)
	}
}

// stop disarms the watchdog for good.
func (w *readerWatch) stop() {
	if w.t != nil {
		w.t.Stop()
	}
}

// beforeInline runs on the reader once the lane is claimed for an inline
// handler: the frame is released to the link, and the watchdog started.
func (ep *endpoint) beforeInline() {
	ep.link.Release()
	ep.rwatch.start()
}

// tryInline handles in on the reader goroutine if the user lane is idle
// and empty, and reports whether it did.
func (ep *endpoint) tryInline(in inbound) bool {
	if !ep.box.TryHandle(in, ep.beforeInlineFn) {
		return false
	}
	ep.rwatch.end()
	return true
}
