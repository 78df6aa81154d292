//go:build unix

package runtime

import (
	"io"
	"net"
	goruntime "runtime"
	"sync/atomic"
	"time"
)

// What a worker's death costs, and how far its server accepts ahead.
//
// A SIGKILLed worker takes with it every connection its server had
// accepted and not answered yet. A net/http server accepts eagerly: its
// accept loop starts a goroutine per connection and calls Accept again at
// once, so on a busy machine it can hold many connections whose goroutines
// have not run yet, all lost if the worker dies. Connections it had not
// accepted survive: with SchedShared they stay in the socket's accept queue,
// which the other workers share; with SchedReusePort the primary rescues
// the dead worker's queue (reuseport_rescue.go); with SchedRoundRobin the
// primary re-routes what the worker's server had not accepted, and on Linux
// the TCP connections it had accepted and not used
// (primary_handle_rr_rescue_unix.go).
//
// So a worker's cluster listener bounds how far its server accepts ahead
// of its work: Accept waits while n connections it returned have not been
// begun. A connection is begun by the first Read, Write (ReadFrom,
// WriteTo, ReadMsgUnix, WriteMsgUnix), CloseRead, CloseWrite or Close
// called on it: its server's goroutine for it runs. A connection whose
// server reads it and waits for a request (an idle keep-alive client, a
// browser's preconnect) is begun and holds no place, so idle clients
// cannot stall the accept loop; what a long request holds is the server's
// business, not this bound's. A begun connection whose request has not
// arrived yet is lost with the worker too: WithDeferAccept keeps those in
// the kernel (deferaccept_linux.go).
//
// A server that accepts several connections before it touches any (a test
// pairing two clients, a proxy that accepts both ends first) would wait
// forever for a place with a bound smaller than its pairing: an Accept that
// has waited acceptAheadPatience returns the next connection anyway
// (counted in no place), so such a server is slowed, never stuck.

// defaultAcceptAhead is the bound of a SchedShared or SchedReusePort
// worker listener when Listen is not given WithAcceptAhead. cmd/herd-bench's
// kill scenario (README, "What a worker's death costs") measured it: with
// WithDeferAccept and this bound a killed worker's server held at most one
// connection in 20 kills; with WithDeferAccept alone one kill of five lost
// 22 connections whose goroutines had not read them; the HTTP throughput
// figures did not move beyond their noise.
//
// A SchedRoundRobin listener has no bound unless WithAcceptAhead asks for
// one: its primary already keeps every connection the server has not
// accepted, and with the bound the per-worker balance of connections
// drifted further from even.
const defaultAcceptAhead = 1

// acceptAheadPatience is how long an Accept waits for a place before it
// returns the next connection anyway. A variable for the tests, which make
// it long so that the bound holds however slow the machine.
var acceptAheadPatience = 100 * time.Millisecond

// acceptGate counts the connections a listener returned that are not begun
// yet, one token per connection in a channel of the bound's capacity.
type acceptGate struct {
	places chan struct{}
}

// newAcceptGate returns the gate for a WithAcceptAhead value: nil (no
// bound) when n < 0, the default bound when n == 0.
func newAcceptGate(n int) *acceptGate {
	switch {
	case n < 0:
		return nil
	case n == 0:
		n = defaultAcceptAhead
	}
	return &acceptGate{places: make(chan struct{}, n)}
}

// acquireYields is how many times an Accept that finds no place yields
// its processor (runtime.Gosched) and looks again before it waits with a
// timer. Under load a place is usually held only by the connection the
// server's accept loop has just started a goroutine for: that goroutine
// waits for a processor while the accept loop runs (with GOMAXPROCS=1, a
// Pool's default on a machine with as many CPUs as workers, it cannot run
// at all), and its first Read gives the place back. Yielding runs it at
// once. Arming the timer and parking in the select below for every
// connection cost a reuseport worker serving a new connection per request
// 0.66 µs per connection; with the yields acquire takes 0.08 µs (perf,
// cmd/herd-bench http_close; BenchmarkAcceptGate, README "Performance").
const acquireYields = 2

// acquire waits for a place. It returns true with a place taken, false
// when done ends the wait (the listener closed) or when the patience ran
// out (the connection then takes no place; ok is true).
func (g *acceptGate) acquire(done <-chan struct{}) (placed, ok bool) {
	select {
	case g.places <- struct{}{}:
		return true, true
	default:
	}
	for range acquireYields {
		goruntime.Gosched()
		select {
		case g.places <- struct{}{}:
			return true, true
		case <-done:
			return false, false
		default:
		}
	}
	t := time.NewTimer(acceptAheadPatience)
	defer t.Stop()
	select {
	case g.places <- struct{}{}:
		return true, true
	case <-done:
		return false, false
	case <-t.C:
		return false, true
	}
}

// release gives a place back.
func (g *acceptGate) release() { <-g.places }

// wrap returns c, holding a place when placed, so that its first use
// gives the place back. A TCP or unix connection keeps its type's methods
// (ReadFrom for sendfile, SetKeepAlive, ReadMsgUnix...); NetConn returns c.
func (g *acceptGate) wrap(c net.Conn, placed bool) net.Conn {
	if !placed {
		return c
	}
	// One allocation per connection: the place is in the wrapper.
	switch c := c.(type) {
	case *net.TCPConn:
		w := &aheadTCPConn{TCPConn: c}
		w.p.hold(g)
		return w
	case *net.UnixConn:
		w := &aheadUnixConn{UnixConn: c}
		w.p.hold(g)
		return w
	case *handoffConn:
		w := &aheadHandoffConn{handoffConn: c}
		w.p.hold(g)
		return w
	case readerFromWriterTo:
		w := &aheadCopyConn{Conn: c, rw: c}
		w.p.hold(g)
		return w
	}
	w := &aheadConn{Conn: c}
	w.p.hold(g)
	return w
}

// place is a connection's place in its listener's gate, until its first
// use.
type place struct {
	g    *acceptGate
	held atomic.Bool
}

// hold makes p hold a place of g, which the caller has taken.
func (p *place) hold(g *acceptGate) {
	p.g = g
	p.held.Store(true)
}

// begin gives the place back, once.
func (p *place) begin() {
	if p.held.Load() && p.held.CompareAndSwap(true, false) {
		p.g.release()
	}
}

// readerFromWriterTo is a connection with the copy fast paths of a TCP
// connection (a WithMaxConnections wrapper of one).
type readerFromWriterTo interface {
	net.Conn
	io.ReaderFrom
	io.WriterTo
}

// aheadTCPConn is a TCP connection holding a place until its first use.
type aheadTCPConn struct {
	*net.TCPConn
	p place
}

// Read begins the connection and reads from it.
func (c *aheadTCPConn) Read(b []byte) (int, error) { c.p.begin(); return c.TCPConn.Read(b) }

// Write begins the connection and writes to it.
func (c *aheadTCPConn) Write(b []byte) (int, error) { c.p.begin(); return c.TCPConn.Write(b) }

// ReadFrom begins the connection and writes r's data to it.
func (c *aheadTCPConn) ReadFrom(r io.Reader) (int64, error) {
	c.p.begin()
	return c.TCPConn.ReadFrom(r)
}

// WriteTo begins the connection and copies what it reads to w.
func (c *aheadTCPConn) WriteTo(w io.Writer) (int64, error) {
	c.p.begin()
	return c.TCPConn.WriteTo(w)
}

// CloseRead begins the connection and shuts its reading side.
func (c *aheadTCPConn) CloseRead() error { c.p.begin(); return c.TCPConn.CloseRead() }

// CloseWrite begins the connection and shuts its writing side.
func (c *aheadTCPConn) CloseWrite() error { c.p.begin(); return c.TCPConn.CloseWrite() }

// Close gives the connection's place back (if still held) and closes it.
func (c *aheadTCPConn) Close() error { c.p.begin(); return c.TCPConn.Close() }

// NetConn returns the connection this one wraps.
func (c *aheadTCPConn) NetConn() net.Conn { return c.TCPConn }

// aheadUnixConn is a unix connection holding a place until its first use.
type aheadUnixConn struct {
	*net.UnixConn
	p place
}

// Read begins the connection and reads from it.
func (c *aheadUnixConn) Read(b []byte) (int, error) { c.p.begin(); return c.UnixConn.Read(b) }

// Write begins the connection and writes to it.
func (c *aheadUnixConn) Write(b []byte) (int, error) { c.p.begin(); return c.UnixConn.Write(b) }

// ReadMsgUnix begins the connection and reads a message (with its
// descriptors) from it.
func (c *aheadUnixConn) ReadMsgUnix(b, oob []byte) (n, oobn, flags int, addr *net.UnixAddr, err error) {
	c.p.begin()
	return c.UnixConn.ReadMsgUnix(b, oob)
}

// WriteMsgUnix begins the connection and writes a message to it.
func (c *aheadUnixConn) WriteMsgUnix(b, oob []byte, addr *net.UnixAddr) (n, oobn int, err error) {
	c.p.begin()
	return c.UnixConn.WriteMsgUnix(b, oob, addr)
}

// CloseRead begins the connection and shuts its reading side.
func (c *aheadUnixConn) CloseRead() error { c.p.begin(); return c.UnixConn.CloseRead() }

// CloseWrite begins the connection and shuts its writing side.
func (c *aheadUnixConn) CloseWrite() error { c.p.begin(); return c.UnixConn.CloseWrite() }

// Close gives the connection's place back (if still held) and closes it.
func (c *aheadUnixConn) Close() error { c.p.begin(); return c.UnixConn.Close() }

// NetConn returns the connection this one wraps.
func (c *aheadUnixConn) NetConn() net.Conn { return c.UnixConn }

// aheadHandoffConn is a round-robin connection on its received
// descriptor (handoff_conn_unix.go) holding a place until its first use.
type aheadHandoffConn struct {
	*handoffConn
	p place
}

// Read begins the connection and reads from it.
func (c *aheadHandoffConn) Read(b []byte) (int, error) { c.p.begin(); return c.handoffConn.Read(b) }

// Write begins the connection and writes to it.
func (c *aheadHandoffConn) Write(b []byte) (int, error) { c.p.begin(); return c.handoffConn.Write(b) }

// ReadFrom begins the connection and writes r's data to it.
func (c *aheadHandoffConn) ReadFrom(r io.Reader) (int64, error) {
	c.p.begin()
	return c.handoffConn.ReadFrom(r)
}

// CloseRead begins the connection and shuts its reading side.
func (c *aheadHandoffConn) CloseRead() error { c.p.begin(); return c.handoffConn.CloseRead() }

// CloseWrite begins the connection and shuts its writing side.
func (c *aheadHandoffConn) CloseWrite() error { c.p.begin(); return c.handoffConn.CloseWrite() }

// Close gives the connection's place back (if still held) and closes it.
func (c *aheadHandoffConn) Close() error { c.p.begin(); return c.handoffConn.Close() }

// NetConn returns the connection this one wraps.
func (c *aheadHandoffConn) NetConn() net.Conn { return c.handoffConn }

// aheadCopyConn is a connection with copy fast paths holding a place
// until its first use.
type aheadCopyConn struct {
	net.Conn
	rw readerFromWriterTo
	p  place
}

// Read begins the connection and reads from it.
func (c *aheadCopyConn) Read(b []byte) (int, error) { c.p.begin(); return c.Conn.Read(b) }

// Write begins the connection and writes to it.
func (c *aheadCopyConn) Write(b []byte) (int, error) { c.p.begin(); return c.Conn.Write(b) }

// ReadFrom begins the connection and writes r's data to it.
func (c *aheadCopyConn) ReadFrom(r io.Reader) (int64, error) { c.p.begin(); return c.rw.ReadFrom(r) }

// WriteTo begins the connection and copies what it reads to w.
func (c *aheadCopyConn) WriteTo(w io.Writer) (int64, error) { c.p.begin(); return c.rw.WriteTo(w) }

// Close gives the connection's place back (if still held) and closes it.
func (c *aheadCopyConn) Close() error { c.p.begin(); return c.Conn.Close() }

// NetConn returns the connection this one wraps.
func (c *aheadCopyConn) NetConn() net.Conn { return c.Conn }

// aheadConn is any other connection holding a place until its first use.
type aheadConn struct {
	net.Conn
	p place
}

// Read begins the connection and reads from it.
func (c *aheadConn) Read(b []byte) (int, error) { c.p.begin(); return c.Conn.Read(b) }

// Write begins the connection and writes to it.
func (c *aheadConn) Write(b []byte) (int, error) { c.p.begin(); return c.Conn.Write(b) }

// Close gives the connection's place back (if still held) and closes it.
func (c *aheadConn) Close() error { c.p.begin(); return c.Conn.Close() }

// NetConn returns the connection this one wraps.
func (c *aheadConn) NetConn() net.Conn { return c.Conn }

// aheadListener bounds how far its server accepts ahead (a shared or
// reuseport worker listener).
type aheadListener struct {
	net.Listener
	gate   *acceptGate
	closed chan struct{}
	once   atomicOnce
}

// aheadListen wraps ln with gate g; ln itself when g is nil.
func aheadListen(ln net.Listener, g *acceptGate) net.Listener {
	if g == nil {
		return ln
	}
	return &aheadListener{Listener: ln, gate: g, closed: make(chan struct{})}
}

// Accept waits for a place, then for the next connection.
func (l *aheadListener) Accept() (net.Conn, error) {
	placed, ok := l.gate.acquire(l.closed)
	if !ok {
		return nil, &net.OpError{Op: "accept", Net: l.Addr().Network(), Addr: l.Addr(), Err: net.ErrClosed}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		if placed {
			l.gate.release()
		}
		return nil, err
	}
	return l.gate.wrap(c, placed), nil
}

// Close closes the listener and ends the Accept calls waiting for a place.
func (l *aheadListener) Close() error {
	if l.once.do() {
		close(l.closed)
	}
	return l.Listener.Close()
}

// atomicOnce is true for its first caller.
type atomicOnce struct{ done atomic.Bool }

func (o *atomicOnce) do() bool { return o.done.CompareAndSwap(false, true) }
