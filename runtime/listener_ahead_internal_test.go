//go:build unix

package runtime

import (
	"errors"
	"io"
	"net"
	goruntime "runtime"
	"sync"
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

// TestAcceptAheadYields: an Accept that finds no place first lets the
// goroutine holding it run. With one P the goroutine the server's accept
// loop just started cannot run while the loop waits for its place, and with
// a patience of a nanosecond the timer would end the wait at once: without
// the yields (acquireYields) no attempt gets a place; with them the
// started goroutine's first use gives its place back and Accept takes it.
// The scheduler may run the accept loop again before that goroutine (it
// takes the global queue first one time in 61), so one placed connection
// in five attempts is enough.
func TestAcceptAheadYields(t *testing.T) {
	old := acceptAheadPatience
	acceptAheadPatience = time.Nanosecond
	defer func() { acceptAheadPatience = old }()
	defer goruntime.GOMAXPROCS(goruntime.GOMAXPROCS(1))

	g := newAcceptGate(1)
	done := make(chan struct{})
	var conn net.Conn = &net.TCPConn{} // Close on it only returns EINVAL
	placedOnce := false
	for range 5 {
		for len(g.places) > 0 {
			g.release()
		}
		placed, ok := g.acquire(done)
		if !ok || !placed {
			t.Fatalf("acquire with a free place: placed %v ok %v", placed, ok)
		}
		c := g.wrap(conn, placed)
		ran := make(chan struct{})
		go func() {
			defer close(ran)
			c.Close() // its first use: gives the place back
		}()
		placed, ok = g.acquire(done)
		<-ran
		if !ok {
			t.Fatal("acquire: not ok with the listener open")
		}
		if placed {
			placedOnce = true
		}
	}
	if !placedOnce {
		t.Fatal("no Accept got the place its started connection gave back: it waited on the timer instead of yielding")
	}
}

// BenchmarkAcceptGate is the gate's part of an HTTP server's accept loop
// under a default bound: take a place, wrap the connection, start its
// goroutine, whose first use (here Close) gives the place back, and
// accept again. Run it with -cpu 1,2: a reuseport worker of a Pool with
// as many workers as CPUs runs GOMAXPROCS=1.
func BenchmarkAcceptGate(b *testing.B) {
	g := newAcceptGate(0)
	done := make(chan struct{})
	var conn net.Conn = &net.TCPConn{} // Close on it only returns EINVAL
	var wg sync.WaitGroup
	b.ReportAllocs()
	for b.Loop() {
		placed, _ := g.acquire(done)
		c := g.wrap(conn, placed)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Close()
		}()
	}
	wg.Wait()
}
