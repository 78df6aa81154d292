package runtime

import (
	"sync/atomic"
	"time"

	"github.com/herd-go/herd/actor"
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

// The reader runs a read's messages in one go.
//
// Taking the lane for one inline handler and giving it back costs a few
// atomic operations, and so does releasing the frame to the link for it
// and taking the reader role back after (link.Release, link.Reclaim): in a
// flood of small messages that is a good part of each one's cost. So the
// reader claims the lane (actor.Mailbox.Claim, ep.held) at the first user
// message of a read that finds it idle, and collects that message and the
// next ones of the same read, decoded, in its batch (ep.batch, marked
// ep.inlineBatch); once the read holds no further whole frame
// (link.FrameBuffered), or the batch is full, it runs the whole batch
// itself (runInline), in order, under one Release and one Reclaim, and
// keeps the lane for the next read's messages. The lane's order is the
// same as with one TryHandle per message: nothing runs on the lane while
// the reader holds it; a batch runs only if nothing was posted to the lane
// since the claim (RunClaimed), else it is posted after what was, as the
// read's batch (batch.go); what is posted while a batch runs waits for
// the whole batch (actor.Mailbox.RunHeld), as it would behind a batch
// posted before it. Before the reader handles anything other than a user
// message, or waits for the socket, it posts a batch it has not run, and
// gives the lane back (flushBatch, unhold).
//
// While a batch runs, the claim is the batch's, not the reader's: if the
// reader role is handed to a new goroutine meanwhile (link.Promote: a
// handler waits for the peer, or the watchdog finds the batch still
// running after inlineGrace), the new reader does not hold the lane, and
// collects its messages in a batch of its own; the old goroutine runs the
// rest of its batch, then gives the lane back (link.Reclaim tells which
// happened), and what the new reader posted meanwhile runs after it.

// runInline runs the reader's batch (ep.inlineBatch) on the reader, under
// its claim of the user lane. It runs in onFrame, once the batch's last
// message is decoded: link.Release then hands the link the frame, and the
// role of reader, for the whole batch.
func (ep *endpoint) runInline() {
	run := ep.batch
	// A new reader (link.Promote) collects its batch in another slice.
	ep.batch, ep.spare = ep.spare[:0], nil
	ep.inlineBatch = false
	ep.held = false // from here until Reclaim the claim is the batch's
	// The messages' credit is given back here rather than by serve: in
	// one go, and while the reader keeps the lane, later still
	// (heldCredit). The handlers get their messages by pointer: not
	// copied through the mailbox's handler (copies, and clearing them
	// after, cost write barriers per message while the collector runs).
	// The function literals do not escape.
	var frames, bytes int64
	var token uint64
	i := 0
	for ; i < len(run); i++ {
		in := &run[i]
		c := in.credit
		in.credit = 0
		var ran bool
		if i == 0 {
			ran = ep.box.RunClaimed(func() {
				token = ep.link.Release()
				ep.rwatch.start()
				ep.serve(in, ep.errorEvent)
			})
		} else {
			ran = ep.box.RunClaimed(func() { ep.serve(in, ep.errorEvent) })
		}
		if !ran {
			in.credit = c
			break
		}
		if c > 0 {
			frames++
			bytes += int64(c)
		}
	}
	switch {
	case i == 0:
		// Posted meanwhile: the batch waits its turn behind it.
		ep.box.Unclaim()
		ep.batch, ep.spare = run, ep.batch
		ep.flushBatch()
		return
	case i < len(run) && ep.link.Reclaim(token):
		// Posted while the batch ran (an event of one of its handlers,
		// say), or the lane closed: the rest waits behind it, posted
		// by the reader, which it still is.
		ep.box.Unclaim()
		ep.batch = append(ep.batch, run[i:]...)
		ep.giveBackInline(run, frames, bytes)
		ep.flushBatch()
		return
	case i < len(run):
		// Promoted: what was posted may be the new reader's, which
		// must wait for the rest of this batch.
		ep.runHeld(run[i:], &frames, &bytes)
	case ep.link.Reclaim(token):
		ep.held = true // still the reader: keep the lane for the next frames
		clear(run)     // keep no request alive
		ep.spare = run[:0]
		if frames > 0 {
			hc := &ep.heldCredit
			hc.frames += frames
			hc.bytes += bytes
			if hc.frames >= maxHeldCredit {
				ep.releaseHeldCredit()
			}
		}
		return
	}
	// The reader role went to another goroutine, and the reader's state
	// with it.
	ep.box.Unclaim()
	if frames > 0 {
		ep.credit.releaseN(frames, bytes)
	}
	clear(run)
}

// runHeld runs the rest of a batch whose goroutine is no longer the
// reader, although messages were posted since (actor.Mailbox.RunHeld),
// and releases it if the lane closed. It adds the credit of the messages
// it ran to frames and bytes.
func (ep *endpoint) runHeld(rest []inbound, frames, bytes *int64) {
	for i := range rest {
		in := &rest[i]
		c := in.credit
		in.credit = 0
		if !ep.box.RunHeld(func() { ep.serve(in, ep.errorEvent) }) {
			in.credit = c
			for j := i; j < len(rest); j++ {
				ep.postFailed(&rest[j], rest[j].procedure(), actor.ErrMailboxClosed)
			}
			return
		}
		if c > 0 {
			*frames++
			*bytes += int64(c)
		}
	}
}

// giveBackInline, on the reader, ends a batch it ran in part (the rest is
// in ep.batch): run's buffer becomes the spare one, and the credit of the
// messages that ran is given back.
func (ep *endpoint) giveBackInline(run []inbound, frames, bytes int64) {
	clear(run)
	ep.spare = run[:0]
	if frames > 0 {
		ep.credit.releaseN(frames, bytes)
	}
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
