//go:build unix

package runtime

import (
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

const (
	// maxHandoffBatch bounds the connections one Handoff message carries
	// (the window bounds it first).
	maxHandoffBatch = 64
	// acceptBatch is how many connections the accept loop takes from the
	// kernel before queueing them.
	acceptBatch = 64
	// rejectPause is how long a worker that refused hand-offs (its listener
	// closing, or its accept queue full) is skipped.
	rejectPause = 5 * time.Millisecond
)

// rrHandle is Node's RoundRobinHandle: the primary owns the listening
// socket and an accept loop, and hands every accepted connection's
// descriptor to the next worker of the handle that has room in its window
// of unacknowledged hand-offs. Connections wait in a bounded queue while
// no worker has room. A worker that refuses hand-offs (its listener is
// closing) or whose link ends before it acknowledges gives them back, and
// they go to another worker: nothing is lost. The primary keeps its own
// copy of each descriptor until the worker acknowledges it.
//
// The hand-off path costs no goroutine and, in steady state, no allocation
// in the primary: raw descriptors from accept4, pooled batches, and
// Handoff requests whose replies complete on the link's reader.
type rrHandle struct {
	handleBase
	sock     *os.File // the listening socket, pollable: its RawConn can wait to read
	rc       syscall.RawConn
	window   int
	maxQueue int
	log      *slog.Logger

	mu         sync.Mutex
	queue      []int // accepted descriptors waiting, from head
	head       int
	list       []*rrMember
	next       int
	closed     bool
	timer      *time.Timer
	timerArmed bool

	space chan struct{} // a token when the queue shrank
	done  chan struct{} // closed by close
}

// rrMember is one worker listener of a round-robin handle.
type rrMember struct {
	m         *membership
	inflight  int   // connections handed and not yet acknowledged
	stopped   bool  // the worker is disconnecting
	gone      bool  // left the handle, or its link ended
	skipUntil int64 // refused hand-offs: skipped until then (unix nanos)
	atLimit   bool  // its last reply refused at its connection limit
}

func newRRHandle(b handleBase, ln net.Listener, window, maxQueue int, log *slog.Logger) (*rrHandle, error) {
	// A net.Listener's RawConn cannot wait for readability; a pollable
	// *os.File on a duplicate of the socket can.
	defer ln.Close()
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return nil, &net.OpError{Op: "listen", Net: b.network, Err: syscall.EINVAL}
	}
	fd, err := dupSocket(sc)
	if err != nil {
		return nil, err
	}
	sock := os.NewFile(uintptr(fd), "herd-listener")
	rc, err := sock.SyscallConn()
	if err != nil {
		sock.Close()
		return nil, err
	}
	h := &rrHandle{
		handleBase: b, sock: sock, rc: rc, window: max(window, 1), maxQueue: max(maxQueue, 1), log: log,
		space: make(chan struct{}, 1), done: make(chan struct{}),
	}
	go h.acceptLoop()
	return h, nil
}

// ---- accepting ----

// acceptor holds the accept loop's state so that the RawConn callback is
// bound once.
type acceptor struct {
	buf   []int
	limit int
	err   error
	fn    func(fd uintptr) bool
}

// accept takes connections until the kernel has none (returning false
// makes RawConn.Read wait for readability when none was taken) or the batch
// is full.
func (a *acceptor) accept(fd uintptr) bool {
	for len(a.buf) < a.limit {
		nfd, err := acceptRaw(int(fd))
		switch err {
		case nil:
			a.buf = append(a.buf, nfd)
		case syscall.EINTR, syscall.ECONNABORTED:
		case syscall.EAGAIN:
			return len(a.buf) > 0
		default:
			a.err = err
			return true
		}
	}
	return true
}

func (h *rrHandle) acceptLoop() {
	a := &acceptor{buf: make([]int, 0, acceptBatch)}
	a.fn = a.accept
	var delay time.Duration
	for {
		room := h.waitRoom()
		if room == 0 {
			return
		}
		a.buf, a.limit, a.err = a.buf[:0], min(room, acceptBatch), nil
		err := h.rc.Read(a.fn)
		if len(a.buf) > 0 {
			h.enqueue(a.buf)
		}
		if err != nil {
			return // the handle closed its socket
		}
		if a.err != nil {
			// Out of descriptors or memory: back off, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			h.log.Warn("herd: accept", "handle", h.String(), "error", os.NewSyscallError("accept", a.err), "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-h.done:
				return
			}
			continue
		}
		delay = 0
	}
}

// waitRoom waits until the queue has room and returns how much; 0 once the
// handle is closed.
func (h *rrHandle) waitRoom() int {
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return 0
		}
		room := h.maxQueue - (len(h.queue) - h.head)
		h.mu.Unlock()
		if room > 0 {
			return room
		}
		select {
		case <-h.space:
		case <-h.done:
			return 0
		}
	}
}

func (h *rrHandle) enqueue(fds []int) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		closeRawFDs(fds)
		return
	}
	if h.head > 0 && h.head >= len(h.queue)/2 {
		h.queue = h.queue[:copy(h.queue, h.queue[h.head:])]
		h.head = 0
	}
	h.queue = append(h.queue, fds...)
	h.dispatchLocked()
	h.mu.Unlock()
}

// ---- dispatching ----

func (h *rrHandle) queued() int { return len(h.queue) - h.head }

func (h *rrHandle) popLocked(k int) {
	h.head += k
	if h.head == len(h.queue) {
		h.queue, h.head = h.queue[:0], 0
	}
	select {
	case h.space <- struct{}{}:
	default:
	}
}

// unpopLocked puts fds back at the head of the queue: they have waited
// longest.
func (h *rrHandle) unpopLocked(fds []int) {
	if h.head >= len(fds) {
		h.head -= len(fds)
		copy(h.queue[h.head:], fds)
		return
	}
	q := make([]int, 0, len(fds)+h.queued())
	q = append(append(q, fds...), h.queue[h.head:]...)
	h.queue, h.head = q, 0
}

// dispatchLocked hands queued connections to workers with room, round
// robin, as many per message as the worker's window allows.
func (h *rrHandle) dispatchLocked() {
	for h.queued() > 0 {
		m := h.pickLocked()
		if m == nil {
			return
		}
		k := min(h.window-m.inflight, h.queued(), maxHandoffBatch)
		b := getBatch()
		b.h, b.m = h, m
		b.fds = append(b.fds[:0], h.queue[h.head:h.head+k]...)
		h.popLocked(k)
		m.inflight += k
		if !h.sendLocked(b) {
			m.inflight -= k
			h.unpopLocked(b.fds)
			b.release()
		}
	}
}

// pickLocked returns the next member with room, or nil.
func (h *rrHandle) pickLocked() *rrMember {
	n := len(h.list)
	var now, soonest int64
	for i := range n {
		j := (h.next + i) % n
		m := h.list[j]
		if m.gone || m.stopped || m.inflight >= h.window {
			continue
		}
		if m.skipUntil != 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if now < m.skipUntil {
				if soonest == 0 || m.skipUntil < soonest {
					soonest = m.skipUntil
				}
				continue
			}
			m.skipUntil = 0
		}
		h.next = (j + 1) % n
		return m
	}
	if soonest != 0 {
		h.armLocked(time.Duration(soonest - now))
	}
	return nil
}

// armLocked dispatches again after d, when skipped workers may take
// connections again.
func (h *rrHandle) armLocked(d time.Duration) {
	if h.timerArmed || h.closed {
		return
	}
	h.timerArmed = true
	if h.timer == nil {
		h.timer = time.AfterFunc(d, h.kick)
	} else {
		h.timer.Reset(d)
	}
}

func (h *rrHandle) kick() {
	h.mu.Lock()
	h.timerArmed = false
	if !h.closed {
		h.dispatchLocked()
	}
	h.mu.Unlock()
}

// sendLocked sends b to its member; false when it could not be sent (the
// member is then marked gone). The link borrows the primary's own copies of
// the descriptors: they stay open until the reply (or the link's end) has
// been handled.
func (h *rrHandle) sendLocked(b *handoffBatch) bool {
	m := b.m
	b.req.ListenerId = m.m.id
	b.req.Count = uint32(len(b.fds))
	called, err := m.m.w.ep.callAsync(controlHandoffProcedure, &b.req, &b.pc, b.fds, true)
	if err != nil && !called {
		m.gone = true
		return false
	}
	return true
}

// handoffBatch is one Handoff in flight: the primary's copies of its
// connections, and the request and reply. Batches are pooled.
type handoffBatch struct {
	h   *rrHandle
	m   *rrMember
	fds []int // the primary's copies, lent to the link
	req herdv1.HandoffRequest
	res herdv1.HandoffResponse
	pc  pendingCall
}

var batchPool sync.Pool

func getBatch() *handoffBatch {
	if b, ok := batchPool.Get().(*handoffBatch); ok {
		return b
	}
	b := &handoffBatch{fds: make([]int, 0, 8)}
	b.pc.res = &b.res
	b.pc.async = b.reply
	return b
}

func (b *handoffBatch) release() {
	b.h, b.m = nil, nil
	b.fds = b.fds[:0]
	batchPool.Put(b)
}

// reply handles the worker's acknowledgement (on the link's reader), or
// the failure of the call (the link ended): the primary closes its copies
// of what the worker took and queues the rest again.
func (b *handoffBatch) reply(err error) {
	h, m := b.h, b.m
	n := len(b.fds)
	took := 0
	if err == nil {
		took = min(int(b.res.GetAccepted()), n)
	}
	closeRawFDs(b.fds[:took])
	back := b.fds[took:]
	h.mu.Lock()
	m.inflight -= n
	switch {
	case err != nil && !m.m.w.IsConnected():
		m.gone = true
	case took < n:
		m.skipUntil = time.Now().UnixNano() + int64(rejectPause)
	}
	if err == nil {
		m.atLimit = b.res.GetAtLimit()
	}
	if h.closed {
		closeRawFDs(back)
	} else {
		if len(back) > 0 && m.atLimit && err == nil && !h.roomElsewhereLocked(m) {
			// Beyond the connection limit of every worker that could take
			// them: closed, as a server at its maxConnections closes them.
			closeRawFDs(back)
			back = nil
		}
		if len(back) > 0 {
			h.unpopLocked(back)
		}
		h.dispatchLocked()
	}
	h.mu.Unlock()
	b.release()
}

// roomElsewhereLocked reports whether a member other than m may take
// connections: one that is not leaving and whose last reply did not refuse
// at its connection limit. A connection refused at the limit thus visits
// each member at most once before it is closed.
func (h *rrHandle) roomElsewhereLocked(m *rrMember) bool {
	for _, x := range h.list {
		if x != m && !x.gone && !x.stopped && !x.atLimit {
			return true
		}
	}
	return false
}

// ---- membership ----

func (h *rrHandle) join(m *membership) ([]int, error) {
	rm := &rrMember{m: m}
	m.rr = rm
	h.mu.Lock()
	h.list = append(h.list, rm)
	h.dispatchLocked()
	h.mu.Unlock()
	return nil, nil
}

func (h *rrHandle) leave(m *membership, returned []*os.File) {
	var fds []int
	for _, f := range returned {
		if fd, err := dupConn(f); err == nil {
			fds = append(fds, fd)
		}
		f.Close()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	rm := m.rr
	rm.gone = true
	for i, x := range h.list {
		if x == rm {
			h.list = append(h.list[:i], h.list[i+1:]...)
			if h.next > i {
				h.next--
			}
			break
		}
	}
	if n := len(h.list); n == 0 || h.next >= n {
		h.next = 0
	}
	if h.closed {
		closeRawFDs(fds)
		return
	}
	if len(fds) > 0 {
		h.unpopLocked(fds)
	}
	h.dispatchLocked()
}

func (h *rrHandle) stop(m *membership) {
	h.mu.Lock()
	m.rr.stopped = true
	h.mu.Unlock()
}

func (h *rrHandle) members() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.list)
}

// close closes the queued connections and the socket (Node: when the last
// worker leaves).
func (h *rrHandle) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	closeRawFDs(h.queue[h.head:])
	h.queue, h.head = nil, 0
	if h.timer != nil {
		h.timer.Stop()
	}
	h.mu.Unlock()
	close(h.done)
	h.sock.Close()
	h.removeSocket()
}

func closeRawFDs(fds []int) {
	for _, fd := range fds {
		closeFD(fd)
	}
}
