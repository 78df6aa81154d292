//go:build unix

package runtime

import (
	"context"
	"log/slog"
	"math"
	"os"
	"syscall"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// What a worker's death costs with SchedReusePort.
//
// Each worker accepts from its own SO_REUSEPORT socket, and the kernel
// queues every connection it routes to a socket on that socket alone. When
// the last descriptor of a listening socket closes, the kernel resets the
// connections in its accept queue, unless net.ipv4.tcp_migrate_req is 1
// (Linux 5.14+), which moves them to another socket of the group. The
// primary cannot count on that sysctl (it is off by default, and setting it
// is the administrator's call), so it keeps a descriptor of every worker's
// socket itself: a worker's death then closes nothing. Told of a graceful
// leave by CloseListener (or of a disconnected worker's exit by the end of
// its link), the primary accepts what is queued, closes its descriptor,
// and hands what it accepted to the handle's other workers with Adopt. A
// worker that died keeps its socket in the group instead, for its
// replacement, and the primary drains it meanwhile with the same rescue
// (primary_reuseport_orphan_unix.go).
//
// What remains, when a socket closes, is the handshakes in flight: a SYN
// the kernel routed to it whose final ACK arrives after the close finds no
// listener and the client gets a reset (with tcp_migrate_req, those move
// to another socket too). On loopback a handshake takes microseconds, so
// this is rare. With WithDeferAccept it is not: a connection whose
// handshake completed without data stays a request in the socket's SYN
// queue until its data arrives, out of the accept queue this rescue
// drains, and the close resets it too. That is why a dead worker's socket
// is not closed; a leaving worker's still is (reload, scale down, stop).
// The kill_failed_requests scenario of cmd/herd-bench measures a death
// with the requests the dead worker had already accepted (README, "What a
// worker's death costs").

const (
	// maxAdoptBatch bounds the connections one Adopt message carries.
	maxAdoptBatch = 64
	// rescueRetry is how long the primary waits before offering rescued
	// connections again when every worker refused them (their queues of
	// adopted connections were full, or they were leaving).
	rescueRetry = 5 * time.Millisecond
	// rescueTimeout bounds how long rescued connections wait for a worker
	// to take them; what is left then is closed.
	rescueTimeout = 10 * time.Second
)

// acceptQueued accepts every connection waiting in sc's accept queue,
// without waiting for more, as blocking close-on-exec descriptors.
func acceptQueued(sc syscall.Conn) []*os.File {
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var conns []*os.File
	_ = rc.Control(func(fd uintptr) { conns = acceptSome(int(fd), math.MaxInt, nil) })
	return conns
}

// rescue hands conns, rescued from the socket of a worker that left, to
// the handle's other workers, a batch at a time, round robin. A worker
// takes what its queue of adopted connections has room for and the rest
// go to the next; when every worker refused, the primary waits rescueRetry
// and tries again, for at most rescueTimeout. What no worker takes (or
// when none is left) is closed.
func (h *reusePortHandle) rescue(conns []*os.File, log *slog.Logger) {
	total := len(conns)
	defer func() {
		if len(conns) > 0 {
			log.Warn("herd: connections of a departed worker closed: no other worker took them",
				"handle", h.String(), "closed", len(conns), "rescued", total-len(conns))
		}
		closeFiles(conns)
	}()
	deadline := time.Now().Add(rescueTimeout)
	for len(conns) > 0 {
		targets := h.rescueTargets()
		if len(targets) == 0 {
			return
		}
		progress := false
		for _, m := range targets {
			if len(conns) == 0 {
				break
			}
			batch := conns[:min(len(conns), maxAdoptBatch)]
			h.noteOffered(m, batch)
			took := adopt(m, batch)
			closeFiles(conns[:took])
			conns = conns[took:]
			progress = progress || took > 0
		}
		if !progress {
			if time.Now().After(deadline) {
				return
			}
			time.Sleep(rescueRetry)
		}
	}
	log.Debug("herd: connections of a departed worker handed to the others", "handle", h.String(), "rescued", total)
}

// rescueTargets returns the members that may take rescued connections,
// starting with the next in turn.
func (h *reusePortHandle) rescueTargets() []*membership {
	h.mu.Lock()
	defer h.mu.Unlock()
	ms := &h.set
	n := len(ms.order)
	var out []*membership
	for i := range n {
		m := ms.order[(ms.next+i)%n]
		if rm := ms.get(m); rm != nil && !rm.stopped && !rm.sockless() {
			out = append(out, m)
		}
	}
	if n > 0 {
		ms.next = (ms.next + 1) % n
	}
	return out
}

// A worker that closes its listener gives back the adopted connections its
// server did not accept (CloseListener). The primary trusts no worker: it
// takes back only sockets it offered to that worker recently (by their
// socket cookie), so a worker cannot pass another worker a descriptor of
// its own making. A worker holds at most maxAdoptQueue unaccepted adopted
// connections, the last ones it took, so remembering the last
// maxAdoptQueue offered is enough.

// cookieRing remembers the cookies of the last maxAdoptQueue connections
// offered to a member.
type cookieRing struct {
	c    []uint64
	next int
}

func (r *cookieRing) add(c uint64) {
	if len(r.c) < maxAdoptQueue {
		r.c = append(r.c, c)
		return
	}
	r.c[r.next] = c
	r.next = (r.next + 1) % maxAdoptQueue
}

func (r *cookieRing) has(c uint64) bool {
	for _, x := range r.c {
		if x == c {
			return true
		}
	}
	return false
}

// noteOffered records the connections about to be offered to m, before the
// offer: the worker may give them back before the reply is handled here.
func (h *reusePortHandle) noteOffered(m *membership, conns []*os.File) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rm := h.set.get(m)
	if rm == nil {
		return
	}
	for _, f := range conns {
		if c, ok := socketCookie(f); ok {
			rm.offered.add(c)
		}
	}
}

// trustReturned keeps duplicates of the returned descriptors that are
// connections offered to this member (the runtime closes a call's files
// when its handler returns), and closes every returned file. rm may be nil
// (the member already left): nothing is kept.
func (rm *reuseMember) trustReturned(returned []*os.File, log *slog.Logger) []*os.File {
	var keep []*os.File
	bad := 0
	for _, f := range returned {
		if c, ok := socketCookie(f); ok && rm != nil && rm.offered.has(c) {
			if fd, err := dupConn(f); err == nil {
				keep = append(keep, os.NewFile(uintptr(fd), "herd-rescued"))
			}
		} else {
			bad++
		}
		f.Close()
	}
	if bad > 0 {
		log.Warn("herd: a worker gave back descriptors the primary did not offer it; closed", "count", bad)
	}
	return keep
}

// sockless reports a member of a UDP handle, which adopts nothing.
func (rm *reuseMember) sockless() bool { return rm.sock == nil }

// adopt offers conns to m's worker and returns how many it took, from the
// first; the primary's copies of those may then be closed. A failed call
// (the worker's link ended, or it does not know the listener) took none.
// The call has no deadline: it ends when the worker answers or its link
// ends.
func adopt(m *membership, conns []*os.File) int {
	files := make([]syscall.Conn, len(conns))
	for i, f := range conns {
		files[i] = f
	}
	req := &herdv1.AdoptRequest{ListenerId: m.id, Count: uint32(len(conns))}
	res, err := m.w.rpc.Adopt(context.Background(), req, WithFiles(files...))
	if err != nil {
		return 0
	}
	return min(int(res.GetAccepted()), len(conns))
}
