//go:build unix

package runtime_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
)

// heldConn is a keep-alive HTTP connection the test holds open.
type heldConn struct {
	t   *testing.T
	c   net.Conn
	br  *bufio.Reader
	who string // the body of its first response
}

// hold opens a keep-alive connection to addr and makes one request on it.
func hold(t *testing.T, addr string) *heldConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	h := &heldConn{t: t, c: c, br: bufio.NewReader(c)}
	t.Cleanup(func() { c.Close() })
	who, err := h.get()
	if err != nil {
		t.Fatalf("held connection: %v", err)
	}
	h.who = who
	return h
}

// get makes one more request on the connection and returns the body.
func (h *heldConn) get() (string, error) {
	h.c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := io.WriteString(h.c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(h.br, nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// refusedConn checks that a new connection to addr is closed without an
// answer (not served, not left hanging).
func refusedConn(t *testing.T, addr, what string) {
	t.Helper()
	body, err := rawGet("tcp", addr, "/")
	switch {
	case err == nil:
		t.Errorf("%s: served by %s", what, body)
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Errorf("%s: left hanging: %v", what, err)
	}
}

// servedSoon makes new connections to addr until one is served (the ones
// before may be closed while the server has not yet closed a connection
// the client closed) and returns who served it.
func servedSoon(t *testing.T, addr string) string {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		body, err := rawGet("tcp", addr, "/")
		if err == nil {
			return body
		}
		if errors.Is(err, os.ErrDeadlineExceeded) || time.Now().After(deadline) {
			t.Fatalf("no connection served: %v", err)
		}
	}
}

// checkLimit checks a listener limited to n connections, served by who:
// n held connections are served, the next is closed, the held ones still
// work, and once one of them closes a new connection is served.
func checkLimit(t *testing.T, addr string, n int, who string) {
	t.Helper()
	held := make([]*heldConn, n)
	for i := range held {
		held[i] = hold(t, addr)
		if held[i].who != who {
			t.Fatalf("connection %d served by %q, want %q", i+1, held[i].who, who)
		}
	}
	refusedConn(t, addr, fmt.Sprintf("connection %d of a limit of %d", n+1, n))
	for i, h := range held {
		if body, err := h.get(); err != nil || body != who {
			t.Errorf("held connection %d: %q, %v", i+1, body, err)
		}
	}
	held[0].c.Close()
	if got := servedSoon(t, addr); got != who {
		t.Errorf("after one closed: served by %q, want %q", got, who)
	}
}

// TestListenMaxConnections: WithMaxConnections (Node's
// server.maxConnections) closes the connections beyond the limit: the
// primary does for a round-robin listener, the worker's listener for the
// other policies, and the listener outside a cluster.
func TestListenMaxConnections(t *testing.T) {
	for _, pol := range policies {
		t.Run(pol, func(t *testing.T) {
			c := newListenCluster(t)
			ws := c.start(1)
			addr, _ := c.listen(ws[0], "listen tcp 127.0.0.1:0 maxconns=2 policy="+pol)
			checkLimit(t, addr, 2, "w1")
		})
	}
	t.Run("local", func(t *testing.T) {
		ln, err := runtime.Listen(context.Background(), "tcp", "127.0.0.1:0", runtime.WithMaxConnections(2))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "local") })}
		done := make(chan struct{})
		go func() {
			srv.Serve(ln)
			close(done)
		}()
		defer func() {
			srv.Close()
			<-done
		}()
		checkLimit(t, ln.Addr().String(), 2, "local")
	})
}

// TestRoundRobinMaxConnectionsReroutes: a round-robin connection a worker
// refuses at its limit goes to a worker with room; when none has room it is
// closed.
func TestRoundRobinMaxConnectionsReroutes(t *testing.T) {
	c := newListenCluster(t)
	ws := c.start(2)
	var addr string
	for _, w := range ws {
		addr, _ = c.listen(w, "listen tcp 127.0.0.1:0 maxconns=1 policy=rr")
	}
	a := hold(t, addr)
	b := hold(t, addr) // round robin: the other worker
	if a.who == b.who {
		t.Fatalf("two connections on %s, whose limit is 1", a.who)
	}
	other := ws[0]
	if b.who == "w2" {
		other = ws[1]
	}
	// b's worker closes its end (its place is free again) and round robin
	// points at a's worker, which is full: the next connection is offered
	// to it, refused, and given to b's worker.
	b.c.Close()
	for deadline := time.Now().Add(waitLimit); c.do(other, "conns") != "0"; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not close its connection", b.who)
		}
	}
	if d := hold(t, addr); d.who != b.who {
		t.Errorf("after %s's connection closed: served by %s", b.who, d.who)
	}
	// Both are full: closed.
	refusedConn(t, addr, "a connection beyond both limits")
	refusedConn(t, addr, "another connection beyond both limits")
	if body, err := a.get(); err != nil || body != a.who {
		t.Errorf("held connection: %q, %v", body, err)
	}
}
