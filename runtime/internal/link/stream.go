package link

import "time"

// Streaming: a sender that outpaces the writer writes its own batches.
//
// Send only queues a frame, and wakes the writer goroutine when the queue
// was empty. That suits a sender that sends now and then: the frame goes at
// once, one thread wake-up later. A sender flooding the link with small
// frames (a worker streaming one-way messages) made the writer a second
// busy thread, woken again for the first frame after each of its writes,
// and on a machine whose CPUs are taken (the receiving process holds one of
// two) each wake-up waited for a CPU: the writer sat runnable for as long
// as it ran, the sender queued behind it on the same CPU, the link's mutex
// went back and forth between them, and the peer's reader found the socket
// empty (measured on 2 vCPUs: the sender runnable but not running half the
// time, the writer runnable 47 % of the time).
//
// So when a plain Send (no descriptors, not SendDirect) finds streamBatch
// bytes queued that the writer has not taken although nothing is being
// written, the writer is behind: the sender writes the queue itself, on its
// own goroutine, with non-blocking writes (writeNow; what the socket does
// not take goes to the writer), and the link is streaming. While it
// streams, the first frame queued after a write does not wake the writer:
// the sender's next batch carries it. Nothing waits unboundedly for a next
// batch that may never come:
//
//   - the linger timer, armed when such a frame is queued, wakes the writer
//     after lingerDelay (and ends streaming): the last frames of a burst
//     reach the socket at most about that late (Go's timers are coarser
//     while the process is otherwise idle: up to about a millisecond);
//   - a frame of any other kind (SendDirect, descriptors, SendNow, SendSync,
//     SendOwned, SendBorrowed) queued behind such frames wakes the writer,
//     so it is never delayed by the stream;
//   - a sender about to wait (for the peer's credit, or for room in the
//     write queue) writes the queue first, or wakes the writer: the peer
//     grants credit for what it received;
//   - Shutdown wakes the writer, which drains the queue.
//
// A sender that does not outpace the writer never streams: the writer takes
// the queue before it reaches streamBatch.

const (
	// streamBatch is the queue size at which a sender writes the queue
	// itself when the writer has not taken it: one write per 64 KiB, the
	// peer's read buffer.
	streamBatch = 64 << 10
	// lingerDelay bounds how long a streaming sender's last frames wait
	// for its next batch before the writer is woken for them.
	lingerDelay = 500 * time.Microsecond
)

// streamLocked handles a frame without descriptors that Send (not
// SendDirect) has just queued, with l.mu held; wasEmpty says whether the
// queue was empty before it. It reports whether it took care of the frame,
// and then l.mu is released (the frame is written, or waits for the
// sender's next batch); on false the caller goes on as for any frame.
func (l *Link) streamLocked(wasEmpty bool) bool {
	if len(l.pending) >= streamBatch && !l.writing && l.carry == nil && len(l.pendingFDs) == 0 {
		// The writer has not taken a whole batch although nothing is
		// being written: it is behind. Write the batch here.
		l.streaming, l.lingering = true, false
		l.writeNow(nil, 0) // unlocks l.mu
		return true
	}
	if !l.streaming {
		return false
	}
	switch {
	case wasEmpty:
		// The first frame after a write: it waits for the next batch,
		// or the timer.
		l.lingering = true
		if l.linger == nil {
			l.linger = time.AfterFunc(l.cfg.lingerDelay, l.lingerFire)
		} else {
			l.linger.Reset(l.cfg.lingerDelay)
		}
	case !l.lingering:
		// Queued behind frames the writer was woken for (the caller
		// wakes it only for an empty queue): the writer takes it with
		// them.
	}
	l.mu.Unlock()
	return true
}

// endLingerLocked wakes the writer, with l.mu held, for frames queued while
// streaming that wait for the sender's next batch, if any: a frame of
// another kind is queued behind them, or a sender is about to wait.
func (l *Link) endLingerLocked() {
	if l.lingering {
		l.lingering = false
		l.wakeWriter()
	}
}

// lingerFire is the linger timer's function: the streaming sender sent no
// next batch in time; the writer takes what it queued, and the link stops
// streaming until the writer falls behind again.
func (l *Link) lingerFire() {
	l.mu.Lock()
	l.streaming = false
	l.endLingerLocked()
	l.mu.Unlock()
}

// stopLinger stops the linger timer for good (the link has ended).
func (l *Link) stopLinger() {
	l.mu.Lock()
	if l.linger != nil {
		l.linger.Stop()
	}
	l.streaming, l.lingering = false, false
	l.mu.Unlock()
}
