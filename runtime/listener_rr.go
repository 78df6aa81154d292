//go:build unix

package runtime

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime/internal/wire"
)

// maxAcceptQueue bounds the connections a round-robin listener holds that
// its server has not accepted yet; hand-offs beyond it are refused and the
// primary gives them to another worker. It also keeps what a closing
// listener returns within one frame's descriptors.
const maxAcceptQueue = 128

// rrListener is a worker's listener on a round-robin handle: connections
// come from the primary in Handoff messages and wait in a queue for Accept.
type rrListener struct {
	*listenEntry
	addr net.Addr
	lim  *connLimit // WithMaxConnections; nil for none

	mu      sync.Mutex
	queue   []net.Conn // visible to Accept, from head
	head    int
	pending []net.Conn // taken by the Handoff being handled, not yet acknowledged
	shut    bool       // closed: hand-offs are refused

	ready     chan struct{} // a token when the queue may have grown
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

func newRRListener(e *listenEntry) *rrListener {
	return &rrListener{listenEntry: e, ready: make(chan struct{}, 1), done: make(chan struct{})}
}

// Accept waits for the next handed-off connection.
func (l *rrListener) Accept() (net.Conn, error) {
	for {
		select {
		case <-l.done:
			return nil, &net.OpError{Op: "accept", Net: l.netName(), Addr: l.addr, Err: net.ErrClosed}
		default:
		}
		l.mu.Lock()
		if l.head < len(l.queue) {
			c := l.queue[l.head]
			l.queue[l.head] = nil
			l.head++
			more := l.head < len(l.queue)
			if !more {
				l.queue, l.head = l.queue[:0], 0
			}
			l.mu.Unlock()
			if more {
				l.signal() // for another accepting goroutine
			}
			if l.lim != nil {
				c = limitConn(c, l.lim) // its place, taken by take, ends with it
			}
			return c, nil
		}
		l.mu.Unlock()
		select {
		case <-l.ready:
		case <-l.done:
		}
	}
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

// Close stops accepting, gives the connections the server has not accepted
// back to the primary (which hands them to another worker) and releases the
// worker's share of the handle. It may be called from any goroutine,
// handlers included.
func (l *rrListener) Close() error { return l.closeCluster() }

func (l *rrListener) closeCluster() error {
	first := false
	l.closeOnce.Do(func() { first = true })
	if !first {
		return net.ErrClosed
	}
	close(l.done)
	l.mu.Lock()
	l.shut = true
	back := make([]net.Conn, 0, len(l.queue)-l.head+len(l.pending))
	back = append(append(back, l.queue[l.head:]...), l.pending...)
	clear(l.queue)
	clear(l.pending)
	l.queue, l.head, l.pending = nil, 0, nil
	l.mu.Unlock()
	l.releaseN(len(back))
	// Connections of a Handoff being acknowledged go back too: the
	// primary holds its own copies until the acknowledgement, and then
	// closes them; the copies returned here are new descriptors.
	l.s.forget(l.listenEntry)
	l.s.releaseHandle(l.id, back)
	return nil
}

// take turns handed-off descriptors into connections, as many as the queue
// and the listener's connection limit have room for, from the first, and
// holds them as pending; it closes every file. atLimit says the limit
// stopped it. It runs on the drainer.
func (l *rrListener) take(files []*os.File) (took int, atLimit bool) {
	defer closeFiles(files)
	var refused error // reported once l.mu is released
	var code Code
	defer func() {
		if refused != nil {
			l.s.ep.readerError(code, controlHandoffProcedure, refused)
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	room := maxAcceptQueue - (len(l.queue) - l.head) - len(l.pending)
	if l.shut {
		room = 0
	}
	n := min(room, len(files))
	for _, f := range files[:max(n, 0)] {
		if l.lim != nil && !l.lim.acquire() {
			return took, true // the rest go back to the primary
		}
		c, err := net.FileConn(f)
		if err != nil {
			l.releaseN(1)
			// The rest go back to the primary, for another worker.
			code = CodeInternal
			if errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				code = CodeResourceExhausted
			}
			refused = fmt.Errorf("hand-off: %d connections refused: %w", len(files)-took, err)
			break
		}
		l.pending = append(l.pending, c)
		took++
	}
	return took, false
}

// releaseN gives back n places of the connection limit: connections taken
// and then returned or dropped.
func (l *rrListener) releaseN(n int) {
	if l.lim != nil {
		l.lim.open.Add(-int64(n))
	}
}

// publish makes the pending connections visible to Accept, once their
// acknowledgement is queued on the link.
func (l *rrListener) publish() {
	l.mu.Lock()
	if len(l.pending) == 0 {
		l.mu.Unlock()
		return
	}
	l.queue = append(l.queue, l.pending...)
	clear(l.pending)
	l.pending = l.pending[:0]
	l.mu.Unlock()
	l.signal()
}

// handoff serves the primary's Handoff, on the link's reader goroutine: it
// takes the connections into the listener's queue and acknowledges how
// many it took. The connections become visible to Accept only once the
// acknowledgement is queued on the link, so a connection the primary
// re-routes (because this worker died before acknowledging) has not been
// read here. Nothing here blocks: the acknowledgement is queued whatever
// the write queue holds (it is small, and the primary bounds how many
// hand-offs are in flight).
func (s *Self) handoff(env *wire.Envelope, files []*os.File) {
	var req herdv1.HandoffRequest
	took, atLimit := 0, false
	var l *rrListener
	if err := proto.Unmarshal(env.Payload, &req); err == nil {
		s.ls.mu.Lock()
		l = s.ls.rr[req.GetListenerId()]
		s.ls.mu.Unlock()
	}
	if l != nil {
		took, atLimit = l.take(files) // closes the files
	} else {
		closeFiles(files)
	}
	if env.FDsLost > 0 {
		// The kernel could not install the last ones: they are refused
		// with the rest the worker did not take, and the primary, which
		// holds its own copies until acknowledged, gives them to another
		// worker.
		s.ep.readerError(CodeResourceExhausted, controlHandoffProcedure, fmt.Errorf("hand-off: %d of %d connections refused: %w", int(env.FDCount)-took, env.FDCount, lostFDs(env)))
	}
	if env.CallID != 0 {
		h := wire.Header{ReplyTo: env.CallID}
		if err := s.ep.link.SendOwned(&h, &herdv1.HandoffResponse{Accepted: uint32(took), AtLimit: atLimit}, nil); err != nil {
			// The link is gone; the primary re-routes what it handed.
			took = 0
			if l != nil {
				l.drop()
			}
		}
	}
	if took > 0 {
		l.publish()
	}
}

// drop closes the pending connections (their acknowledgement could not be
// sent).
func (l *rrListener) drop() {
	l.mu.Lock()
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()
	l.releaseN(len(pending))
	for _, c := range pending {
		c.Close()
	}
}
