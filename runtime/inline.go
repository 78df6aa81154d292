package runtime

import (
	"sync/atomic"
	"time"

	"github.com/herd-go/herd/runtime/internal/link"
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
// each. Which handler runs, if any, it reads from the link's reader state
// (link.ReleasedHandler): the inline path's Release and Reclaim already
// write it, so the watchdog costs the handlers no atomic operation of its
// own.
type readerWatch struct {
	armed atomic.Bool
	last  atomic.Uint64 // the handler run seen at the previous firing
	t     *time.Timer
	l     *link.Link
}

func (w *readerWatch) init(l *link.Link) {
	w.l = l
	w.t = time.AfterFunc(time.Hour, w.fire)
	w.t.Stop()
}

// start is called as an inline handler starts, after link.Release.
func (w *readerWatch) start() {
	if !w.armed.Load() && w.armed.CompareAndSwap(false, true) {
		w.t.Reset(inlineGrace)
	}
}

// fire runs when the timer expires: a handler that has been running since
// the previous firing gets its reader role handed over.
func (w *readerWatch) fire() {
	if run, ok := w.l.ReleasedHandler(); ok {
		if w.last.Swap(run) == run {
			w.l.PromoteReleased(run)
		}
		w.t.Reset(inlineGrace)
		return
	}
	w.armed.Store(false)
	// A handler that started just before the store saw the timer armed.
	if _, ok := w.l.ReleasedHandler(); ok && w.armed.CompareAndSwap(false, true) {
		w.t.Reset(inlineGrace)
	}
}

// stop disarms the watchdog for good.
func (w *readerWatch) stop() {
	if w.t != nil {
		w.t.Stop()
	}
}

// The reader keeps the lane between frames.
//
// Taking the lane for one inline handler and giving it back costs a few
// atomic operations; in a flood of small messages that is a good part of
// each one's cost. So once a handler has run inline, the reader keeps the
// lane's claim (actor.Mailbox.Claim, ep.held) while it decodes the next
// frames of the same read, and runs their handlers under it, each still
// only if nothing was posted to the lane meanwhile (RunClaimed): the
// lane's order is the same as with one TryHandle per message. The reader
// gives the claim back (unhold) before it waits for the socket (read
// idle), when the link ends, and whenever a message must queue behind
// others. While a handler runs the claim is the handler's, not the
// reader's: if the reader role is handed to a new goroutine meanwhile
// (link.Promote), the new reader does not hold the lane, and the old
// goroutine gives it back once its handler returns (link.Reclaim tells
// which happened).

// beforeInline runs on the reader once the lane is claimed for an inline
// handler: the frame is released to the link, and the watchdog started.
func (ep *endpoint) beforeInline() {
	ep.rtoken = ep.link.Release()
	ep.rwatch.start()
}

// tryInline handles *in on the reader goroutine if the user lane is idle
// and empty, or held by the reader with nothing queued, and reports
// whether it did; on false *in is as it was.
func (ep *endpoint) tryInline(in *inbound) bool {
	if !ep.held && !ep.box.Claim() {
		return false
	}
	// From here until Reclaim the claim is the handler's.
	ep.held = false
	// The message's credit is given back here rather than by serve: while
	// the reader keeps the lane, in a batch (heldCredit).
	//
	// The user lane's RunClaimed runs the handler for *in, passed by
	// pointer: not copied through the mailbox's handler, nor into the
	// endpoint (a copy, and clearing it after, cost write barriers per
	// message while the collector runs). The function literal does not
	// escape, so neither does in: it stays on the reader's stack.
	credit := int64(in.credit)
	in.credit = 0
	ran := ep.box.RunClaimed(func() {
		ep.beforeInline()
		ep.serve(in, ep.errorEvent)
	})
	if !ran {
		// Posted meanwhile: in waits its turn behind it.
		in.credit = uint32(credit)
		ep.box.Unclaim()
		return false
	}
	if !ep.link.Reclaim(ep.rtoken) {
		// The reader role went to another goroutine, and the reader's
		// state with it.
		if credit > 0 {
			ep.credit.release(int(credit))
		}
		ep.box.Unclaim()
		return true
	}
	ep.held = true // still the reader: keep the lane for the next frame
	if credit > 0 {
		hc := &ep.heldCredit
		hc.frames++
		hc.bytes += credit
		if hc.frames >= maxHeldCredit {
			ep.releaseHeldCredit()
		}
	}
	return true
}

// maxHeldCredit bounds the credited messages handled under a kept lane
// whose credit the reader holds back, to give it back in one go.
const maxHeldCredit = 64

// heldCredit is the credit of messages the reader handled inline and has
// not given back yet (the reader's).
type heldCredit struct{ frames, bytes int64 }

// releaseHeldCredit gives back the credit the reader holds.
func (ep *endpoint) releaseHeldCredit() {
	if hc := &ep.heldCredit; hc.frames > 0 {
		ep.credit.releaseN(hc.frames, hc.bytes)
		*hc = heldCredit{}
	}
}

// unhold gives back the lane the reader kept between frames, and the
// credit of the messages it handled under it. It runs on the reader.
func (ep *endpoint) unhold() {
	ep.releaseHeldCredit()
	if ep.held {
		ep.held = false
		ep.box.Unclaim()
	}
}

// readIdle is the link's WithReadIdle callback: the reader has dispatched
// every whole frame it read and is about to wait for more (or the link
// ended). It counts the read's admitted credit (inboxCredit.publish),
// gives the lane back and posts the read's batch (batch.go).
func (ep *endpoint) readIdle() {
	ep.credit.publish()
	ep.unhold()
	ep.flushBatch()
}
