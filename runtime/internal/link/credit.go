package link

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/herd-go/herd/runtime/internal/wire"
)

// Credit-based flow control, the sending side.
//
// A link built WithCredit sends a *credited* frame (a request: no ReplyTo,
// no wire.FlagSystem) only within the credit its peer has granted, in
// frames and in bytes (whole frames, prefix included, as wire.Envelope.Len
// counts them on the other end). Control frames (replies, cancels, frames
// flagged wire.FlagSystem) are never credited: they always go, so a
// receiver whose handler is busy still gets the replies to its own calls,
// hand-offs and disconnects, and its reader never has to stop.
//
// The peer's first grant is its window: the most it holds at once. A frame
// larger than the window in bytes still goes when nothing is outstanding
// (the available credit is the whole window), so any frame the size limit
// allows can be delivered. A credited Send that finds too little credit
// (or other senders already waiting) waits, first come first served, until
// a grant covers it, its context ends or the link ends; nothing is queued
// meanwhile, so whatever a Send returned nil for is on its way to a
// receiver that has room for it. Each time a sender comes to the head of
// the waiting line the link calls the function given to WithCredit, so
// that the receiver, which gives credit back in batches, knows to give back
// everything once it has handled what it holds. That call is made once per
// waiting sender, never in answer to a grant: a peer cannot make this end
// write by sending grants.

// WithCredit turns on flow control of credited frames (see Link.Grant).
// onWait, if not nil, is called (outside the link's lock) each time a
// credited Send comes to the head of the senders waiting for credit; it
// must not block.
func WithCredit(onWait func()) Option {
	return optionFunc(func(c *config) {
		c.credit = true
		c.onCreditWait = onWait
	})
}

// creditWaiter is a credited Send waiting for credit. They are pooled: a
// sender held back by flow control allocates nothing.
type creditWaiter struct {
	n       int64         // the frame's size in bytes
	ch      chan struct{} // gets a token, under Link.mu, once granted or failed
	granted bool          // the credit for n was reserved for this sender
	err     error         // the link ended first
}

var creditWaiters = sync.Pool{New: func() any { return &creditWaiter{ch: make(chan struct{}, 1)} }}

// creditState is a link's credit, guarded by Link.mu.
type creditState struct {
	known  bool  // the first grant (the window) arrived
	window int64 // bytes of the first grant
	frames int64 // frames that may still be sent
	bytes  int64 // bytes that may still be sent; negative after an oversize frame
	q      []*creditWaiter
	asked  *creditWaiter // the head of q that onCreditWait was called for
}

// credited reports whether h is a credited frame on this link.
func (l *Link) credited(h *wire.Header) bool {
	return l.cfg.credit && h.ReplyTo == 0 && h.Flags&wire.FlagSystem == 0
}

// fitsLocked reports whether a frame of n bytes may be sent now.
func (c *creditState) fitsLocked(n int64) bool {
	return c.known && c.frames >= 1 && (n <= c.bytes || c.bytes >= c.window)
}

// takeCreditLocked reserves credit for a frame of n bytes if no sender is
// waiting before it and the credit covers it.
func (l *Link) takeCreditLocked(n int64) bool {
	c := &l.credit
	if len(c.q) > 0 || !c.fitsLocked(n) {
		return false
	}
	c.frames--
	c.bytes -= n
	return true
}

// serveLocked hands credit to waiting senders, in order, while it covers
// them. It reports whether a sender is waiting at the head of the line that
// the peer has not been told about (the caller then calls onCreditWait).
func (l *Link) serveLocked() (ask bool) {
	c := &l.credit
	for len(c.q) > 0 && c.fitsLocked(c.q[0].n) {
		w := c.q[0]
		// Shift rather than reslice, so the queue keeps its array: a
		// sender that waits then allocates nothing.
		k := copy(c.q, c.q[1:])
		c.q[k] = nil
		c.q = c.q[:k]
		c.frames--
		c.bytes -= w.n
		w.granted = true
		w.ch <- struct{}{}
	}
	if len(c.q) == 0 {
		c.asked = nil
		return false
	}
	if c.asked == c.q[0] {
		return false
	}
	c.asked = c.q[0]
	return true
}

// Grant adds credit granted by the peer: frames and bytes it has room for,
// on top of what it granted before. The first grant is the peer's window.
// Waiting senders are served in order. Grant is a no-op on a link without
// WithCredit.
func (l *Link) Grant(frames, bytes int64) {
	if !l.cfg.credit {
		return
	}
	l.mu.Lock()
	c := &l.credit
	if !c.known {
		c.known, c.window = true, bytes
	}
	c.frames += frames
	c.bytes += bytes
	ask := l.serveLocked()
	l.mu.Unlock()
	if ask && l.cfg.onCreditWait != nil {
		l.cfg.onCreditWait()
	}
}

// waitCredit waits for credit for a credited frame of n bytes that did not
// fit. It is called with l.mu held and returns with it released; on
// success the credit is reserved for the caller.
func (l *Link) waitCredit(ctx context.Context, n int64) error {
	w := creditWaiters.Get().(*creditWaiter)
	w.n = n
	c := &l.credit
	c.q = append(c.q, w)
	ask := l.serveLocked() // w cannot be served: it did not fit, or others wait
	l.mu.Unlock()
	if ask && l.cfg.onCreditWait != nil {
		l.cfg.onCreditWait()
	}
	// Credit comes through the reader: it must not be this goroutine.
	l.Promote()
	got := false // the token was taken
	select {
	case <-w.ch:
		got = true
	case <-ctx.Done():
	}
	l.mu.Lock()
	if !got && (w.granted || w.err != nil) {
		<-w.ch // sent under l.mu, before this lock
	}
	err := w.err
	switch {
	case err != nil:
		l.mu.Unlock()
		putCreditWaiter(w)
		return err
	case !got && ctx.Err() != nil:
		// Give back what was reserved, or leave the queue; either may let
		// the next sender go.
		if w.granted {
			c.frames++
			c.bytes += n
		} else if i := slices.Index(c.q, w); i >= 0 {
			c.q = slices.Delete(c.q, i, i+1)
		}
		ask := l.serveLocked()
		l.mu.Unlock()
		putCreditWaiter(w)
		if ask && l.cfg.onCreditWait != nil {
			l.cfg.onCreditWait()
		}
		return fmt.Errorf("herd: link send: waiting for the peer's credit: %w", ctx.Err())
	}
	l.mu.Unlock()
	putCreditWaiter(w)
	return nil
}

func putCreditWaiter(w *creditWaiter) {
	w.n, w.granted, w.err = 0, false, nil
	creditWaiters.Put(w)
}

// returnCreditLocked gives back credit reserved for a frame that was not
// sent after all.
func (l *Link) returnCreditLocked(n int64) {
	l.credit.frames++
	l.credit.bytes += n
	l.serveLocked()
}

// failCreditLocked fails every sender waiting for credit with err: the link
// is ending.
func (l *Link) failCreditLocked(err error) {
	for _, w := range l.credit.q {
		w.err = err
		w.ch <- struct{}{}
	}
	clear(l.credit.q)
	l.credit.q, l.credit.asked = l.credit.q[:0], nil
}
