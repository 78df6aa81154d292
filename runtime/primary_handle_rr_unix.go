//go:build unix

package runtime

import (
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

const (
	// maxHandoffBatch bounds the connections one Handoff message carries
	// (a worker's credit and the window bound it first).
	maxHandoffBatch = 64
	// busyBatch is the hand-off batch of a busy worker: one that holds at
	// least this many connections handed and not yet reported (so has
	// work queued for a while) is handed more only once it asked for this
	// many, in one message, instead of one per report (each of its Accept
	// calls reports one connection and asks for one more). A worker that
	// holds fewer is handed what it asks for at once, so one that runs low
	// never waits, and an idle or lightly loaded worker (holding one or
	// two) sees no change. With the default window (16) a busy worker gets
	// about four connections per message: fewer sendmsg calls in the
	// primary and fewer wake-ups of the worker's link reader.
	busyBatch = 4
	// acceptBatch is how many connections the accept loop takes from the
	// kernel before queueing them.
	acceptBatch = 64
	// maxCredit bounds the credit a worker can accumulate (a worker asks
	// for one per waiting Accept call: far fewer).
	maxCredit = 1 << 16
	// rejectPause is how long a worker that gave connections back (at its
	// connection limit, or out of descriptors) is skipped, so that a
	// connection does not bounce between it and the primary.
	rejectPause = 5 * time.Millisecond
	// maxServed bounds, per worker listener, the places (accepted
	// connections) the primary keeps track of from the oldest it still
	// holds a copy of: the copies of accepted connections that the worker
	// has not reported taken yet (rrMember.served). A connection that
	// falls out of that span (its server has not used it while maxServed
	// later ones were accepted: an idle client) has its copy closed, and
	// is lost with the worker, as every accepted connection was before the
	// primary kept them. A worker thus holds at most window + maxServed of
	// the primary's descriptors per listener, whatever it reports.
	maxServed = 128
	// maxOwed bounds the turns a member passed over for want of credit is
	// owed (see pickLocked): a worker whose reports arrive late for a while
	// (its link's reader in the primary not scheduled, on a loaded
	// machine) gets them back, and a worker that stops asking for a while
	// gets at most this many extra connections when it asks again, one per
	// credit.
	maxOwed = 64
)

// rrHandle is Node's RoundRobinHandle: the primary owns the listening
// socket and an accept loop, and hands every accepted connection's
// descriptor to the next worker of the handle that asks for one. Workers
// ask with credits (see rrListener): one per Accept call waiting, so a
// worker that stops accepting is handed nothing more, and several
// connections travel in one message to a worker with several credits.
// Connections wait in a bounded queue while no worker asks.
//
// The primary keeps its own copy of each connection it hands off (the
// descriptor accept4 returned, which is also the one the link sends) until
// the worker reports that its server accepted it. A worker that dies,
// closes its listener or gives connections back before that loses
// nothing: the primary hands its copies to another worker (those of a
// dead worker that reports lazily, lazyAcceptReports, once the kernel
// says nobody used them). At most window
// connections are handed and unaccepted at one worker, whatever it asked.
//
// It keeps its copy of an accepted TCP connection too, until the worker
// reports that its server used it (AcceptedRequest.taken): when the
// worker has died, each accepted connection it had not used, as the kernel
// tells (nothing read from it, nothing written), goes to another worker
// (rescueAfterExit).
//
// The hand-off path costs no goroutine and, in steady state, no allocation
// in the primary beyond the link's copy of each frame's descriptor list:
// raw descriptors from accept4, sent as they are (no duplicate), closed
// once when the worker reports them, and reports handled on the link's
// reader.
type rrHandle struct {
	handleBase
	sock     *os.File // the listening socket, pollable: its RawConn can wait to read
	rc       syscall.RawConn
	window   int
	maxQueue int
	log      *slog.Logger

	// noRescue (WithHandoffWithoutRescue, set before any member joins):
	// the link closes each descriptor once it is sent, and the primary
	// keeps no copy to hand to another worker.
	noRescue bool

	mu         sync.Mutex
	queue      []int // accepted descriptors waiting, from head
	head       int
	list       []*rrMember
	next       int
	closed     bool
	timer      *time.Timer
	timerArmed bool
	req        herdv1.HandoffRequest // sendLocked's, reused
	hdr        wire.Header           // sendLocked's, reused

	space chan struct{} // a token when the queue shrank
	done  chan struct{} // closed by close
}

// rrMember is one worker listener of a round-robin handle.
type rrMember struct {
	m          *membership
	held       []int // the primary's copies of connections handed and not reported yet, in hand-off order
	served     []int // the primary's copies of connections the worker accepted and has not reported taken: served[i] is the servedBase+i-th accepted (-1 once closed)
	servedBase uint64
	sent       int   // with noRescue, in place of held: connections handed and not reported yet
	credit     int   // connections the worker asked for and was not handed yet
	accepted   int   // connections the worker reported accepted, in all
	atLimit    bool  // it last gave connections back at its connection limit
	skipUntil  int64 // it gave connections back: skipped until then (unix nanos)
	owed       int   // turns it was passed over for want of credit (up to maxOwed)
	stopped    bool  // the worker is disconnecting
	gone       bool  // left the handle, or its link ended
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
	if strings.HasPrefix(b.network, "tcp") {
		_ = rc.Control(func(fd uintptr) { setInheritedConnOptions(int(fd)) })
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
		nfd, err := acceptHandoff(int(fd))
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

// dispatchLocked hands queued connections to workers that asked for
// them, round robin, as many per message as the worker asked for (within
// its window).
func (h *rrHandle) dispatchLocked() {
	for h.queued() > 0 {
		m := h.pickLocked()
		if m == nil {
			return
		}
		k := min(m.credit, h.window-len(m.held)-m.sent, h.queued(), maxHandoffBatch)
		switch h.sendLocked(m, h.queue[h.head:h.head+k], h.queued()-k) {
		case sendGone:
			continue // try the next worker
		case sendLater:
			return
		}
		if h.noRescue {
			m.sent += k // the link closes them once sent
		} else {
			m.held = append(m.held, h.queue[h.head:h.head+k]...)
		}
		m.credit -= k
		h.popLocked(k)
	}
}

// pickLocked returns the next member that asked for a connection and has
// room in its window, or nil. Members passed over only because their
// request had not arrived yet (a report still on its way) are owed a turn,
// up to maxOwed: a connection goes, as an extra turn, to the member owed
// most that asked, so that round robin stays balanced when credits arrive
// late.
func (h *rrHandle) pickLocked() *rrMember {
	n := len(h.list)
	var now, soonest int64
	first, best := -1, -1
	for i := range n {
		j := (h.next + i) % n
		m := h.list[j]
		if m.gone || m.stopped || !m.wantsLocked() || len(m.held)+m.sent >= h.window || m.m.w.unready.Load() {
			continue // (unready: a pool's worker not ready yet, see Worker.unready)
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
		if first < 0 {
			first = j
		}
		if m.owed > 0 && (best < 0 || m.owed > h.list[best].owed) {
			best = j
		}
	}
	if first < 0 {
		if soonest != 0 {
			h.armLocked(time.Duration(soonest - now))
		}
		return nil
	}
	for j := h.next; j != first; j = (j + 1) % n {
		if m := h.list[j]; !m.gone && !m.stopped && !m.wantsLocked() && !m.m.w.unready.Load() {
			m.owed = min(m.owed+1, maxOwed)
		}
	}
	if best >= 0 && best != first {
		// An extra turn for the member owed one; first keeps its place.
		h.list[best].owed--
		h.next = first
		return h.list[best]
	}
	// Its own turn: what it is owed stays owed.
	h.next = (first + 1) % n
	return h.list[first]
}

// wantsLocked reports whether m is to be handed connections now: it asked
// for some and, if it is busy (it holds busyBatch or more handed and not
// reported), for at least busyBatch (see busyBatch). Each of its reports
// dispatches again, so a busy worker's hand-off waits only until it asked
// for busyBatch or its held connections fall below busyBatch, whichever
// comes first. A member passed over for this is owed its turn like one
// that asked for nothing (pickLocked), which keeps round robin balanced.
func (m *rrMember) wantsLocked() bool {
	return m.credit >= busyBatch || m.credit > 0 && len(m.held)+m.sent < busyBatch
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

// redispatch hands queued connections to workers that may take them now (a
// pool's worker that became ready).
func (h *rrHandle) redispatch() {
	h.mu.Lock()
	if !h.closed {
		h.dispatchLocked()
	}
	h.mu.Unlock()
}

func (h *rrHandle) kick() {
	h.mu.Lock()
	h.timerArmed = false
	if !h.closed {
		h.dispatchLocked()
	}
	h.mu.Unlock()
}

// The results of sendLocked.
const (
	sendOK    = iota
	sendGone  // m's link has ended: m is marked gone
	sendLater // out of descriptors: dispatch again at the next report
)

// sendLocked sends fds to m in one Handoff, lent to the link
// (SendBorrowedNow: written on this goroutine, the accept loop's or the
// report's, when the link's writer is idle, instead of waking the writer
// for every hand-off): the descriptors accept4 returned travel themselves, with
// no duplicate, and stay the primary's held copies until the worker
// reports them. Before the primary closes or re-queues a held descriptor
// it detaches it from the link (detachLocked), so that a worker reporting
// a connection before its frame was written cannot make the link send a
// descriptor number the kernel has meanwhile given to another connection.
func (h *rrHandle) sendLocked(m *rrMember, fds []int, backlog int) int {
	// The message and its header are the handle's, reused under h.mu: the
	// link encodes them before the send returns, and a fresh pair would
	// cost two allocations per hand-off.
	req, hdr := &h.req, &h.hdr
	req.ListenerId, req.Count, req.Backlog = m.m.id, uint32(len(fds)), uint32(backlog)
	*hdr = wire.Header{Procedure: controlServiceHandoffProcedure, Flags: wire.FlagSystem}
	var err error
	if h.noRescue {
		// The link owns them from here and closes them once sent: the
		// primary's close is not the connection's last (the worker's
		// is), so the teardown is not the primary's.
		err = m.m.w.ep.link.SendOwnedNow(hdr, req, fds)
	} else {
		err = m.m.w.ep.link.SendBorrowedNow(hdr, req, fds)
	}
	if err != nil {
		// Nothing was queued: the descriptors stay in the queue.
		m.gone = true
		return sendGone
	}
	return sendOK
}

// detachLocked ends m's link's use of fds, held copies the primary is
// about to close or hand to another worker (see link.Detach): in the
// honest case, where the worker reports what it received, their frames
// were written and nothing is done; a frame not yet written gets its own
// duplicates, so that m still receives exactly what it was sent.
func (h *rrHandle) detachLocked(m *rrMember, fds []int) {
	if len(fds) > 0 {
		m.m.w.ep.link.Detach(fds)
	}
}

// accepted handles a worker's report (on its link's reader): the primary
// closes its copies of what the server accepted, queues again what the
// worker gave back, adds the worker's new credit and dispatches.
func (h *rrHandle) accepted(m *rrMember, req *herdv1.AcceptedRequest) {
	var buf [8]int
	h.mu.Lock()
	if m.gone {
		h.mu.Unlock()
		return
	}
	if h.noRescue {
		// No copies: what the worker gives back is lost (closed by it);
		// the report only frees its window and pauses it.
		m.sent = max(m.sent-int(req.GetAccepted())-int(req.GetReturned()), 0)
		if req.GetAccepted() > 0 {
			m.atLimit = false
		}
		if req.GetReturned() > 0 {
			m.atLimit = req.GetAtLimit()
			m.skipUntil = time.Now().UnixNano() + int64(rejectPause)
		}
		m.accepted += int(req.GetAccepted())
		m.credit = min(m.credit+int(req.GetCredit()), maxCredit)
		if !h.closed {
			h.dispatchLocked()
		}
		h.mu.Unlock()
		return
	}
	a := min(int(req.GetAccepted()), len(m.held))
	closing := buf[:0]
	r := min(int(req.GetReturned()), len(m.held)-a)
	h.detachLocked(m, m.held[:a+r])
	// What the server accepted stays the primary's too until it is taken.
	m.served = append(m.served, m.held[:a]...)
	closing = m.takenLocked(req.GetTaken(), closing)
	if a > 0 {
		m.atLimit = false
	}
	if r > 0 {
		m.atLimit = req.GetAtLimit()
		m.skipUntil = time.Now().UnixNano() + int64(rejectPause)
		if h.closed || m.atLimit && !h.roomElsewhereLocked(m) {
			// Beyond the connection limit of every worker that could
			// take them: closed, as a server at its maxConnections
			// closes them.
			closing = append(closing, m.held[a:a+r]...)
		} else {
			h.unpopLocked(m.held[a : a+r])
		}
	}
	m.held = m.held[:copy(m.held, m.held[a+r:])]
	m.accepted += a
	m.credit = min(m.credit+int(req.GetCredit()), maxCredit)
	if !h.closed {
		h.dispatchLocked()
	}
	h.mu.Unlock()
	closeRawFDs(closing)
}

// takenLocked closes m's copies of the accepted connections the worker
// reports taken (appending them to closing), and those past maxServed.
func (m *rrMember) takenLocked(taken []uint64, closing []int) []int {
	for _, p := range taken {
		if p < m.servedBase || p-m.servedBase >= uint64(len(m.served)) {
			continue // not held (closed already, or a report out of bounds)
		}
		i := p - m.servedBase
		if fd := m.served[i]; fd >= 0 {
			closing = append(closing, fd)
			m.served[i] = -1
		}
	}
	k := 0
	for k < len(m.served) && (m.served[k] < 0 || len(m.served)-k > maxServed) {
		if m.served[k] >= 0 {
			closing = append(closing, m.served[k])
		}
		k++
	}
	if k == len(m.served) {
		m.served = m.served[:0]
	} else if k > 0 {
		m.served = m.served[:copy(m.served, m.served[k:])]
	}
	m.servedBase += uint64(k)
	return closing
}

// servedCopies takes m's copies of accepted connections not reported
// taken.
func (m *rrMember) servedCopies() []int {
	var fds []int
	for _, fd := range m.served {
		if fd >= 0 {
			fds = append(fds, fd)
		}
	}
	m.served = nil
	return fds
}

// roomElsewhereLocked reports whether a member other than m may take
// connections: one that is not leaving and whose last report did not give
// connections back at its connection limit. A connection refused at the
// limit thus visits each member at most once before it is closed.
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
	h.mu.Unlock()
	return nil, nil
}

// leave removes m. The connections it was handed and did not report go to
// the other workers (once the worker has exited, and if nobody touched
// them, when its link ended and it reported lazily); returned (descriptors
// an older worker sends back) are its own copies, closed.
func (h *rrHandle) leave(m *membership, returned []*os.File) {
	closeFiles(returned)
	h.mu.Lock()
	defer h.mu.Unlock()
	rm := m.rr
	rm.gone = true
	held := rm.held
	rm.held, rm.credit, rm.sent = nil, 0, 0
	h.detachLocked(rm, held)
	served := rm.servedCopies()
	if m.linkEnded && !h.closed && lazyAcceptReports(h.network) {
		// Its server may have accepted, and used, connections it had not
		// reported yet (lazyAcceptReports): the held copies too wait for
		// the kernel's word, after the accepted ones (in hand-off order).
		served, held = append(served, held...), nil
	}
	if len(served) > 0 {
		if h.closed || !m.linkEnded && !m.w.disconnecting.Load() {
			// A worker that closed its listener and lives on serves what
			// its server accepted.
			closeRawFDs(served)
		} else {
			h.rescueAfterExit(m.w, served)
		}
	}
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
		closeRawFDs(held)
		return
	}
	if len(held) > 0 {
		h.unpopLocked(held)
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
	for _, m := range h.list {
		h.detachLocked(m, m.held)
		closeRawFDs(m.held)
		closeRawFDs(m.servedCopies())
		m.held = nil
	}
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
		closeHandoffFD(fd)
	}
}
