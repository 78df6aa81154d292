//go:build linux

package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// The kill-bound tests' worker: it listens on the address and policy it is
// asked, with WithAcceptAhead(k), and either serves HTTP (answering
// "w<ID>") or hoards: its server accepts connections
// and never touches them, as a net/http server whose goroutines have not
// run yet on a starved machine, and reports each accept to the primary.
// It serves TestService.Listen: the request's address, policy,
// accept_ahead and defer_accept, and hold (nobody accepts) or hoard; the
// default serves HTTP.
func aheadWorker() int {
	// However slow the machine, a hoarding server never gets more than its
	// bound: the patience fallback (for servers that accept several
	// connections before touching any) must not fire in these tests.
	runtime.SetAcceptAheadPatience(time.Hour)
	// A round-robin listener reports the connections its server used only
	// with its Accept reports: the primary keeps its copies of the ones a
	// hoard_read server read, and must see for itself that they were read.
	runtime.SetTakenFlushDelay(time.Hour)
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
	var (
		mu    sync.Mutex
		hoard []net.Conn
	)
	err = self.Register(runtime.NewUnaryHandler(testv1herd.TestServiceListenProcedure, func(ctx context.Context, req *testv1.ListenRequest) (*testv1.ListenResponse, error) {
		pol, err := runtime.ParseSchedulingPolicy(req.GetPolicy())
		if err != nil {
			return nil, err
		}
		opts, err := listenOptions(req) // listen_worker_test.go
		if err != nil {
			return nil, err
		}
		ln, err := runtime.Listen(ctx, req.GetNetwork(), req.GetAddress(), opts...)
		if err != nil {
			return nil, err
		}
		if got, _ := runtime.ListenerPolicy(ln); got != pol {
			ln.Close()
			return nil, fmt.Errorf("listener policy %v, want %v", got, pol)
		}
		switch {
		case req.GetHold() && (req.GetHoard() || req.GetHoardRead()):
			ln.Close()
			return nil, errors.New("hold and hoard both set")
		case req.GetHold(): // the runtime keeps the listener; nobody accepts
		case req.GetHoard() || req.GetHoardRead():
			read := req.GetHoardRead()
			report := func(n int) {
				rctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				self.Call(rctx, testv1herd.TestServiceReportProcedure, &testv1.ReportRequest{Message: fmt.Sprintf("accepted %d", n)}, &testv1.ReportResponse{})
				cancel()
			}
			go func() {
				for i := 0; !read || i < int(req.GetAcceptAhead()); i++ {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					mu.Lock()
					hoard = append(hoard, c)
					n := len(hoard)
					mu.Unlock()
					if !read {
						report(n)
					}
				}
				// hoard_read: the requests' first bytes, once all are
				// accepted (no Accept report after them tells the primary
				// they were read): the connections are used, their
				// requests gone from the kernel.
				for i, c := range hoard {
					c.SetReadDeadline(time.Now().Add(waitLimit))
					if _, err := c.Read(make([]byte, 1)); err != nil {
						fmt.Fprintln(os.Stderr, "hoard_read:", err)
						return
					}
					report(i + 1)
				}
			}()
		default:
			go srv.Serve(ln)
		}
		return &testv1.ListenResponse{Address: ln.Addr().String()}, nil
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

// TestKilledWorkerLosesAtMostItsAcceptAhead: a worker whose server
// accepts connections and does not get to them (a starved net/http server:
// its goroutines have not run) holds at most its WithAcceptAhead bound;
// when it is SIGKILLed, every other client is served by the other worker,
// whatever the policy: the connections it did not accept waited in the
// shared socket's queue, in its reuseport socket's queue (rescued by the
// primary), or with the round-robin primary. With SchedShared and
// SchedReusePort exactly the clients its server held fail. With
// SchedRoundRobin none does: the primary kept its copies of the accepted
// connections and gives those nobody read to the other worker; a server
// that did read from them (hoard_read) loses exactly those, and their
// clients see the connection end: a second worker would read what is left
// of their requests (and answer garbage, or wait for the rest until the
// client times out).
func TestKilledWorkerLosesAtMostItsAcceptAhead(t *testing.T) {
	const (
		k = 3  // the hoarding worker's bound
		n = 24 // clients
	)
	for _, tc := range []struct {
		pol  runtime.SchedulingPolicy
		read bool // the victim's server read from what it accepted
		lost int
	}{
		{pol: runtime.SchedShared, lost: k},
		{pol: runtime.SchedReusePort, lost: k},
		{pol: runtime.SchedRoundRobin, lost: 0},
		{pol: runtime.SchedRoundRobin, read: true, lost: k},
	} {
		name := tc.pol.String()
		if tc.read {
			name += "/read"
		}
		t.Run(name, func(t *testing.T) {
			pol := tc.pol
			c := newCluster(t)
			victim, other := c.fork("ahead"), c.fork("ahead")
			c.rec.waitFor(fmt.Sprintf("online %d", victim.ID()))
			c.rec.waitFor(fmt.Sprintf("online %d", other.ID()))
			// The victim listens alone first: every client goes its way.
			addr := aheadListen(t, victim, &testv1.ListenRequest{Address: "127.0.0.1:0", Policy: pol.String(), Hoard: !tc.read, HoardRead: tc.read, AcceptAhead: int32(k)})
			_, portStr, _ := net.SplitHostPort(addr)
			port, _ := strconv.Atoi(portStr)

			want := fmt.Sprintf("w%d", other.ID())
			var answered atomic.Int64
			results := make(chan error, n)
			for range n {
				conn, err := net.DialTimeout("tcp", addr, waitLimit)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { conn.Close() })
				conn.SetDeadline(time.Now().Add(waitLimit))
				if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")); err != nil {
					t.Fatal(err)
				}
				go func() {
					err := readAnswer(conn, want)
					if err == nil {
						answered.Add(1)
					}
					results <- err
				}()
			}
			// Its server takes k and waits for a place; with SchedShared
			// and SchedReusePort the others wait in the kernel's accept
			// queue of the socket it accepts from.
			c.rec.waitFor(fmt.Sprintf("report %d accepted %d", victim.ID(), k))
			if pol != runtime.SchedRoundRobin {
				for deadline := time.Now().Add(waitLimit); ; time.Sleep(time.Millisecond) {
					queued := 0
					for _, s := range listeners(t, port) {
						queued += s.queued
					}
					if queued == n-k {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("%d connections queued on port %d, want %d (the victim's server holds %d)", queued, port, n-k, k)
					}
				}
			} else if got := runtime.RoundRobinServed(victim); got != k {
				// Accept's reports precede the report of the accept on
				// the link: the primary holds a copy of each.
				t.Fatalf("the primary holds %d copies of connections the victim accepted, want %d", got, k)
			}
			if got := aheadListen(t, other, &testv1.ListenRequest{Address: "127.0.0.1:0", Policy: pol.String()}); got != addr {
				t.Fatalf("worker %d listens on %s, worker %d on %s", victim.ID(), addr, other.ID(), got)
			}
			if err := victim.Kill(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			failed := 0
			for range n {
				if err := <-results; err != nil {
					failed++
					t.Log(err)
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						t.Errorf("a client timed out (%v): its connection went to another worker after its request was read?", err)
					}
				}
			}
			c.waitExit(victim)
			if accepted := c.rec.of(victim.ID()); failed != tc.lost || int(answered.Load()) != n-tc.lost {
				t.Fatalf("%d clients failed, %d answered by worker %d; want %d failed, %d answered; the victim reported %q",
					failed, answered.Load(), other.ID(), tc.lost, n-tc.lost, accepted)
			}
		})
	}
}

// aheadListen asks an "ahead" worker to listen on TCP and returns the
// address.
func aheadListen(t *testing.T, w *runtime.Worker, req *testv1.ListenRequest) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req.Network = "tcp"
	res, err := testv1herd.NewTestServiceClient(w).Listen(ctx, req)
	if err != nil {
		t.Fatalf("worker %d listen %v: %v", w.ID(), req, err)
	}
	return res.GetAddress()
}

// TestDeferAcceptSetsTheSocketOption: WithDeferAccept reaches the socket
// the primary binds for a worker's Listen, under every policy (the primary
// holds a descriptor of it: the handle's socket, or with SchedReusePort
// each worker's), and a Listen outside a cluster; without it the option
// stays off.
func TestDeferAcceptSetsTheSocketOption(t *testing.T) {
	for _, pol := range []runtime.SchedulingPolicy{runtime.SchedShared, runtime.SchedReusePort, runtime.SchedRoundRobin} {
		t.Run(pol.String(), func(t *testing.T) {
			c := newCluster(t)
			a, b := c.fork("ahead"), c.fork("ahead")
			c.rec.waitFor(fmt.Sprintf("online %d", a.ID()))
			c.rec.waitFor(fmt.Sprintf("online %d", b.ID()))
			on := aheadListen(t, a, &testv1.ListenRequest{Address: "127.0.0.1:0", Policy: pol.String(), Hold: true, DeferAccept: true})
			if got := aheadListen(t, b, &testv1.ListenRequest{Address: "127.0.0.1:0", Policy: pol.String(), Hold: true}); got != on {
				t.Fatalf("worker %d listens on %s, worker %d on %s", a.ID(), on, b.ID(), got)
			}
			off := aheadListen(t, a, &testv1.ListenRequest{Address: "127.0.0.2:0", Policy: pol.String(), Hold: true})
			// The option applies when the Listen creates the handle: every
			// socket of the first address has it, none of the second.
			for addr, want := range map[string]bool{on: true, off: false} {
				fds := primaryListenFDs(t, addr)
				if len(fds) == 0 {
					t.Fatalf("the primary holds no listening socket on %s", addr)
				}
				for _, fd := range fds {
					v, err := syscall.GetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
					if err != nil {
						t.Fatal(err)
					}
					if (v != 0) != want {
						t.Errorf("%s: the primary's socket (fd %d) has TCP_DEFER_ACCEPT %d; want it set: %v", addr, fd, v, want)
					}
				}
			}
		})
	}
	t.Run("local", func(t *testing.T) {
		ln, err := runtime.Listen(context.Background(), "tcp", "127.0.0.1:0", runtime.WithDeferAccept())
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		rc, err := ln.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var v int
		var gerr error
		rc.Control(func(fd uintptr) {
			v, gerr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_DEFER_ACCEPT)
		})
		if gerr != nil || v == 0 {
			t.Fatalf("TCP_DEFER_ACCEPT %d, %v; want it set", v, gerr)
		}
	})
}

// primaryListenFDs returns this process's descriptors of the listening
// sockets on addr (127.0.0.x:port).
func primaryListenFDs(t *testing.T, addr string) []int {
	t.Helper()
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	ip := net.ParseIP(host).To4()
	local := fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], port)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	inodes := map[string]bool{}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) >= 10 && f[1] == local && f[3] == "0A" {
			inodes[f[9]] = true
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, e := range ents {
		l, err := os.Readlink("/proc/self/fd/" + e.Name())
		ino, ok := strings.CutPrefix(l, "socket:[")
		if err != nil || !ok || !inodes[strings.TrimSuffix(ino, "]")] {
			continue
		}
		fd, _ := strconv.Atoi(e.Name())
		fds = append(fds, fd)
	}
	return fds
}
