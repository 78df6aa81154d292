//go:build unix

package runtime

import (
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// maxAdoptQueue bounds the adopted connections a reuseport listener holds
// that its server has not accepted yet; the primary offers the rest to
// another worker.
const maxAdoptQueue = 256

// aLongTimeAgo is a deadline in the past: it makes a blocked Accept return.
var aLongTimeAgo = time.Unix(1, 0)

// deadliner is a listener whose Accept can be interrupted with a deadline
// (*net.TCPListener).
type deadliner interface {
	net.Listener
	SetDeadline(t time.Time) error
}

// adoptListener is a worker's listener on its own SO_REUSEPORT socket that
// also serves the connections the primary rescued from the socket of
// another worker of the handle that died or left (Adopt). Accept returns
// adopted connections first, then waits on the socket; an adoption wakes
// an Accept blocked on the socket by setting a deadline in the past (the
// listener's deadline is not the user's: the wrapper exposes none).
type adoptListener struct {
	deadliner

	mu      sync.Mutex
	queue   []net.Conn // adopted, visible to Accept, from the first
	pending []net.Conn // taken by the Adopt being answered, not yet visible
	woken   bool       // the deadline is in the past
	closed  bool
}

// adoptable wraps a reuseport TCP listener so that it can adopt
// connections; any other listener is returned as it is.
func adoptable(e *listenEntry, ln net.Listener) net.Listener {
	d, ok := ln.(deadliner)
	if !ok || e.pol != SchedReusePort {
		return ln
	}
	return &adoptListener{deadliner: d}
}

// Accept returns the next adopted connection, or else the next one from
// the socket.
func (l *adoptListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
		}
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue[0] = nil
			l.queue = l.queue[1:]
			l.rearmLocked()
			l.mu.Unlock()
			return c, nil
		}
		l.mu.Unlock()
		c, err := l.deadliner.Accept()
		if err == nil {
			return c, nil
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, err
		}
		// Woken by an adoption: take it, or wait again.
		l.mu.Lock()
		if len(l.queue) == 0 {
			l.woken = false
			_ = l.deadliner.SetDeadline(time.Time{})
		}
		l.mu.Unlock()
	}
}

// rearmLocked clears the past deadline once no adopted connection waits,
// so that Accept waits on the socket again.
func (l *adoptListener) rearmLocked() {
	if l.woken && len(l.queue) == 0 {
		l.woken = false
		_ = l.deadliner.SetDeadline(time.Time{})
	}
}

// Close closes the socket. Adopted connections not accepted yet stay for
// leftovers.
func (l *adoptListener) Close() error {
	err := l.deadliner.Close()
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return err
}

// leftovers takes the adopted connections the server did not accept, once
// the listener is closed: they go back to the primary with CloseListener.
func (l *adoptListener) leftovers() []net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		return nil
	}
	back := append(l.queue, l.pending...)
	l.queue, l.pending = nil, nil
	return back
}

// stage turns rescued descriptors into connections, as many as the queue
// has room for, from the first, and holds them as pending until publish.
// It closes every file and returns how many it took.
func (l *adoptListener) stage(files []*os.File) int {
	defer closeFiles(files)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0
	}
	room := maxAdoptQueue - len(l.queue) - len(l.pending)
	took := 0
	for _, f := range files[:max(min(room, len(files)), 0)] {
		c, err := net.FileConn(f)
		if err != nil {
			break // the rest go back to the primary
		}
		l.pending = append(l.pending, c)
		took++
	}
	return took
}

// publish makes the pending connections visible to Accept, once the Adopt
// reply that took them is queued on the link, and wakes an Accept blocked
// on the socket. When the link has ended the reply may not have reached
// the primary, which then gives its own copies to another worker: the
// pending connections are closed instead, so that no connection is served
// twice.
func (l *adoptListener) publish(linkClosed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.pending) == 0 || l.closed {
		return // a closed listener returns them with leftovers
	}
	select {
	case <-linkClosed:
		for _, c := range l.pending {
			c.Close()
		}
		l.pending = nil
		return
	default:
	}
	l.queue = append(l.queue, l.pending...)
	clear(l.pending)
	l.pending = l.pending[:0]
	if !l.woken {
		l.woken = true
		_ = l.deadliner.SetDeadline(aLongTimeAgo)
	}
}

// adopt serves the primary's Adopt, on the control lane: the listener takes the
// connections into its queue, and they become visible to Accept once the
// reply is queued.
func (s *Self) adopt(ctx context.Context, req *herdv1.AdoptRequest) *Response[herdv1.AdoptResponse] {
	files := FilesFromContext(ctx)
	s.ls.mu.Lock()
	cl := s.ls.open[req.GetListenerId()]
	s.ls.mu.Unlock()
	var l *adoptListener
	if sl, ok := cl.(*sharedListener); ok {
		l = adoptOf(sl.Listener)
	}
	if l == nil {
		closeFiles(files)
		return NewResponse(&herdv1.AdoptResponse{})
	}
	took := l.stage(files)
	res := NewResponse(&herdv1.AdoptResponse{Accepted: uint32(took)})
	if took > 0 {
		res.AfterReply(func() { l.publish(s.ep.closed) })
	}
	return res
}

// adoptLeftovers returns the adopted connections a closed listener's
// server did not accept (none for other listeners).
func adoptLeftovers(ln net.Listener) []net.Conn {
	if l := adoptOf(ln); l != nil {
		return l.leftovers()
	}
	return nil
}

// adoptOf returns the adoptListener of a worker's listener: ln itself, or
// the one inside its accept-ahead bound and its connection limit
// (WithAcceptAhead, WithMaxConnections); nil if none.
func adoptOf(ln net.Listener) *adoptListener {
	if al, ok := ln.(*aheadListener); ok {
		ln = al.Listener
	}
	if ll, ok := ln.(*limitListener); ok {
		ln = ll.Listener
	}
	l, _ := ln.(*adoptListener)
	return l
}
