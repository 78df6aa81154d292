//go:build unix

package runtime

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"syscall"
)

// sharedHandle is Node's SharedHandle (SCHED_NONE, and UDP): the primary
// binds the socket and every worker gets a duplicate and accepts (or reads)
// from it itself.
type sharedHandle struct {
	handleBase
	sock *heldSocket // the primary's copy, out of its netpoller

	mu  sync.Mutex
	set memberSet[struct{}]
}

func newSharedHandle(b handleBase, sock syscall.Conn, res io.Closer) (*sharedHandle, error) {
	held, err := holdSocket(sock, res)
	if err != nil {
		return nil, err
	}
	return &sharedHandle{handleBase: b, sock: held}, nil
}

func (h *sharedHandle) join(m *membership) ([]int, error) {
	fd, err := dupSocket(h.sock)
	if err != nil {
		return nil, err
	}
	h.mu.Lock()
	h.set.join(m, struct{}{})
	h.mu.Unlock()
	return []int{fd}, nil
}

func (h *sharedHandle) leave(m *membership, returned []*os.File) {
	closeFiles(returned)
	h.mu.Lock()
	h.set.leave(m)
	h.mu.Unlock()
}

func (h *sharedHandle) stop(*membership) {} // the worker accepts by itself

func (h *sharedHandle) members() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.set.len()
}

func (h *sharedHandle) close() {
	h.sock.Close()
	h.removeSocket()
}

// reusePortHandle gives every worker its own SO_REUSEPORT socket on the
// handle's port; the kernel balances connections (or datagrams) among them.
// The primary accepts from none of them (a socket nobody accepts from would
// get its share of the connections), but keeps the port: a worker that
// restarts while others still listen gets the same one, also for ":0".
//
// For TCP the primary also keeps a descriptor of each worker's socket, so
// that the socket outlives the worker: when the worker leaves, the primary
// accepts what is queued there, closes it, and hands those connections to
// the handle's other workers (see primary_reuseport_rescue_unix.go); when
// the worker dies, the socket stays in the group, an orphan the primary
// drains until the worker's replacement takes it (see
// primary_reuseport_orphan_unix.go).
type reusePortHandle struct {
	handleBase
	spec   bindSpec
	packet bool
	first  syscall.Conn // the socket bound to pick the port, for the first join
	firstC io.Closer

	mu      sync.Mutex
	set     memberSet[*reuseMember] // in join order; next is the next to rescue to
	orphans []*orphan               // dead members' sockets, oldest first
	wake    chan struct{}           // closed when a member joins (orphans' drainers wait on it)
}

// reuseMember is one worker's share of a reuseport handle.
type reuseMember struct {
	sock    *heldSocket // the primary's copy of the worker's TCP socket, out of its netpoller; nil for UDP
	stopped bool        // the worker is disconnecting: no rescued connection goes to it
	offered cookieRing  // the connections last offered to it (see trustReturned)
}

func newReusePortHandle(ctx context.Context, b handleBase, spec *bindSpec, packet bool) (*reusePortHandle, error) {
	h := &reusePortHandle{handleBase: b, spec: *spec, packet: packet}
	h.spec.reusePort = true
	sock, c, addr, err := h.bind(ctx)
	if err != nil {
		return nil, err
	}
	h.first, h.firstC = sock, c
	h.address = addr.String()
	// Later sockets bind the port the first one got.
	if host, _, err := net.SplitHostPort(h.spec.address); err == nil {
		var port int
		switch a := addr.(type) {
		case *net.TCPAddr:
			port = a.Port
		case *net.UDPAddr:
			port = a.Port
		}
		h.spec.address = net.JoinHostPort(host, strconv.Itoa(port))
	}
	return h, nil
}

func (h *reusePortHandle) bind(ctx context.Context) (syscall.Conn, io.Closer, net.Addr, error) {
	if h.packet {
		pc, err := bindPacket(ctx, &h.spec)
		if err != nil {
			return nil, nil, nil, err
		}
		return pc.(syscall.Conn), pc, pc.LocalAddr(), nil
	}
	ln, err := bindListener(ctx, &h.spec)
	if err != nil {
		return nil, nil, nil, err
	}
	return ln.(syscall.Conn), ln, ln.Addr(), nil
}

func (h *reusePortHandle) join(m *membership) ([]int, error) {
	h.mu.Lock()
	o := h.takeOrphanLocked(m.w)
	h.mu.Unlock()
	if o != nil {
		// The socket of the worker m's replaces: the same socket, never
		// out of the group.
		o.end(false)
		fd, err := dupSocket(o.sock)
		if err != nil {
			o.sock.Close()
			return nil, err
		}
		h.mu.Lock()
		h.set.join(m, &reuseMember{sock: o.sock})
		h.wakeOrphansLocked()
		h.mu.Unlock()
		return []int{fd}, nil
	}
	sock, c := h.first, h.firstC
	h.first, h.firstC = nil, nil
	if sock == nil {
		var err error
		sock, c, _, err = h.bind(context.Background())
		if err != nil {
			return nil, err
		}
	}
	fd, err := dupSocket(sock)
	if err != nil {
		c.Close()
		return nil, err
	}
	rm := &reuseMember{}
	if _, ok := c.(net.Listener); ok && !h.packet {
		// Kept (see leave), as a plain descriptor.
		if rm.sock, err = holdSocket(sock, c); err != nil {
			closeFD(fd)
			return nil, err
		}
	} else {
		c.Close()
	}
	h.mu.Lock()
	h.set.join(m, rm)
	h.wakeOrphansLocked()
	h.mu.Unlock()
	return []int{fd}, nil
}

// leave removes m. The connections queued on its socket, and those it
// returns (rescued connections its server had not accepted), go to the
// other workers: its socket is still open here, so the kernel kept its
// queue even if the worker is dead. A worker that died (its link ended
// with no disconnect begun) leaves its socket open, an orphan for its
// replacement (primary_reuseport_orphan_unix.go), unless its pool said no
// replacement will come.
func (h *reusePortHandle) leave(m *membership, returned []*os.File) {
	h.mu.Lock()
	rm := h.set.leave(m)
	h.mu.Unlock()
	log := m.w.primary.log
	conns := rm.trustReturned(returned, log)
	if rm != nil && rm.sock != nil && m.linkEnded && !m.w.afterDisconnect.Load() && (m.w.pool == nil || !m.w.pool.released) {
		if o := h.newOrphan(m.w, rm, log); o != nil {
			h.mu.Lock()
			h.orphans = append(h.orphans, o)
			h.mu.Unlock()
		}
		if len(conns) > 0 {
			go h.rescue(conns, log)
		}
		return
	}
	if rm != nil && rm.sock != nil {
		conns = append(conns, acceptQueued(rm.sock)...)
		rm.sock.Close()
	}
	if len(conns) > 0 {
		go h.rescue(conns, m.w.primary.log)
	}
}

func (h *reusePortHandle) stop(m *membership) {
	h.mu.Lock()
	if rm := h.set.get(m); rm != nil {
		rm.stopped = true
	}
	h.mu.Unlock()
}

// members counts the live members and the orphans a pool keeps for its
// replacements: the handle (and its port) stays while there are any.
func (h *reusePortHandle) members() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.set.len() + h.keptOrphansLocked()
}

// close closes the first socket if no worker took it, and the orphans
// left: each is drained one last time, then closed.
func (h *reusePortHandle) close() {
	if h.firstC != nil {
		h.firstC.Close()
		h.first, h.firstC = nil, nil
	}
	h.mu.Lock()
	orphans := h.orphans
	h.orphans = nil
	h.mu.Unlock()
	for _, o := range orphans {
		o.end(true)
	}
}

// memberSet is the join and leave bookkeeping of the shared and reuseport
// handles: their members with a value each, in join order, and a cursor
// (next) into that order that stays on its member when an earlier one
// leaves. The handle guards it with its own lock; the zero value is empty.
type memberSet[V any] struct {
	byMember map[*membership]V
	order    []*membership
	next     int
}

// join adds m with v.
func (s *memberSet[V]) join(m *membership, v V) {
	if s.byMember == nil {
		s.byMember = make(map[*membership]V)
	}
	s.byMember[m] = v
	s.order = append(s.order, m)
}

// leave removes m and returns its value (the zero value if it was not a
// member).
func (s *memberSet[V]) leave(m *membership) V {
	v := s.byMember[m]
	delete(s.byMember, m)
	for i, x := range s.order {
		if x == m {
			s.order = append(s.order[:i], s.order[i+1:]...)
			if s.next > i {
				s.next--
			}
			break
		}
	}
	return v
}

// get returns m's value (the zero value if it is not a member).
func (s *memberSet[V]) get(m *membership) V { return s.byMember[m] }

// len returns the number of members.
func (s *memberSet[V]) len() int { return len(s.byMember) }
