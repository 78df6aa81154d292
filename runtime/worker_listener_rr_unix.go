//go:build unix

package runtime

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// A round-robin listener asks for connections ahead of its Accept calls
// once its server accepts (an http.Server calls Accept again at once, so
// the next connection travels while it starts serving the last): one
// while the primary has no backlog, which is also the most a listener
// whose server stops accepting holds besides one per Accept call that was
// waiting; while the primary reports a backlog, one more per hand-off up
// to the handoff window, so that a busy worker gets batches and its
// accept loop does not wait a round trip per connection.
const minAhead = 1

// takenFlushDelay is how long the taken connections a listener has not
// reported wait for a report to travel with (an Accept's) before they are
// sent alone: until then the primary holds its copies of them. A variable
// for the tests, which make it long to see what the primary does with
// copies of connections a dead worker had used.
var takenFlushDelay = 2 * time.Millisecond

// takenFlushBatch is how many taken connections are sent at once without
// waiting for takenFlushDelay.
const takenFlushBatch = 16

// lazyAcceptReports reports whether a round-robin listener on network
// tells the primary what its server accepted lazily: a TCP listener where
// the kernel says whether a connection was used (Linux,
// untouched_conn_linux.go). Its Accept returns a connection without
// writing a report first; the reports of several Accept calls, and the
// credit they ask for, travel in one message once the credit reaches
// busyBatch, once the listener runs low on connections, before an Accept
// waits, or within takenFlushDelay, whichever comes first. The primary
// cannot tell a connection the dead worker's server took without a report
// from one still queued, so it asks the kernel about every copy a dead
// worker held (rrHandle.leave): one nobody read from or wrote to goes to
// another worker, as before. Elsewhere (and for unix sockets, about which
// the kernel does not say) Accept writes its report before it returns.
func lazyAcceptReports(network string) bool {
	return kernelTellsUntouched && strings.HasPrefix(network, "tcp")
}

// rrListener is a worker's listener on a round-robin handle. Connections
// come from the primary in Handoff messages, never more than the listener
// asked for: it credits the primary with one connection per Accept call
// that waits (and acceptAhead more once its server accepts), so a worker
// that stops accepting (stopped, in a long pause, its accept loop blocked)
// holds at most what it asked for, and the other workers get the rest.
//
// The primary keeps its own copy of every connection until this listener
// reports, in an Accepted message, that its server's Accept took it.
// Where the kernel cannot say whether a connection was used (not Linux, or
// a unix socket) that report is written to the link before Accept returns
// the connection: if the worker dies, every connection its server had not
// accepted goes to another worker. On Linux TCP the reports are lazy
// (lazyAcceptReports), and a dead worker's unreported connections go to
// another worker if the kernel says nobody used them.
//
// The primary keeps its copy of an accepted TCP connection too, until the
// listener reports it taken: its server read from it (data or end of
// stream), wrote to it, or shut it down or closed it (handoffConn.use).
// Those reports travel with the next Accepted report, or alone after
// takenFlushDelay. When a worker dies, the primary gives each accepted
// connection it still holds to another worker if the kernel says nobody
// read from it or wrote to it (primary_rescue_linux.go): a net/http
// server's goroutines that had not run yet lose nothing. A connection that
// is not a handoffConn (net.FileConn's, or a unix socket's, whose kernel
// does not say) is reported taken as it is accepted.
type rrListener struct {
	*listenEntry
	addr net.Addr
	lim  *connLimit // WithMaxConnections; nil for none

	// acceptMu orders Accept's reports with each other and with Close:
	// the primary matches them to its copies in hand-off order.
	acceptMu sync.Mutex

	mu       sync.Mutex
	queue    []*os.File // handed off, not accepted yet, from head
	head     int
	waiting  int  // Accept calls waiting for a connection
	credit   int  // connections asked for and not received yet
	ahead    int  // connections to ask for ahead of Accept calls (minAhead..maxAhead)
	maxAhead int  // the primary's handoff window
	shut     bool // closed: hand-offs are closed at once

	// With lazy reports (lazyAcceptReports): what the primary has not been
	// told yet, under mu and reported under acceptMu.
	lazy         bool
	pendAccepted uint32 // connections Accept returned
	pendCredit   uint32 // connections asked for

	ready     chan struct{} // a token when the queue may have grown
	done      chan struct{} // closed by Close
	closeOnce sync.Once

	accepts uint64 // under acceptMu: the connections Accept returned, the next one's place

	// The connections the server has taken and the primary has not been
	// told of, by place (handoffConn.use).
	tmu        sync.Mutex
	taken      []uint64
	spare      []uint64 // the last report's taken slice, for reuse
	tshut      bool     // closed: taken connections are not reported
	flushArmed bool
	flushTimer *time.Timer
}

func newRRListener(e *listenEntry) *rrListener {
	return &rrListener{listenEntry: e, ahead: minAhead, maxAhead: minAhead, ready: make(chan struct{}, 1), done: make(chan struct{})}
}

// setAddr records the handle's address, and with it whether the listener
// reports lazily.
func (l *rrListener) setAddr(a net.Addr) {
	l.addr = a
	l.lazy = lazyAcceptReports(l.netName())
}

// setWindow records the primary's handoff window, the most the listener
// asks for ahead.
func (l *rrListener) setWindow(n uint32) {
	l.mu.Lock()
	l.maxAhead = max(int(min(n, maxCredit)), minAhead)
	l.mu.Unlock()
}

// queued is how many handed-off connections wait for Accept.
func (l *rrListener) queued() int { return len(l.queue) - l.head }

// askLocked returns how many more connections to ask for so that the
// listener has (or is owed) want; it counts them as asked.
func (l *rrListener) askLocked(want int) uint32 {
	n := want - l.credit - l.queued()
	if n <= 0 {
		return 0
	}
	l.credit += n
	return uint32(n)
}

// prime asks for the first connection as the listener opens, so that a
// worker whose server has not called Accept yet does not miss its first
// turns of round robin; a server that never accepts holds at most this one
// (as it would one asked for ahead).
func (l *rrListener) prime() {
	l.mu.Lock()
	ask := l.askLocked(minAhead)
	l.mu.Unlock()
	if ask > 0 {
		l.report(&herdv1.AcceptedRequest{ListenerId: l.id, Credit: ask}, false)
	}
}

// Accept waits for the next handed-off connection. Before it returns one,
// it has told the primary (on the link, in the kernel's hands) that the
// server took it.
func (l *rrListener) Accept() (net.Conn, error) {
	counted := false // this call counts in l.waiting
	var backoff time.Duration
	for {
		l.acceptMu.Lock()
		l.mu.Lock()
		if counted {
			l.waiting--
			counted = false
		}
		if l.shut {
			l.mu.Unlock()
			l.acceptMu.Unlock()
			return nil, l.closedErr()
		}
		if l.queued() > 0 {
			f := l.queue[l.head]
			l.queue[l.head] = nil
			l.head++
			if l.head == len(l.queue) {
				l.queue, l.head = l.queue[:0], 0
			}
			more := l.queued() > 0
			ask := l.askLocked(max(l.waiting, l.ahead))
			lazy := l.lazy
			l.mu.Unlock()
			req := &herdv1.AcceptedRequest{ListenerId: l.id, Credit: ask}
			var c net.Conn
			var cerr error
			if f == nil {
				// A connection whose descriptor was lost on the way:
				// given back in its place.
				req.Returned = 1
				l.withPending(req)
				l.report(req, false)
				l.acceptMu.Unlock()
				if more {
					l.signal()
				}
				continue
			}
			if l.lim != nil && !l.lim.acquire() {
				// At its connection limit: the primary gives it to a
				// worker with room, or closes it (Node's maxConnections).
				f.Close()
				req.Returned, req.AtLimit = 1, true
				l.withPending(req)
				l.report(req, false)
				l.acceptMu.Unlock()
				if more {
					l.signal()
				}
				continue
			}
			if hc := newHandoffConn(f, l.netName(), l.addr); hc != nil {
				// The received descriptor itself (handoff_conn_unix.go).
				if l.lim != nil {
					hc.rel = &releaser{l: l.lim} // its place ends with it
				}
				c = hc
			} else {
				c, cerr = net.FileConn(f)
				f.Close()
				if cerr == nil && l.lim != nil {
					c = limitConn(c, l.lim) // its place ends with it
				}
			}
			if cerr != nil {
				// Out of descriptors (EMFILE, ENFILE) or memory: the
				// connection goes back to the primary, for another
				// worker, and this listener asks for nothing more for a
				// while (backing off as net/http does), so that what it
				// is handed does not wait on it; its server does not see
				// the error.
				code := CodeInternal
				if errors.Is(cerr, syscall.EMFILE) || errors.Is(cerr, syscall.ENFILE) {
					code = CodeResourceExhausted
				}
				l.s.ep.reportError(code, controlServiceHandoffProcedure, fmt.Errorf("hand-off: connection refused: %w", cerr))
				if l.lim != nil {
					l.lim.release()
				}
				l.mu.Lock()
				l.credit -= int(ask)
				l.mu.Unlock()
				req.Credit, req.Returned = 0, 1
				l.withPending(req)
				serr := l.report(req, false)
				l.acceptMu.Unlock()
				if more {
					l.signal()
				}
				if serr != nil {
					return nil, l.closedErr()
				}
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				select {
				case <-time.After(backoff):
				case <-l.done:
				}
				continue
			}
			backoff = 0
			place := l.accepts
			l.accepts++
			var serr error
			if lazy {
				// Reported with others (lazyAcceptReports): the primary
				// keeps its copy meanwhile, and asks the kernel about it
				// if this worker dies.
				hc, ok := c.(*handoffConn)
				if ok && hc.network == "tcp" {
					hc.tr, hc.place = l, place
				} else {
					l.addTaken(place) // reported with the acceptance
				}
				if l.pendingAccept(ask) {
					serr = l.flushPendingLocked()
				}
			} else {
				req.Accepted = 1
				req.Taken = l.takeTaken()
				if hc, ok := c.(*handoffConn); ok && hc.network == "tcp" {
					hc.tr, hc.place = l, place
				} else {
					req.Taken = append(req.Taken, place)
				}
				serr = l.report(req, true)
				l.recycleTaken(req.Taken)
			}
			l.acceptMu.Unlock()
			if more {
				l.signal() // for another accepting goroutine
			}
			if serr != nil {
				// The link is gone: the primary re-routes the connection
				// (the report may not have reached it), so the server must
				// not have it.
				// Closed without a shutdown: the connection itself lives on
				// in another worker.
				if hc, ok := c.(*handoffConn); ok {
					hc.discard()
				} else if c != nil {
					c.Close()
				}
				return nil, l.closedErr()
			}
			return c, nil
		}
		l.waiting++
		counted = true
		ask := l.askLocked(max(l.waiting, l.ahead))
		if l.pendAccepted > 0 || l.pendCredit > 0 {
			// About to wait: whatever was not reported goes now.
			l.pendCredit += ask
			l.mu.Unlock()
			l.flushPendingLocked()
		} else {
			l.mu.Unlock()
			if ask > 0 {
				l.report(&herdv1.AcceptedRequest{ListenerId: l.id, Credit: ask}, false)
			}
		}
		l.acceptMu.Unlock()
		select {
		case <-l.ready:
		case <-l.done:
		}
	}
}

// noteTaken records that the server took the connection at place (its
// first use, handoffConn.use) for the next report, and makes sure one goes
// within takenFlushDelay.
func (l *rrListener) noteTaken(place uint64) {
	l.tmu.Lock()
	if l.tshut {
		l.tmu.Unlock()
		return
	}
	l.taken = append(l.taken, place)
	now := len(l.taken) >= takenFlushBatch
	l.tmu.Unlock()
	if now {
		l.flushTaken()
	} else {
		l.armFlush()
	}
}

// addTaken records a taken connection for the next report, which goes
// within takenFlushDelay.
func (l *rrListener) addTaken(place uint64) {
	l.tmu.Lock()
	if !l.tshut {
		l.taken = append(l.taken, place)
	}
	l.tmu.Unlock()
}

// pendingAccept counts one more connection Accept returned, and the
// credit it asked for, as not reported yet (lazy reports), and reports
// whether to send them now: the credit reached busyBatch (the primary
// hands a busy worker that many at once), or the connections the
// listener holds and the primary knows it asked for fell below busyBatch
// (it would soon wait for the primary). Otherwise the flush timer sends
// them within takenFlushDelay. Called under acceptMu.
func (l *rrListener) pendingAccept(ask uint32) bool {
	l.mu.Lock()
	l.pendAccepted++
	l.pendCredit += ask
	now := l.pendCredit >= busyBatch || l.queued()+l.credit-int(l.pendCredit) < busyBatch
	l.mu.Unlock()
	if !now {
		l.armFlush()
	}
	return now
}

// withPending adds what was not reported yet to req, a report about to be
// written (under acceptMu): the connections it counts come before req's in
// hand-off order.
func (l *rrListener) withPending(req *herdv1.AcceptedRequest) {
	l.mu.Lock()
	req.Accepted += l.pendAccepted
	req.Credit += l.pendCredit
	l.pendAccepted, l.pendCredit = 0, 0
	l.mu.Unlock()
}

// flushPendingLocked reports what was not reported yet: the connections
// Accept returned, the credit asked for and the taken connections. Called
// under acceptMu.
func (l *rrListener) flushPendingLocked() error {
	req := &herdv1.AcceptedRequest{ListenerId: l.id}
	l.withPending(req)
	req.Taken = l.takeTaken()
	var err error
	if req.Accepted > 0 || req.Credit > 0 || len(req.Taken) > 0 {
		err = l.report(req, false)
	}
	l.recycleTaken(req.Taken)
	return err
}

// armFlush makes sure the flush timer runs within takenFlushDelay.
func (l *rrListener) armFlush() {
	l.tmu.Lock()
	if !l.tshut && !l.flushArmed {
		l.flushArmed = true
		if l.flushTimer == nil {
			l.flushTimer = time.AfterFunc(takenFlushDelay, l.flushTaken)
		} else {
			l.flushTimer.Reset(takenFlushDelay)
		}
	}
	l.tmu.Unlock()
}

// takeTaken returns the taken connections not reported yet, for a report
// about to be written; recycleTaken takes the slice back once it is.
func (l *rrListener) takeTaken() []uint64 {
	l.tmu.Lock()
	t := l.taken
	l.taken, l.spare = l.spare[:0], nil
	l.tmu.Unlock()
	return t
}

func (l *rrListener) recycleTaken(t []uint64) {
	if cap(t) == 0 {
		return
	}
	l.tmu.Lock()
	if l.spare == nil {
		l.spare = t[:0]
	}
	l.tmu.Unlock()
}

// flushTaken reports the taken connections not reported yet, with any
// report lazy Accept calls left (the flush timer's function).
func (l *rrListener) flushTaken() {
	l.acceptMu.Lock()
	defer l.acceptMu.Unlock()
	l.tmu.Lock()
	l.flushArmed = false
	shut := l.tshut
	l.tmu.Unlock()
	if !shut {
		l.flushPendingLocked()
	}
}

// report sends an Accepted message as a system frame (the reader lane, control.go); sync waits until
// it is written.
func (l *rrListener) report(req *herdv1.AcceptedRequest, sync bool) error {
	h := wire.Header{Procedure: controlServiceAcceptedProcedure, Flags: wire.FlagSystem}
	if sync {
		return l.s.ep.link.SendSync(&h, req)
	}
	return l.s.ep.link.SendDirect(l.s.ep.lifeCtx(), &h, req)
}

func (l *rrListener) closedErr() error {
	return &net.OpError{Op: "accept", Net: l.netName(), Addr: l.addr, Err: net.ErrClosed}
}

func (l *rrListener) signal() {
	select {
	case l.ready <- struct{}{}:
	default:
	}
}

func (l *rrListener) netName() string {
	if l.addr != nil {
		return l.addr.Network()
	}
	return "tcp"
}

// Addr returns the handle's address.
func (l *rrListener) Addr() net.Addr { return l.addr }

// Close stops accepting and releases the worker's share of the handle; the
// connections the server has not accepted go to another worker. It may be
// called from any goroutine, handlers included.
func (l *rrListener) Close() error { return l.closeCluster() }

func (l *rrListener) closeCluster() error {
	first := false
	l.closeOnce.Do(func() { first = true })
	if !first {
		return net.ErrClosed
	}
	close(l.done)
	// After any report of an Accept under way: the primary takes back
	// what was not reported accepted when it handles the release, which
	// follows the reports on the link. The taken connections not reported
	// yet go before it too (the primary closes its copies of them at
	// once); what is taken later the primary learns of when the worker
	// exits (primary_rescue_linux.go).
	l.acceptMu.Lock()
	l.mu.Lock()
	l.shut = true
	back := l.queue[l.head:]
	l.queue, l.head = nil, 0
	l.mu.Unlock()
	l.flushPendingLocked()
	l.tmu.Lock()
	l.tshut = true
	if l.flushTimer != nil {
		l.flushTimer.Stop()
	}
	l.tmu.Unlock()
	l.acceptMu.Unlock()
	// These are the worker's copies: the primary has its own.
	closeFiles(back)
	l.s.forget(l.listenEntry)
	l.s.releaseHandle(l.id, nil)
	return nil
}

// take queues handed-off connections for Accept, or closes them when the
// listener is closed (the primary then hands its own copies to another
// worker), and adapts how many to ask for ahead to the primary's backlog.
// It runs on the link's reader and takes the files.
func (l *rrListener) take(files []*os.File, backlog uint32) {
	l.mu.Lock()
	if backlog > 0 {
		l.ahead = min(l.ahead+1, l.maxAhead)
	} else {
		l.ahead = max(l.ahead-1, minAhead)
	}
	if l.shut {
		l.mu.Unlock()
		closeFiles(files)
		return
	}
	if l.head > 0 && l.head >= len(l.queue)/2 {
		l.queue = l.queue[:copy(l.queue, l.queue[l.head:])]
		l.head = 0
	}
	l.queue = append(l.queue, files...)
	l.credit = max(l.credit-len(files), 0)
	l.mu.Unlock()
	l.signal()
}

// handoff serves the primary's Handoff, on the link's reader goroutine:
// it queues the connections for the listener's Accept. Nothing here
// blocks, and nothing is answered: Accept reports the connections its
// server takes (at once, or lazily: lazyAcceptReports).
func (s *Self) handoff(ctx context.Context, req *herdv1.HandoffRequest) {
	files := TakeFiles(ctx)
	s.ls.mu.Lock()
	l := s.ls.rr[req.GetListenerId()]
	s.ls.mu.Unlock()
	if l == nil {
		// A listener that closed: the primary has its copies back.
		closeFiles(files)
		return
	}
	if lost := lostFiles(files); lost > 0 {
		// The kernel could not install the last ones (this process is at
		// its descriptor limit): they keep their places in the queue as
		// nil, and Accept gives them back in order; the primary, which
		// holds its own copies, hands them to another worker.
		s.ep.reportError(CodeResourceExhausted, controlServiceHandoffProcedure, fmt.Errorf("hand-off: %d of %d connections refused: this process is at its descriptor limit (RLIMIT_NOFILE)", lost, len(files)))
	}
	l.take(files, req.GetBacklog())
}

// lostFiles counts the nil files at the end of a reader handler's files:
// descriptors the process could not install (endpoint.serveOnReader).
func lostFiles(files []*os.File) int {
	n := 0
	for n < len(files) && files[len(files)-1-n] == nil {
		n++
	}
	return n
}
