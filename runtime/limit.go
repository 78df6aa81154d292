package runtime

import (
	"net"
	"sync"
	"sync/atomic"
)

// connLimit counts a listener's open connections against its limit
// (WithMaxConnections, Node's server.maxConnections).
type connLimit struct {
	max  int64
	open atomic.Int64
}

// newConnLimit returns a limit of n open connections; nil (no limit) when
// n <= 0.
func newConnLimit(n int) *connLimit {
	if n <= 0 {
		return nil
	}
	return &connLimit{max: int64(n)}
}

// acquire counts one more open connection, unless the limit is reached.
func (l *connLimit) acquire() bool {
	for {
		n := l.open.Load()
		if n >= l.max {
			return false
		}
		if l.open.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// release counts one connection closed.
func (l *connLimit) release() { l.open.Add(-1) }

// limitConn wraps c, counted by l, so that closing it releases its place.
// A TCP or unix connection keeps its type's methods (ReadFrom for
// sendfile, SetKeepAlive, CloseWrite...); NetConn returns the connection
// itself. Closing that one directly does not release the place.
func limitConn(c net.Conn, l *connLimit) net.Conn {
	r := &releaser{l: l}
	switch c := c.(type) {
	case *net.TCPConn:
		return &limitedTCPConn{TCPConn: c, r: r}
	case *net.UnixConn:
		return &limitedUnixConn{UnixConn: c, r: r}
	}
	return &limitedConn{Conn: c, r: r}
}

// releaser releases a connection's place once.
type releaser struct {
	l    *connLimit
	once sync.Once
}

func (r *releaser) release() { r.once.Do(r.l.release) }

// limitedTCPConn is a TCP connection counted by a listener's limit.
type limitedTCPConn struct {
	*net.TCPConn
	r *releaser
}

// Close closes the connection and releases its place in the listener's
// limit.
func (c *limitedTCPConn) Close() error {
	defer c.r.release()
	return c.TCPConn.Close()
}

// NetConn returns the connection this one wraps.
func (c *limitedTCPConn) NetConn() net.Conn { return c.TCPConn }

// limitedUnixConn is a unix connection counted by a listener's limit.
type limitedUnixConn struct {
	*net.UnixConn
	r *releaser
}

// Close closes the connection and releases its place in the listener's
// limit.
func (c *limitedUnixConn) Close() error {
	defer c.r.release()
	return c.UnixConn.Close()
}

// NetConn returns the connection this one wraps.
func (c *limitedUnixConn) NetConn() net.Conn { return c.UnixConn }

// limitedConn is any other connection counted by a listener's limit.
type limitedConn struct {
	net.Conn
	r *releaser
}

// Close closes the connection and releases its place in the listener's
// limit.
func (c *limitedConn) Close() error {
	defer c.r.release()
	return c.Conn.Close()
}

// NetConn returns the connection this one wraps.
func (c *limitedConn) NetConn() net.Conn { return c.Conn }

// limitListener closes the connections it accepts beyond its limit, as a
// Node server at its maxConnections does; the others count until closed.
type limitListener struct {
	net.Listener
	l *connLimit
}

// limitListen wraps ln with a limit of n open connections; ln itself when
// n <= 0.
func limitListen(ln net.Listener, n int) net.Listener {
	l := newConnLimit(n)
	if l == nil {
		return ln
	}
	return &limitListener{Listener: ln, l: l}
}

// Accept waits for the next connection within the limit, closing those
// beyond it.
func (ll *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if ll.l.acquire() {
			return limitConn(c, ll.l), nil
		}
		c.Close()
	}
}
