//go:build linux || darwin

package link

import (
	"errors"
	goruntime "runtime"
	"time"
)

// takeRole is called by the reader goroutine before it reads, from its
// RawConn.Read callback: true when it holds the reader role (it did, or
// took it from rtIdle), false when a caller holds it (and the goroutine
// is to wait for the socket again).
func (l *Link) takeRole() bool {
	for {
		switch s := l.rtok.Load(); s {
		case rtBusy:
			return true
		case rtIdle:
			if l.rtok.CompareAndSwap(rtIdle, rtBusy) {
				return true
			}
		default:
			if s&rtEdge != 0 || l.rtok.CompareAndSwap(s, s|rtEdge) {
				return false
			}
		}
	}
}

// awaitRole is called by the reader goroutine once the link has ended,
// before it closes the descriptors it holds: it waits for a caller that
// holds the role to give it back. A caller reads for a bounded time, and
// stops at once when the link has ended.
func (l *Link) awaitRole() {
	for {
		switch s := l.rtok.Load(); {
		case s == rtBusy:
			return
		case s == rtIdle:
			if l.rtok.CompareAndSwap(rtIdle, rtBusy) {
				return
			}
		default:
			goruntime.Gosched()
		}
	}
}

// ReadUntil lets the calling goroutine, which waits for something that
// frames from the peer will bring (a call's reply), read the socket
// itself instead of sleeping until the reader goroutine is woken: if the
// reader goroutine is waiting for the socket, the caller takes the
// reader role and reads and dispatches frames, calling the handler on its
// own goroutine, until done reports true or spin has passed (trying
// non-blocking reads, and yielding its P between tries), and hands the
// role back. It reports whether done reported true, and whether
// the caller read (held the role): it does not when the reader goroutine
// is busy, which then delivers what comes, as usual.
//
// done is called on the caller's goroutine between reads, and must be
// cheap. A link error found by the caller ends the link, as it would on
// the reader goroutine.
func (l *Link) ReadUntil(done func() bool, spin time.Duration) (ok, read bool) {
	if done() {
		return true, false
	}
	if !l.rtok.CompareAndSwap(rtIdle, rtCaller) {
		return false, false
	}
	st := l.rstate.Load()
	var err error
	// The deadline holds also while frames come: a caller reads for
	// at most spin (plus a frame's dispatch), however busy the peer.
	deadline := time.Now().Add(spin)
	for err == nil && !l.aborted.Load() {
		var got bool
		if got, err = l.tryRead(); err != nil || !got {
			if err == nil && time.Now().Before(deadline) {
				goruntime.Gosched()
				continue
			}
			break
		}
		if st, err = l.dispatchAll(st); err == nil && done() {
			ok = true
			break
		}
		if !time.Now().Before(deadline) {
			break
		}
	}
	// Give the role back; a readiness the reader goroutine saw meanwhile
	// may announce bytes nobody has read: read until the socket is empty,
	// or, when the peer keeps it full, leave the rest to the reader
	// goroutine and wake it (kickReader). The reader goroutine reads next
	// into the buffer as the caller leaves it: with room (makeRoom).
	if err == nil {
		l.makeRoom()
	}
	for reads := 0; err == nil && !l.rtok.CompareAndSwap(rtCaller, rtIdle); {
		if reads >= maxHandBackReads {
			l.rtok.Store(rtIdle)
			l.kickReader()
			break
		}
		l.rtok.Store(rtCaller)
		for err == nil && !l.aborted.Load() && reads < maxHandBackReads {
			var got bool
			if got, err = l.tryRead(); err != nil || !got {
				break
			}
			reads++
			st, err = l.dispatchAll(st)
		}
		if l.aborted.Load() && err == nil {
			err = ErrLinkClosed
		}
		if err == nil {
			l.makeRoom()
		}
	}
	if err != nil {
		// As the reader goroutine would: the link ends, and the reader
		// goroutine, woken by the socket's close, finds the role free.
		l.abort(err)
		l.rtok.Store(rtIdle)
		return done(), true
	}
	return ok || done(), true
}

// maxHandBackReads bounds the reads a caller makes while it gives the role
// back: a peer that keeps the socket full cannot keep a caller reading
// (its call may be long over).
const maxHandBackReads = 8

// kickReader wakes the reader goroutine from its wait for the socket,
// where a readiness it already saw (while a caller read) will not wake it
// again: a read deadline in the past ends the wait, and fill, finding the
// link not ended, clears the deadline and waits again, taking the role
// first.
func (l *Link) kickReader() {
	l.conn.SetReadDeadline(time.Unix(1, 0))
}

// tryRead makes room in the read buffer and tries one non-blocking
// recvmsg on the caller's goroutine: true when it read something (or the
// stream ended, which received reports as an error).
func (l *Link) tryRead() (bool, error) {
	l.makeRoom()
	if l.w == len(l.rbuf) {
		return false, errInternalFull
	}
	l.rerr, l.rgot = nil, false
	if err := l.rc.Control(l.tryReadFn); err != nil {
		// Closed under the caller: the link has ended.
		return false, ErrLinkClosed
	}
	if !l.rgot {
		return false, nil
	}
	return true, l.received()
}

// tryReadCallback is tryRead's RawConn.Control callback: one recvmsg,
// which on the link's non-blocking socket never waits. Control, unlike
// Read, does not take the descriptor's read lock, which the reader
// goroutine holds while it waits for the socket.
func (l *Link) tryReadCallback(fd uintptr) {
	l.rgot = l.recvOnce(fd)
}

// errInternalFull: makeRoom always leaves room in the read buffer, and a
// zero-length read would look like the end of the stream.
var errInternalFull = errors.New("herd: link: internal error: read buffer full")
