package herdhttp

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// listener wraps the connections of a listener that are not TLS ones, so
// that the drain sees what arrives on them.
type listener struct {
	net.Listener
	d *drain
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if _, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
		return c, nil // net/http needs the *tls.Conn (or its like) itself
	}
	return &conn{Conn: c}, nil
}

// conn is a server connection the drain can end between two requests
// without losing one that is arriving: it ends a connection through its
// read deadline, and takes that back when bytes arrive.
type conn struct {
	net.Conn
	h2 atomic.Bool // the client spoke HTTP/2 with prior knowledge (h2c)

	mu       sync.Mutex
	read     bool      // something was read (h2c checked)
	gotBytes bool      // bytes were read since the connection last went idle
	expired  bool      // the drain set the read deadline in the past
	deadline time.Time // the read deadline net/http asked for
}

// Read reads, and undoes the drain's deadline when a request arrives.
func (c *conn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		if n > 0 {
			if !c.read {
				c.read = true
				if n >= 3 && string(p[:3]) == "PRI" { // "PRI * HTTP/2.0": the h2c preface
					c.h2.Store(true)
				}
			}
			c.gotBytes = true
			if c.expired {
				c.expired = false
				_ = c.Conn.SetReadDeadline(c.deadline)
			}
			c.mu.Unlock()
			return n, err
		}
		if c.expired && errors.Is(err, os.ErrDeadlineExceeded) && pending(c.Conn) {
			// The drain's deadline fired as a request arrived: read it.
			c.expired = false
			_ = c.Conn.SetReadDeadline(c.deadline)
			c.mu.Unlock()
			continue
		}
		c.mu.Unlock()
		return n, err
	}
}

// idle records that the connection waits for its next request.
func (c *conn) idle() {
	c.mu.Lock()
	c.gotBytes = false
	c.mu.Unlock()
}

// expire ends the connection through its read deadline, unless bytes of
// a request have arrived; it reports whether it did.
func (c *conn) expire() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gotBytes || pending(c.Conn) {
		return false
	}
	c.expired = true
	_ = c.Conn.SetReadDeadline(aLongTimeAgo)
	return true
}

// SetReadDeadline records net/http's read deadline, and applies it unless
// the drain's is in force.
func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if c.expired {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

// SetDeadline is SetReadDeadline and the connection's SetWriteDeadline.
func (c *conn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if c.expired {
		return c.Conn.SetWriteDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

// CloseWrite half-closes the connection, as net/http does before closing
// one whose request body it did not read.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps net/http's sendfile and splice paths (io.ReaderFrom of the
// TCP connection).
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}
