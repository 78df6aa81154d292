//go:build unix

package runtime

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	herdtest "github.com/herd-go/herd/runtime/internal/leakcheck"
)

// TestAcceptAheadBound: Accept waits while the bound's count of returned
// connections is not begun; a first Read, Write or Close gives a place
// back; the wait ends with the listener's Close. Counts, not timing: the
// patience is made long.
func TestAcceptAheadBound(t *testing.T) {
	base := herdtest.Take()
	defer herdtest.Check(t, base, 10*time.Second)
	old := acceptAheadPatience
	acceptAheadPatience = time.Hour
	defer func() { acceptAheadPatience = old }()

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := aheadListen(inner, newAcceptGate(2))
	defer ln.Close()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	for range 4 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	accepted := make(chan net.Conn, 4)
	errs := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				errs <- err
				return
			}
			accepted <- c
		}
	}()
	a, b := <-accepted, <-accepted
	defer a.Close()
	defer b.Close()
	if _, ok := a.(*aheadTCPConn); !ok {
		t.Fatalf("Accept returned %T, want *aheadTCPConn (keeping *net.TCPConn's methods)", a)
	}
	// Two places taken: the third Accept waits, with two clients queued.
	if got := len(ln.(*aheadListener).gate.places); got != 2 {
		t.Fatalf("%d places taken, want 2", got)
	}
	// A Read begins a: one more is accepted, and only one.
	buf := make([]byte, 1)
	if _, err := io.ReadFull(a, buf); err != nil {
		t.Fatal(err)
	}
	c := <-accepted
	// b's and c's places are taken: d waits. Closing c gives its place.
	if len(accepted) != 0 {
		t.Fatal("a fourth connection was accepted with b and c not begun")
	}
	c.Close()
	d := <-accepted
	defer d.Close()
	// Reading a again or closing it changes nothing: its place is back.
	a.Close()
	if got := len(ln.(*aheadListener).gate.places); got != 2 {
		t.Fatalf("%d places taken, want 2 (b and d)", got)
	}
	// Close ends the Accept that waits for a place.
	ln.Close()
	if err := <-errs; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
	select {
	case c := <-accepted:
		t.Fatalf("a fifth connection %v was accepted beyond the bound", c.RemoteAddr())
	default:
	}
}

// TestAcceptAheadPatience: a server that accepts more connections than its
// bound before it touches any is slowed, not stuck: after the patience an
// Accept takes the next connection, which holds no place.
func TestAcceptAheadPatience(t *testing.T) {
	base := herdtest.Take()
	defer herdtest.Check(t, base, 10*time.Second)
	old := acceptAheadPatience
	acceptAheadPatience = time.Millisecond
	defer func() { acceptAheadPatience = old }()

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := aheadListen(inner, newAcceptGate(1))
	defer ln.Close()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i := range 3 {
		c, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		_, placed := c.(*aheadTCPConn)
		if placed != (i == 0) {
			t.Fatalf("connection %d: %T; only the first holds a place", i, c)
		}
	}
}

// TestAcceptAheadOff: WithAcceptAhead(-1) leaves the listener as it is.
func TestAcceptAheadOff(t *testing.T) {
	if g := newAcceptGate(-1); g != nil {
		t.Fatalf("newAcceptGate(-1) = %v, want nil", g)
	}
	if g := newAcceptGate(0); cap(g.places) != defaultAcceptAhead {
		t.Fatalf("default bound %d, want %d", cap(g.places), defaultAcceptAhead)
	}
}
