package link

import (
	"google.golang.org/protobuf/proto"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// SendBorrowedNow is SendBorrowed for a sender that would otherwise wake
// the writer goroutine for every frame (the primary's round-robin accept
// loop, handing off connections): when nothing is queued and no write is
// under way, it sends the frame itself, with one non-blocking sendmsg(2) on
// the caller's goroutine. That saves a goroutine hand-off per frame, and
// often a thread wake-up. What the socket does not take at once is left
// to the writer, ahead of any frame queued later, so frames keep their
// order and the call never waits for the peer to read: nothing at all
// (the socket is full) and the frame is queued as SendBorrowed queues it;
// a part, and the rest (bytes only: the descriptors travel with the first
// byte) is written by the writer before anything else. Otherwise
// (something queued, a write under way) it queues the frame as
// SendBorrowed does.
//
// The descriptors are borrowed as with SendBorrowed: the caller keeps them
// and must call Detach before it closes or reuses them. A write error ends
// the link, as it would in the writer; the call then returns nil, as
// SendBorrowed does for a frame the link ends under.
func (l *Link) SendBorrowedNow(h *wire.Header, payload proto.Message, fds []int) error {
	return l.sendNow(h, payload, fds, false)
}

// SendOwnedNow is SendOwned written as SendBorrowedNow writes: on the
// caller's goroutine when the link is idle, else queued. The link owns fds
// from the call on (unless it returns an error) and closes them once sent,
// or when the link ends first.
func (l *Link) SendOwnedNow(h *wire.Header, payload proto.Message, fds []int) error {
	return l.sendNow(h, payload, fds, true)
}

func (l *Link) sendNow(h *wire.Header, payload proto.Message, fds []int, owned bool) error {
	if len(fds) == 0 {
		return l.sendAsync(h, payload, fds, owned)
	}
	h, err := l.sendHeader(h, fds)
	if err != nil {
		return err
	}
	l.mu.Lock()
	off, wasEmpty, err := l.queueLocked(h, payload)
	if err != nil {
		return err
	}
	// The caller may reuse its slice.
	rec := fdFrame{off: off, n: len(l.pending) - off, fds: append([]int(nil), fds...), owned: owned}
	if !wasEmpty || l.writing || l.carry != nil {
		l.pendingFDs = append(l.pendingFDs, rec)
		l.mu.Unlock()
		if wasEmpty {
			l.wakeWriter()
		}
		return nil
	}
	// The frame is alone in the queue and the writer idle: send it here.
	// While writing is set the writer leaves the socket, the queue's
	// buffers and its spare descriptor slice alone; the frame's record is
	// in inflight, where Detach and abort find it, as they find the
	// writer's.
	batch, frames := l.pending, l.pendingFrames
	l.pending, l.pendingFrames = l.spare, 0
	l.spare = nil
	recs := append(l.spareFDs[:0], rec)
	l.spareFDs = nil
	l.inflight = recs
	l.writing = true
	l.mu.Unlock()

	n, err := l.sendmsgNow(batch, &recs[0])

	l.mu.Lock()
	sent := recs[0].sent
	l.inflight = nil
	l.writing = false
	switch {
	case err != nil:
		l.spare = batch[:0]
		if !sent && recs[0].owned {
			closeFDs(recs[0].fds) // owned, or duplicates Detach made
		}
	case !sent:
		// The socket took nothing: the frame goes back to the head of
		// the queue, before what others queued meanwhile, for the
		// writer. (Detach may have given it duplicates meanwhile; they
		// travel with it.)
		q := append(batch, l.pending...)
		r := recs[0]
		r.off = 0
		fdq := append(make([]fdFrame, 0, len(l.pendingFDs)+1), r)
		for _, x := range l.pendingFDs {
			x.off += len(batch)
			fdq = append(fdq, x)
		}
		clear(l.pendingFDs)
		l.spareFDs = l.pendingFDs[:0]
		l.pending, l.pendingFDs, l.pendingFrames = q, fdq, l.pendingFrames+frames
	case n < len(batch):
		l.carry, l.carryBuf, l.carryFrames = batch[n:], batch, frames
	default:
		l.spare = l.recycle(batch)
	}
	if sent || err != nil {
		clear(recs)
		if l.spareFDs == nil {
			l.spareFDs = recs[:0]
		}
	}
	wake := len(l.pending) > 0 || l.carry != nil || l.draining
	l.mu.Unlock()
	if err != nil {
		l.abort(err)
		return nil
	}
	if sent && n == len(batch) {
		l.framesSent.Add(uint64(frames))
	}
	if wake {
		l.wakeWriter()
	}
	return nil
}

// wakeWriter gives the writer goroutine its wake-up token.
func (l *Link) wakeWriter() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}
