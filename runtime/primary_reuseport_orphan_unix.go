//go:build unix

package runtime

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"time"
)

// A dead worker's SO_REUSEPORT socket, kept.
//
// Closing a listening socket of a reuseport group loses what the kernel
// routed to it and the accept queue does not hold yet: a SYN whose
// handshake completes after the close is reset, and with WithDeferAccept
// (TCP_DEFER_ACCEPT) so is a connection whose handshake completed and
// whose first data had not arrived, which the kernel keeps as a request in
// the listener's SYN queue, not in its accept queue. Those requests belong
// to their listener (the kernel looks the listener up again only when it
// is gone, and then answers the client's data with a reset), unless
// net.ipv4.tcp_migrate_req is 1, which herd cannot count on. While the
// listener lives, they complete into its accept queue as their ACK or
// data arrives, whoever accepts from it.
//
// So when a worker dies (its link ends without a disconnect the primary or
// the worker began), the primary keeps the worker's socket in the group:
// an orphan. It waits on the socket (in its netpoller, for as long as the
// orphan lasts), accepts what arrives and hands it to the handle's other
// workers with Adopt, as the rescue of a leaving worker's queue does
// (primary_reuseport_rescue_unix.go); while the handle has no other worker
// it accepts nothing and the kernel queues (up to the backlog). The
// replacement, when it listens on the handle, gets that same socket
// instead of a new one: no socket of the group closes, and nothing in
// flight on it is reset.
//
// Who takes an orphan: a worker of a Pool takes the orphans of the workers
// its slot lost since its last ready worker (poolFork.inherit); a worker
// forked by hand takes the oldest orphan of a worker forked by hand (the
// user's replacement, as Node's exit handlers fork). When an orphan goes:
//   - taken, as above: it is the new member's socket;
//   - the pool forgets it (releaseOrphans): the replacement is ready and
//     did not take it, or the slot goes for good (scale down, stop, restart
//     policy, failed slot);
//   - the handle closes: for a worker forked by hand, when the handle's
//     last live worker leaves (a pool's orphan keeps its handle, and the
//     port, while the slot waits for its replacement).
//
// Going (except taken), an orphan is drained one last time (its queue
// accepted and rescued) and closed, as a departing worker's socket was
// before: what is in flight then is reset.

// orphan is a dead reuseport member's socket the primary keeps.
type orphan struct {
	from *Worker     // the worker that died
	kept bool        // a pool's: the handle stays for it (see members)
	sock *heldSocket // the primary's descriptor, kept out of its netpoller
	// poll is a duplicate in the netpoller, which the drainer waits on: an
	// *os.File of a non-blocking descriptor is polled, and its raw Read
	// waits for readability (a net.Listener's raw Read is not supported).
	poll *os.File
	// final, set before stop closes, makes the drainer drain the socket
	// one last time and close sock; unset, the socket was taken.
	final atomic.Bool
	stop  chan struct{} // closed to end the drainer
	done  chan struct{} // closed when the drainer has ended
}

// orphanDrainBatch bounds the connections the drainer accepts before it
// hands them on: the rest wait in the kernel's queue meanwhile.
const orphanDrainBatch = 4 * maxAdoptBatch

// newOrphan makes rm's socket an orphan of h and starts its drainer.
// Called with pt.mu held (h.mu not held).
func (h *reusePortHandle) newOrphan(w *Worker, rm *reuseMember, log *slog.Logger) *orphan {
	o := &orphan{from: w, sock: rm.sock, stop: make(chan struct{}), done: make(chan struct{})}
	o.kept = w.pool != nil && !w.pool.released
	dupFD, err := dupSocket(o.sock) // non-blocking: the flag is the socket's
	if err == nil {
		o.poll = os.NewFile(uintptr(dupFD), "herd-orphan")
	}
	if err != nil {
		// No netpoller for it: drain its queue now, and close it.
		log.Warn("herd: keeping a dead worker's socket failed; closing it", "handle", h.String(), "error", err)
		conns := acceptQueued(o.sock)
		o.sock.Close()
		if len(conns) > 0 {
			go h.rescue(conns, log)
		}
		return nil
	}
	go h.drainOrphan(o, log)
	return o
}

// drainOrphan accepts the connections the kernel queues on o's socket and
// hands them to the handle's other workers, until o is taken or goes.
func (h *reusePortHandle) drainOrphan(o *orphan, log *slog.Logger) {
	defer close(o.done)
	rc, err := o.poll.SyscallConn()
	for err == nil {
		h.mu.Lock()
		targets := h.hasTargetsLocked()
		if h.wake == nil {
			h.wake = make(chan struct{})
		}
		wake := h.wake
		h.mu.Unlock()
		if !targets {
			// Nobody to hand to: the kernel keeps them queued, for the
			// replacement or until a worker joins.
			select {
			case <-wake:
				continue
			case <-o.stop:
			}
			break
		}
		var conns []*os.File
		err = rc.Read(func(fd uintptr) bool {
			conns = acceptSome(int(fd), orphanDrainBatch, conns)
			return len(conns) > 0 // else wait until the socket is readable
		})
		if len(conns) > 0 {
			h.rescue(conns, log) // blocks while the workers refuse: backpressure
		}
		select {
		case <-o.stop:
			err = net.ErrClosed
		default:
		}
	}
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, os.ErrDeadlineExceeded) {
		log.Warn("herd: waiting on a dead worker's socket failed; it is drained only when it goes", "handle", h.String(), "error", err)
	}
	o.poll.Close()
	<-o.stop
	if o.final.Load() {
		if conns := acceptQueued(o.sock); len(conns) > 0 {
			h.rescue(conns, log)
		}
		o.sock.Close()
	}
}

// end ends o's drainer: final, it drains the socket and closes it;
// otherwise the socket was taken and stays open.
func (o *orphan) end(final bool) {
	o.final.Store(final)
	close(o.stop)
	// Wake a drainer waiting for the socket to be readable.
	_ = o.poll.SetReadDeadline(time.Unix(1, 0))
}

// hasTargetsLocked reports whether a member may take rescued connections.
// Called with h.mu held.
func (h *reusePortHandle) hasTargetsLocked() bool {
	for _, rm := range h.set.byMember {
		if !rm.stopped && !rm.sockless() {
			return true
		}
	}
	return false
}

// wakeOrphansLocked tells the orphans' drainers that the members changed.
// Called with h.mu held.
func (h *reusePortHandle) wakeOrphansLocked() {
	if h.wake != nil {
		close(h.wake)
	}
	h.wake = make(chan struct{})
}

// takeOrphanLocked removes and returns the orphan w's listener inherits,
// if there is one: for a pool's worker, one of the workers its slot lost;
// for a worker forked by hand, the oldest of a worker forked by hand.
// Called with h.mu held.
func (h *reusePortHandle) takeOrphanLocked(w *Worker) *orphan {
	i := slices.IndexFunc(h.orphans, func(o *orphan) bool {
		if w.pool != nil {
			return slices.Contains(w.pool.inherit, o.from)
		}
		return o.from.pool == nil
	})
	if i < 0 {
		return nil
	}
	o := h.orphans[i]
	h.orphans = slices.Delete(h.orphans, i, i+1)
	return o
}

// keptOrphansLocked counts the pool's orphans, which keep the handle.
// Called with h.mu held.
func (h *reusePortHandle) keptOrphansLocked() int {
	n := 0
	for _, o := range h.orphans {
		if o.kept {
			n++
		}
	}
	return n
}

// releaseOrphans makes the primary forget the sockets the workers ws left
// in reuseport handles: a pool calls it when no replacement will take
// them. Each is drained one last time and closed; a handle left with no
// member closes. A later death of one of ws leaves no orphan.
func (pt *portTable) releaseOrphans(ws []*Worker) {
	if len(ws) == 0 {
		return
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for _, w := range ws {
		if w.pool != nil {
			w.pool.released = true
		}
	}
	for key, ph := range pt.handles {
		h, ok := ph.(*reusePortHandle)
		if !ok {
			continue
		}
		h.mu.Lock()
		var gone []*orphan
		h.orphans = slices.DeleteFunc(h.orphans, func(o *orphan) bool {
			if slices.Contains(ws, o.from) {
				gone = append(gone, o)
				return true
			}
			return false
		})
		h.mu.Unlock()
		for _, o := range gone {
			o.end(true)
		}
		if len(gone) > 0 && h.members() == 0 {
			delete(pt.handles, key)
			h.close()
		}
	}
}

// acceptSome accepts up to max connections from the listening socket fd,
// without waiting, as blocking close-on-exec descriptors appended to
// conns.
func acceptSome(fd, max int, conns []*os.File) []*os.File {
	for len(conns) < max {
		nfd, err := acceptRaw(fd)
		switch err {
		case nil:
			conns = append(conns, os.NewFile(uintptr(nfd), "herd-rescued"))
		case syscall.EINTR, syscall.ECONNABORTED:
		default:
			return conns // EAGAIN: the queue is empty; anything else: give up
		}
	}
	return conns
}
