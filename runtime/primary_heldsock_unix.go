//go:build unix

package runtime

import (
	"io"
	"net"
	"sync"
	"syscall"
)

// heldSocket is a socket the primary keeps but never waits on (a shared
// handle's socket, the primary's copy of a reuseport worker's socket): a
// plain descriptor, not registered with the netpoller. A net.Listener or
// net.PacketConn is registered, edge-triggered, and each connection or
// datagram arriving on the socket would wake a primary thread blocked in
// epoll_wait for nothing: measured, about two epoll_wait returns per
// connection in a primary that handles none (herd-bench http_close,
// shared and reuseport).
//
// The descriptor keeps the socket's O_NONBLOCK (a status flag of the
// socket, shared with its duplicates), so accepting from it without
// waiting (acceptQueued) stops at EAGAIN.
type heldSocket struct {
	mu sync.Mutex
	fd int // -1 once closed
}

// holdSocket duplicates c's descriptor and closes closer (c's owner),
// which takes c out of the netpoller.
func holdSocket(c syscall.Conn, closer io.Closer) (*heldSocket, error) {
	fd, err := dupSocket(c)
	closer.Close()
	if err != nil {
		return nil, err
	}
	return &heldSocket{fd: fd}, nil
}

// SyscallConn returns the socket as a syscall.RawConn whose Control runs
// with the descriptor held open; it cannot wait (Read and Write fail).
func (s *heldSocket) SyscallConn() (syscall.RawConn, error) { return heldRaw{s}, nil }

// Close closes the descriptor, once.
func (s *heldSocket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return net.ErrClosed
	}
	closeFD(s.fd)
	s.fd = -1
	return nil
}

// heldRaw is a heldSocket's syscall.RawConn.
type heldRaw struct{ s *heldSocket }

func (r heldRaw) Control(f func(fd uintptr)) error {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if r.s.fd < 0 {
		return net.ErrClosed
	}
	f(uintptr(r.s.fd))
	return nil
}

func (r heldRaw) Read(func(fd uintptr) bool) error  { return syscall.EINVAL }
func (r heldRaw) Write(func(fd uintptr) bool) error { return syscall.EINVAL }
