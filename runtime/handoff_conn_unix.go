//go:build unix

package runtime

import (
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// handoffConn is a round-robin connection a worker received from the
// primary, served on the received descriptor itself. net.FileConn, the
// only public way to make a *net.TCPConn of a descriptor, always
// duplicates it (and then sets it non-blocking, asks its type, both
// addresses, and sets TCP_NODELAY and four keep-alive options): about ten
// system calls per connection that this type does without.
//
//   - The primary accepts with SOCK_NONBLOCK (accept_linux.go), and the
//     status flag travels with the descriptor, so the *os.File the link
//     made of it on receipt is already registered with the netpoller:
//     Read, Write and the deadlines are the file's, with the file's
//     blocking semantics (goroutines park, deadlines interrupt).
//   - TCP_NODELAY and keep-alive (Go's defaults for an accepted
//     connection) are set once on the primary's listening socket and
//     inherited by every connection accepted from it (newRRHandle).
//   - The addresses are asked of the kernel (getsockname, getpeername) on
//     first use only; net/http asks for the remote one.
//
// Errors are *net.OpError values, as a *net.TCPConn returns them, so that
// servers recognise timeouts and closed connections (net/http answers a
// read error that is not a net.Error with "400 Bad Request").
//
// Close shuts the connection down (shutdown(2)) before it closes the
// descriptor: the primary may still hold its copy until it reads the
// worker's report that the connection was taken (rrListener.noteTaken), and
// a plain close of a descriptor that is not
// the last one would neither send the FIN nor free the socket; the
// primary's close would do it later, on the primary's CPU. A program that
// duplicates the descriptor (SyscallConn) to keep the connection open
// elsewhere after Close must therefore not use Close.
type handoffConn struct {
	f       *os.File
	network string    // "tcp" or "unix"
	rel     *releaser // WithMaxConnections: the place released by Close; nil for none
	closed  atomic.Bool
	laddr   atomic.Pointer[net.Addr]
	raddr   atomic.Pointer[net.Addr]

	// tr, when not nil, is told once (taken) that the server has used the
	// connection, which is its listener's place-th accepted one: until then
	// the primary keeps its own copy, to give the connection to another
	// worker if this one dies before its server read from it (see
	// rrListener.noteTaken).
	tr    *rrListener
	place uint64
	taken atomic.Bool
}

// newHandoffConn returns f as a connection on network, taking f, when the
// runtime polls it (its descriptor is non-blocking); otherwise it returns
// nil and leaves f to the caller (a descriptor from a primary that accepts
// blocking descriptors: net.FileConn makes a pollable duplicate). laddr
// is the listener's address: an accepted connection's local address is
// the same unless the listener's host is unspecified (0.0.0.0, ::).
func newHandoffConn(f *os.File, network string, laddr net.Addr) *handoffConn {
	// A file the netpoller does not know refuses deadlines; a pollable one
	// sets this (no) deadline without a system call.
	if err := f.SetDeadline(time.Time{}); err != nil {
		return nil
	}
	c := &handoffConn{f: f, network: network}
	switch a := laddr.(type) {
	case *net.TCPAddr:
		if a != nil && a.IP != nil && !a.IP.IsUnspecified() {
			c.laddr.Store(&laddr)
		}
	case *net.UnixAddr:
		if a != nil {
			c.laddr.Store(&laddr)
		}
	}
	return c
}

// opErr turns a file's error into a *net.OpError, as a *net.TCPConn
// reports it; io.EOF passes as it is.
func (c *handoffConn) opErr(op string, err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	// An *os.File's errors are *fs.PathErrors, and the usual one is its
	// deadline (net/http ends its background read of every keep-alive
	// request with one): both told without errors.As and errors.Is.
	if pe, ok := err.(*fs.PathError); ok {
		err = pe.Err
	}
	switch {
	case err == os.ErrDeadlineExceeded:
	case errors.Is(err, fs.ErrClosed):
		err = net.ErrClosed
	case errors.Is(err, os.ErrDeadlineExceeded):
		err = os.ErrDeadlineExceeded
	default:
		var errno syscall.Errno
		if errors.As(err, &errno) {
			err = os.NewSyscallError(op, errno)
		}
	}
	oe := &net.OpError{Op: op, Net: c.network, Err: err}
	if !c.closed.Load() {
		oe.Source, oe.Addr = c.LocalAddr(), c.RemoteAddr()
	}
	return oe
}

// use tells the connection's listener, once, that the server has used the
// connection (see tr).
func (c *handoffConn) use() {
	if c.tr != nil && !c.taken.Load() && c.taken.CompareAndSwap(false, true) {
		c.tr.noteTaken(c.place)
	}
}

// Read reads from the connection. The connection counts as used once a
// Read returned data or an error other than a deadline's: a server
// waiting in Read for a request that has not arrived has not used it yet,
// and if its worker dies the primary can still give the connection, with
// the request that arrives later, to another worker.
func (c *handoffConn) Read(b []byte) (int, error) {
	n, err := c.f.Read(b)
	if err != nil {
		err = c.opErr("read", err)
	}
	if c.tr != nil && !c.taken.Load() && (n > 0 || err != nil && !errors.Is(err, os.ErrDeadlineExceeded)) {
		c.use()
	}
	return n, err
}

// Write writes to the connection.
func (c *handoffConn) Write(b []byte) (int, error) {
	c.use()
	n, err := c.f.Write(b)
	if err != nil {
		err = c.opErr("write", err)
	}
	return n, err
}

// Close shuts the connection down and closes its descriptor, once; it
// releases the connection's place in its listener's WithMaxConnections
// limit. Later calls return an error wrapping net.ErrClosed.
func (c *handoffConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return &net.OpError{Op: "close", Net: c.network, Err: net.ErrClosed}
	}
	c.use()
	if c.rel != nil {
		defer c.rel.release()
	}
	// The FIN leaves now, from this process, even if the primary still
	// holds a copy of the descriptor (see the type's comment). Only the
	// writing side: a Read under way in another goroutine ends with
	// net.ErrClosed from the close, as on a *net.TCPConn, not with an EOF.
	// An error (ENOTCONN: the peer reset it already) changes nothing.
	_ = c.shutdown(unix.SHUT_WR)
	if err := c.f.Close(); err != nil {
		return &net.OpError{Op: "close", Net: c.network, Err: err}
	}
	return nil
}

// discard closes the descriptor without shutting the connection down (it
// goes to another worker) and releases its place.
func (c *handoffConn) discard() {
	if c.closed.CompareAndSwap(false, true) {
		if c.rel != nil {
			c.rel.release()
		}
		c.f.Close()
	}
}

// shutdown calls shutdown(2) on the descriptor.
func (c *handoffConn) shutdown(how int) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), how) }); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("shutdown", serr)
	}
	return nil
}

// CloseWrite shuts down the writing side of the connection (net/http
// calls it before a lingering close).
func (c *handoffConn) CloseWrite() error {
	c.use()
	if err := c.shutdown(unix.SHUT_WR); err != nil {
		return c.opErr("close", err)
	}
	return nil
}

// CloseRead shuts down the reading side of the connection.
func (c *handoffConn) CloseRead() error {
	c.use()
	if err := c.shutdown(unix.SHUT_RD); err != nil {
		return c.opErr("close", err)
	}
	return nil
}

// LocalAddr returns the connection's local address: its listener's when
// that is a specific one (newHandoffConn), else asked of the kernel once
// (getsockname; net/http asks for it per connection). syscall's
// Getsockname and Getpeername, not x/sys's, which ask an AF_INET socket
// its protocol too.
func (c *handoffConn) LocalAddr() net.Addr { return c.addr(&c.laddr, syscall.Getsockname) }

// RemoteAddr returns the connection's remote address (getpeername, asked
// once).
func (c *handoffConn) RemoteAddr() net.Addr { return c.addr(&c.raddr, syscall.Getpeername) }

// addr returns the cached address, or asks the kernel for it with get. It
// never returns nil: an address the kernel cannot give (the descriptor is
// closed, the peer has gone) is the zero address of the network's type,
// not cached.
func (c *handoffConn) addr(cache *atomic.Pointer[net.Addr], get func(int) (syscall.Sockaddr, error)) net.Addr {
	if a := cache.Load(); a != nil {
		return *a
	}
	var sa syscall.Sockaddr
	var err error = net.ErrClosed
	if rc, rerr := c.f.SyscallConn(); rerr == nil {
		if cerr := rc.Control(func(fd uintptr) { sa, err = get(int(fd)) }); cerr != nil {
			err = cerr
		}
	}
	a := sockaddrToAddr(c.network, sa)
	if err == nil {
		cache.Store(&a)
	}
	return a
}

// sockaddrToAddr converts a socket address to a net.Addr of network's
// type (a zero one for nil).
func sockaddrToAddr(network string, sa syscall.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *syscall.SockaddrInet6:
		a := &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a.Zone = ifi.Name
			}
		}
		return a
	case *syscall.SockaddrUnix:
		return &net.UnixAddr{Name: sa.Name, Net: "unix"}
	}
	if network == "unix" {
		return &net.UnixAddr{Net: "unix"}
	}
	return &net.TCPAddr{}
}

// SetDeadline sets the read and write deadlines.
func (c *handoffConn) SetDeadline(t time.Time) error {
	return c.deadlineErr(c.f.SetDeadline(t))
}

// SetReadDeadline sets the read deadline.
func (c *handoffConn) SetReadDeadline(t time.Time) error {
	return c.deadlineErr(c.f.SetReadDeadline(t))
}

// SetWriteDeadline sets the write deadline.
func (c *handoffConn) SetWriteDeadline(t time.Time) error {
	return c.deadlineErr(c.f.SetWriteDeadline(t))
}

func (c *handoffConn) deadlineErr(err error) error {
	if err != nil {
		return c.opErr("set", err)
	}
	return nil
}

// SyscallConn returns a raw network connection (its descriptor is the
// connection's own, valid until Close). What is done with it is not seen:
// the connection counts as used.
func (c *handoffConn) SyscallConn() (syscall.RawConn, error) {
	c.use()
	return c.f.SyscallConn()
}

// setsockopt sets an integer socket option.
func (c *handoffConn) setsockopt(level, opt, v int) error {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return c.opErr("set", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) }); err != nil {
		return c.opErr("set", err)
	}
	if serr != nil {
		return c.opErr("set", os.NewSyscallError("setsockopt", serr))
	}
	return nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// SetNoDelay sets TCP_NODELAY (on by default, as for a *net.TCPConn).
func (c *handoffConn) SetNoDelay(noDelay bool) error {
	return c.setsockopt(unix.IPPROTO_TCP, unix.TCP_NODELAY, boolInt(noDelay))
}

// SetKeepAlive turns TCP keep-alive on or off (on by default, as for a
// *net.TCPConn a listener accepted).
func (c *handoffConn) SetKeepAlive(keepalive bool) error {
	return c.setsockopt(unix.SOL_SOCKET, unix.SO_KEEPALIVE, boolInt(keepalive))
}

// SetLinger sets SO_LINGER, as *net.TCPConn's SetLinger does.
func (c *handoffConn) SetLinger(sec int) error {
	l := unix.Linger{}
	if sec >= 0 {
		l.Onoff, l.Linger = 1, int32(sec)
	}
	rc, err := c.f.SyscallConn()
	if err != nil {
		return c.opErr("set", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER, &l) }); err != nil {
		return c.opErr("set", err)
	}
	if serr != nil {
		return c.opErr("set", os.NewSyscallError("setsockopt", serr))
	}
	return nil
}

// SetReadBuffer sets the socket's receive buffer size.
func (c *handoffConn) SetReadBuffer(bytes int) error {
	return c.setsockopt(unix.SOL_SOCKET, unix.SO_RCVBUF, bytes)
}

// SetWriteBuffer sets the socket's send buffer size.
func (c *handoffConn) SetWriteBuffer(bytes int) error {
	return c.setsockopt(unix.SOL_SOCKET, unix.SO_SNDBUF, bytes)
}

// ReadFrom writes r's data to the connection: with sendfile(2) when r is
// a regular *os.File (or an *io.LimitedReader of one), as a *net.TCPConn
// does for net/http's file responses; by copying otherwise.
func (c *handoffConn) ReadFrom(r io.Reader) (int64, error) {
	c.use()
	n, handled, err := c.sendFile(r)
	if handled {
		if err != nil {
			err = c.opErr("readfrom", err)
		}
		return n, err
	}
	n2, err := io.Copy(writerOnly{c}, r)
	return n + n2, err
}

// writerOnly hides a writer's ReadFrom from io.Copy.
type writerOnly struct{ io.Writer }

// File returns a duplicate of the connection's descriptor, as
// *net.TCPConn's File does.
func (c *handoffConn) File() (*os.File, error) {
	c.use()
	rc, err := c.f.SyscallConn()
	if err != nil {
		return nil, c.opErr("file", err)
	}
	var nfd int
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = dupFD(int(fd)) }); err != nil {
		return nil, c.opErr("file", err)
	}
	if derr != nil {
		return nil, c.opErr("file", os.NewSyscallError("dup", derr))
	}
	return os.NewFile(uintptr(nfd), "herd-conn"), nil
}
