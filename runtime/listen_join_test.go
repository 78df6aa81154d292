//go:build unix

package runtime_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

// TestListenConcretePortJoinsHandle: a worker that listens on the port
// another worker got from ":0" joins that handle (Node gives EADDRINUSE,
// and lists the UDP case as a known issue); the worker that got the port
// listening on it again gets EADDRINUSE, as a second listen of one port
// does.
func TestListenConcretePortJoinsHandle(t *testing.T) {
	for _, pol := range policies {
		t.Run("tcp/"+pol, func(t *testing.T) {
			c := newListenCluster(t)
			ws := c.start(2)
			a1, p1 := c.listen(ws[0], "listen tcp 127.0.0.1:0 policy="+pol)
			a2, p2 := c.listen(ws[1], "listen tcp "+a1+" policy="+pol)
			if a2 != a1 || p2 != p1 {
				t.Fatalf("worker 2 on %s got %s (%s), want the handle of worker 1 (%s)", a1, a2, p2, p1)
			}
			seen := collect(t, "tcp", a1, 20)
			if seen["w1"]+seen["w2"] != 20 || (pol == "rr" && !rrBalanced(seen, 20, 2)) {
				t.Errorf("answers %v", seen)
			}
			if got := c.do(ws[0], "listen tcp "+a1+" policy="+pol); !strings.HasPrefix(got, "err EADDRINUSE") {
				t.Errorf("worker 1 listening again on its own port: %s", got)
			}
			// Worker 1 leaves; the handle stays, with worker 2.
			if got := c.do(ws[0], "close 0"); got != "ok" {
				t.Fatal(got)
			}
			if seen := collect(t, "tcp", a1, 6); seen["w2"] != 6 {
				t.Errorf("after worker 1 closed: %v", seen)
			}
			// And ":0" of worker 1 maps to the same handle again.
			if a, _ := c.listen(ws[0], "listen tcp 127.0.0.1:0 policy="+pol); a != a1 {
				t.Errorf("worker 1 back on :0 got %s, want %s", a, a1)
			}
		})
	}
	for _, pol := range []string{"shared", "reuseport"} {
		t.Run("udp/"+pol, func(t *testing.T) {
			c := newListenCluster(t)
			ws := c.start(2)
			udp := func(w int, addr string) string {
				got := c.do(ws[w], "udp udp "+addr+" policy="+pol)
				f := strings.Fields(got)
				if len(f) != 4 || f[0] != "ok" {
					t.Fatalf("worker %d udp %s: %s", w+1, addr, got)
				}
				return f[2]
			}
			a1 := udp(0, "127.0.0.1:0")
			if a2 := udp(1, a1); a2 != a1 {
				t.Fatalf("worker 2 on %s got %s", a1, a2)
			}
			if got := c.do(ws[0], "udp udp "+a1+" policy="+pol); !strings.HasPrefix(got, "err EADDRINUSE") {
				t.Errorf("worker 1 listening again on its own port: %s", got)
			}
			if got := c.do(ws[0], "close 0"); got != "ok" {
				t.Fatal(got)
			}
			// Only worker 2 reads the port now.
			raddr, err := net.ResolveUDPAddr("udp", a1)
			if err != nil {
				t.Fatal(err)
			}
			for i := range 6 {
				if who := udpAsk(t, raddr, fmt.Sprintf("m%d", i)); who != "w2" {
					t.Errorf("datagram %d answered by %s, want w2", i, who)
				}
			}
		})
	}
}

// udpAsk sends msg from a new socket and returns who answered.
func udpAsk(t *testing.T, raddr *net.UDPAddr, msg string) string {
	t.Helper()
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitLimit))
	if _, err := conn.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("datagram %q: %v", msg, err)
	}
	who, body, _ := strings.Cut(string(buf[:n]), ":")
	if body != msg {
		t.Fatalf("reply %q to %q", buf[:n], msg)
	}
	return who
}
