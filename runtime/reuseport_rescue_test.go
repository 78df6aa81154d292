//go:build linux

package runtime_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// reusePortWorker is the reuseport rescue tests' worker: its Listen listens
// with SchedReusePort and either serves HTTP (answering "w<ID>"), or with
// hold keeps the listener without ever accepting, so that the connections
// the kernel routes to its socket wait in that socket's accept queue. With
// HERD_TEST_DEFER_ACCEPT set it listens WithDeferAccept.
func reusePortWorker() int {
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		return 10
	}
	id := self.ID()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "w%d", id)
	})}
	self.OnDisconnect(srv.Shutdown)
	err = self.Register(runtime.NewUnaryHandler(testv1herd.TestServiceListenProcedure, func(ctx context.Context, req *testv1.ListenRequest) (*testv1.ListenResponse, error) {
		opts := []runtime.ListenOption{runtime.WithSchedulingPolicy(runtime.SchedReusePort)}
		if os.Getenv("HERD_TEST_DEFER_ACCEPT") != "" {
			opts = append(opts, runtime.WithDeferAccept())
		}
		ln, err := runtime.Listen(ctx, req.GetNetwork(), req.GetAddress(), opts...)
		if err != nil {
			return nil, err
		}
		if pol, _ := runtime.ListenerPolicy(ln); pol != runtime.SchedReusePort {
			ln.Close()
			return nil, fmt.Errorf("listener policy %v", pol)
		}
		if !req.GetHold() {
			go srv.Serve(ln)
		} // hold: the runtime keeps the listener; nobody accepts
		return &testv1.ListenResponse{Address: ln.Addr().String(), Policy: policyName(ln)}, nil
	}))
	if err != nil {
		return 11
	}
	if err := self.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "Start:", err)
		return 12
	}
	<-self.Done()
	select {}
}

// TestReusePortDeadWorkerQueueRescued: connections waiting in the accept
// queue of a worker's SO_REUSEPORT socket when the worker is SIGKILLed (or
// disconnects) are accepted by the primary and served by the other worker:
// every client is answered, none is reset. A killed worker's socket stays
// in the group (the primary keeps it for a replacement); a disconnected
// worker's is closed.
func TestReusePortDeadWorkerQueueRescued(t *testing.T) {
	for _, how := range []string{"kill", "disconnect"} {
		t.Run(how, func(t *testing.T) {
			c := newCluster(t)
			a, b := c.fork("reuseport"), c.fork("reuseport")
			c.rec.waitFor(fmt.Sprintf("online %d", a.ID()))
			c.rec.waitFor(fmt.Sprintf("online %d", b.ID()))
			addr := reuseListen(t, a, "127.0.0.1:0", true)
			if got := reuseListen(t, b, "127.0.0.1:0", false); got != addr {
				t.Fatalf("worker %d listens on %s, worker %d on %s", a.ID(), addr, b.ID(), got)
			}
			_, portStr, _ := net.SplitHostPort(addr)
			port, _ := strconv.Atoi(portStr)
			holdInode := listenInodes(t, a.PID(), port)
			if len(holdInode) != 1 {
				t.Fatalf("worker %d holds listening sockets %v on port %d, want one", a.ID(), holdInode, port)
			}

			// Clients: the kernel routes each to one of the two sockets by
			// its address; those routed to worker a's wait in its queue.
			const n = 40
			want := fmt.Sprintf("w%d", b.ID())
			var answered atomic.Int64
			results := make(chan error, n)
			for range n {
				conn, err := net.DialTimeout("tcp", addr, waitLimit)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				conn.SetDeadline(time.Now().Add(waitLimit))
				if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				go func() {
					results <- readAnswer(conn, want)
					answered.Add(1)
				}()
			}
			// Wait until every connection is either answered or queued
			// at worker a: no handshake is in flight any more.
			var held int
			for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
				held = acceptQueue(t, port, holdInode[0])
				if int(answered.Load())+held == n {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d answered, %d queued at worker %d, of %d", answered.Load(), held, a.ID(), n)
				}
			}
			if held == 0 {
				t.Fatalf("no connection of %d went to worker %d's socket", n, a.ID())
			}
			t.Logf("%d connections wait in worker %d's accept queue", held, a.ID())

			switch how {
			case "kill":
				if err := a.Kill(syscall.SIGKILL); err != nil {
					t.Fatal(err)
				}
			case "disconnect":
				if err := a.Disconnect(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			for range n {
				if err := <-results; err != nil {
					t.Error(err)
				}
			}
			c.waitExit(a)
			if how == "kill" {
				// The primary keeps the dead worker's socket listening.
				if ls := listeners(t, port); len(ls) != 2 || (ls[0].inode != holdInode[0] && ls[1].inode != holdInode[0]) {
					t.Errorf("listening sockets on port %d: %v, want worker %d's socket %s still there", port, ls, a.ID(), holdInode[0])
				}
				return
			}
			// The primary closed its copy of the departed worker's socket:
			// only worker b's listens on the port.
			for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
				if len(listeners(t, port)) == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("listening sockets on port %d: %v, want worker %d's alone", port, listeners(t, port), b.ID())
				}
			}
		})
	}
}

// TestReusePortAdoptedConnectionsGoBack: connections rescued from a dead
// worker and adopted by a second worker whose server never accepts them go
// back to the primary when that worker disconnects, with its own queue,
// and a third worker serves them all.
func TestReusePortAdoptedConnectionsGoBack(t *testing.T) {
	c := newCluster(t)
	a, b, srv := c.fork("reuseport"), c.fork("reuseport"), c.fork("reuseport")
	for _, w := range []*runtime.Worker{a, b, srv} {
		c.rec.waitFor(fmt.Sprintf("online %d", w.ID()))
	}
	// Join order a, b, srv: a's queue goes to b first (the next in turn).
	addr := reuseListen(t, a, "127.0.0.1:0", true)
	reuseListen(t, b, "127.0.0.1:0", true)
	reuseListen(t, srv, "127.0.0.1:0", false)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	inodeA, inodeB := listenInodes(t, a.PID(), port), listenInodes(t, b.PID(), port)
	if len(inodeA) != 1 || len(inodeB) != 1 {
		t.Fatalf("listening sockets: worker %d %v, worker %d %v", a.ID(), inodeA, b.ID(), inodeB)
	}
	const n = 60
	want := fmt.Sprintf("w%d", srv.ID())
	var answered atomic.Int64
	results := make(chan error, n)
	for range n {
		conn, err := net.DialTimeout("tcp", addr, waitLimit)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(waitLimit))
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		go func() {
			results <- readAnswer(conn, want)
			answered.Add(1)
		}()
	}
	var atA, atB int
	for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
		atA, atB = acceptQueue(t, port, inodeA[0]), acceptQueue(t, port, inodeB[0])
		if int(answered.Load())+atA+atB == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d answered, %d and %d queued, of %d", answered.Load(), atA, atB, n)
		}
	}
	if atA == 0 {
		t.Fatalf("no connection of %d went to worker %d's socket", n, a.ID())
	}
	if err := a.Kill(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.waitExit(a)
	// Worker b adopted a's queue and never accepts: those clients wait.
	// Its disconnect gives them back, with its own queue, to srv.
	if err := b.Disconnect(context.Background()); err != nil {
		t.Fatal(err)
	}
	for range n {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	c.waitExit(b)
	t.Logf("%d connections rescued from worker %d, %d from worker %d", atA, a.ID(), atB, b.ID())
}

// reuseListen asks a "reuseport" worker to listen on addr, holding the
// listener without accepting when hold is set, and returns the address.
func reuseListen(t *testing.T, w *runtime.Worker, addr string, hold bool) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	res, err := testv1herd.NewTestServiceClient(w).Listen(ctx, &testv1.ListenRequest{Network: "tcp", Address: addr, Policy: "reuseport", Hold: hold})
	if err != nil {
		t.Fatalf("worker %d listen %s (hold %t): %v", w.ID(), addr, hold, err)
	}
	return res.GetAddress()
}

// readAnswer reads one response from conn and checks it is 200 with body
// want.
func readAnswer(conn net.Conn, want string) error {
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("client %s: %w", conn.LocalAddr(), err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("client %s: body: %w", conn.LocalAddr(), err)
	}
	if resp.StatusCode != 200 || string(b) != want {
		return fmt.Errorf("client %s: %d %q, want 200 %q", conn.LocalAddr(), resp.StatusCode, b, want)
	}
	return nil
}

// listenSocket is a listening TCP socket on 127.0.0.1 from /proc/net/tcp.
type listenSocket struct {
	inode  string
	queued int // the accept queue's length
}

// listeners returns the listening sockets on 127.0.0.1:port.
func listeners(t *testing.T, port int) []listenSocket {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	var out []listenSocket
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		// sl local rem st tx:rx tr:when retrnsmt uid timeout inode
		if len(f) < 10 || f[1] != local || f[3] != "0A" {
			continue
		}
		_, rx, _ := strings.Cut(f[4], ":")
		q, _ := strconv.ParseInt(rx, 16, 64) // for a listener: the accept queue
		out = append(out, listenSocket{inode: f[9], queued: int(q)})
	}
	return out
}

// acceptQueue returns the accept queue's length of the listening socket
// with the given inode on port.
func acceptQueue(t *testing.T, port int, inode string) int {
	t.Helper()
	for _, s := range listeners(t, port) {
		if s.inode == inode {
			return s.queued
		}
	}
	t.Fatalf("no listening socket %s on port %d", inode, port)
	return 0
}

// listenInodes returns the inodes of process pid's listening sockets on
// 127.0.0.1:port.
func listenInodes(t *testing.T, pid, port int) []string {
	t.Helper()
	mine := make(map[string]bool)
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		l, err := os.Readlink(filepath.Join(dir, e.Name()))
		if ino, ok := strings.CutPrefix(l, "socket:["); err == nil && ok {
			mine[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []string
	for _, s := range listeners(t, port) {
		if mine[s.inode] {
			out = append(out, s.inode)
		}
	}
	return out
}

// dialN opens n connections to addr, closed at the end of the test.
func dialN(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	for i := range conns {
		conn, err := net.DialTimeout("tcp", addr, waitLimit)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(waitLimit))
		conns[i] = conn
	}
	return conns
}

// request sends each conn an HTTP request and returns a channel with each
// one's readAnswer.
func request(t *testing.T, conns []net.Conn, want string) <-chan error {
	t.Helper()
	results := make(chan error, len(conns))
	for _, conn := range conns {
		if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		go func() { results <- readAnswer(conn, want) }()
	}
	return results
}

// synRecv counts the connections in the SYN queues of port's listeners
// (requests whose handshake has not completed, or with TCP_DEFER_ACCEPT
// whose first data has not arrived), from /proc/net/tcp.
func synRecv(t *testing.T, port int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	n := 0
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) >= 4 && f[1] == local && f[3] == "03" {
			n++
		}
	}
	return n
}

// TestReusePortKilledWorkerDeferredServed: with WithDeferAccept, a client
// whose handshake completed and whose request has not arrived is a request
// in the SYN queue of the listener the kernel chose, out of its accept
// queue. When that listener's worker is SIGKILLed, the socket stays in the
// group (the primary keeps and drains it), so such clients, sending their
// requests after the death, are served by the other worker. Before, the
// primary closed the socket once it had taken its accept queue, and the
// kernel answered those requests with resets (unless
// net.ipv4.tcp_migrate_req=1). Each client goes to the killed worker's
// socket with probability 1/2 (the kernel's hash of its address).
func TestReusePortKilledWorkerDeferredServed(t *testing.T) {
	c := newCluster(t)
	env := runtime.WithForkEnv("HERD_TEST_DEFER_ACCEPT=1")
	a, b := c.fork("reuseport", env), c.fork("reuseport", env)
	c.rec.waitFor(fmt.Sprintf("online %d", a.ID()))
	c.rec.waitFor(fmt.Sprintf("online %d", b.ID()))
	addr := reuseListen(t, a, "127.0.0.1:0", true)
	reuseListen(t, b, "127.0.0.1:0", false)
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)

	const n = 40
	conns := dialN(t, addr, n)
	// Their handshakes completed (the kernel defers them for about a
	// second: after that they would be queued for accept without data).
	t.Logf("%d of %d connections deferred in SYN queues before the kill", synRecv(t, port), n)
	if err := a.Kill(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The primary has dropped worker a's listener before it queues the
	// disconnect event.
	c.rec.waitFor(fmt.Sprintf("disconnect %d", a.ID()))
	results := request(t, conns, fmt.Sprintf("w%d", b.ID()))
	for range n {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	c.waitExit(a)
}

// TestReusePortPoolReplacementInheritsSocket: a pool of one worker, which
// listens with WithDeferAccept and never accepts, is SIGKILLed while
// connections wait on its SO_REUSEPORT socket, queued for accept and
// deferred (handshake done, request not sent yet), with no other worker to
// hand them to. The socket stays (the handle, and its port, with it), the
// pool's replacement listens on that same socket, and serves them all, the
// deferred ones sending their requests after the death.
func TestReusePortPoolReplacementInheritsSocket(t *testing.T) {
	c, pl := newPool(t, "reuseport", runtime.WithPoolSize(1), runtime.WithWatchdog(0),
		runtime.WithPoolForkOptions(runtime.WithForkEnv("HERD_TEST_DEFER_ACCEPT=1")))
	startPool(t, pl)
	c.rec.waitFor("online 1")
	w1, _ := c.p.Worker(1)
	addr := reuseListen(t, w1, "127.0.0.1:0", true)
	c.rec.waitFor("ready 1 slot=0")
	_, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	inode := listenInodes(t, w1.PID(), port)
	if len(inode) != 1 {
		t.Fatalf("worker 1 holds listening sockets %v on port %d, want one", inode, port)
	}

	const n = 20
	queued := dialN(t, addr, n)
	queuedRes := request(t, queued, "w2")
	for deadline := time.Now().Add(waitLimit); acceptQueue(t, port, inode[0]) < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d connections queued at worker 1", acceptQueue(t, port, inode[0]), n)
		}
	}
	deferred := dialN(t, addr, n)
	t.Logf("%d connections deferred in the SYN queue before the kill", synRecv(t, port))

	if err := w1.Kill(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.rec.waitFor("online 2")
	w2, _ := c.p.Worker(2)
	if got := reuseListen(t, w2, "127.0.0.1:0", false); got != addr {
		t.Errorf("the replacement listens on %s, want %s", got, addr)
	}
	if got := listenInodes(t, w2.PID(), port); len(got) != 1 || got[0] != inode[0] {
		t.Errorf("the replacement's listening sockets %v, want worker 1's %s", got, inode[0])
	}
	deferredRes := request(t, deferred, "w2")
	for range n {
		if err := <-queuedRes; err != nil {
			t.Error("queued:", err)
		}
		if err := <-deferredRes; err != nil {
			t.Error("deferred:", err)
		}
	}
	c.rec.waitFor("ready 2 slot=0")
	if ls := listeners(t, port); len(ls) != 1 {
		t.Errorf("listening sockets on port %d: %v, want the one", port, ls)
	}
}
