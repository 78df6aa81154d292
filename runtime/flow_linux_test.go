//go:build linux

package runtime_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	goruntime "runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// Flow control (issue 9, findings 5 and 6): a flood of user messages at a
// handler that does not return holds at most the receiver's byte budget,
// and never holds up control traffic (disconnects, replies), in either
// direction.

// flowBudget is the byte budget (WithMailboxBytes) both ends use in these
// tests; flowSlack is what a process may grow besides it (read buffers,
// the heap's own overhead).
const (
	flowBudget = 16 << 20
	flowSlack  = 48 << 20
)

// stalled is how long a single Send waits before the flooder says it is
// held back. It only decides when a line is printed, never a verdict: a
// flooder held back by load rather than by flow control makes the checks
// run early, on less memory, not fail.
const stalled = 300 * time.Millisecond

func floodSize() int {
	n, _ := strconv.Atoi(os.Getenv("HERD_TEST_FLOOD_SIZE"))
	return n
}

// flood sends fire-and-forget messages of size bytes through send until it
// fails for another reason than its context: the link has ended. The first
// time a Send is held back for longer than stalled, it calls onStall.
func flood(send func(ctx context.Context) error, onStall func()) {
	stalledOnce := false
	for {
		ctx, cancel := context.WithTimeout(context.Background(), stalled)
		err := send(ctx)
		cancel()
		switch {
		case err == nil:
		case runtime.CodeOf(err) == runtime.CodeDeadlineExceeded:
			if !stalledOnce {
				stalledOnce = true
				onStall()
			}
		default:
			return
		}
	}
}

// floodWorkerMain floods the primary with fire-and-forget messages and says
// "stalled" on stdout once it is held back.
func floodWorkerMain() int {
	self, err := runtime.NewSelf(runtime.WithMailboxBytes(flowBudget))
	if err != nil {
		return 10
	}
	if err := self.Start(context.Background()); err != nil {
		return 12
	}
	msg := &testv1.FloodRequest{Payload: []byte(strings.Repeat("x", floodSize()))}
	flood(func(ctx context.Context) error { return self.Send(ctx, testv1herd.TestServiceFloodProcedure, msg) },
		func() { fmt.Println("stalled") })
	<-self.Done()
	select {}
}

// sinkWorkerMain has a Flood handler that never returns; on SIGUSR1 it
// calls the primary's Ask and prints the call's error. It also listens on a
// round-robin address (printed) and greets every connection it is handed.
func sinkWorkerMain() int {
	self, err := runtime.NewSelf(runtime.WithMailboxBytes(flowBudget))
	if err != nil {
		return 10
	}
	if err := self.Register(runtime.NewUnaryHandler(testv1herd.TestServiceFloodProcedure, func(ctx context.Context, req *testv1.FloodRequest) (*testv1.FloodResponse, error) {
		select {}
	})); err != nil {
		return 11
	}
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	if err := self.Start(context.Background()); err != nil {
		return 12
	}
	ctx := context.Background()
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return 13
	}
	fmt.Printf("listening %s\n", ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hi\n"))
			c.Close()
		}
	}()
	if err := self.Call(ctx, testv1herd.TestServiceAskProcedure, &testv1.AskRequest{Message: "ready"}, &testv1.AskResponse{}); err != nil {
		return 14
	}
	for range usr1 {
		cctx, cancel := context.WithTimeout(ctx, waitLimit/2)
		err := self.Call(cctx, testv1herd.TestServiceAskProcedure, &testv1.AskRequest{Message: "call"}, &testv1.AskResponse{})
		cancel()
		fmt.Printf("call: %v\n", err)
	}
	return 0
}

// lines returns the lines of r on a channel, closed at EOF.
func lines(r io.ReadCloser) <-chan string {
	ch := make(chan string, 16)
	go func() {
		defer close(ch)
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// waitLine waits for the line want on ch.
func waitLine(t *testing.T, ch <-chan string, want string) {
	t.Helper()
	timeout := time.After(waitLimit)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("output ended before %q", want)
			}
			if l == want {
				return
			}
			t.Logf("output: %s", l)
		case <-timeout:
			t.Fatalf("no %q within %v", want, waitLimit)
		}
	}
}

// rss returns the resident set size of process pid ("self" for this one).
func rss(t *testing.T, pid string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no VmRSS in /proc/%s/status", pid)
	return 0
}

// TestFloodingWorkerDisconnectsGracefully: a worker floods a primary
// handler that does not return. The primary holds at most its byte budget
// of the worker's messages (1 MiB ones), and a graceful Disconnect of the
// flooding worker completes: the worker exits after the disconnect, not
// killed at the deadline, because its reply and its end of the link are
// not stuck behind its own flood.
func TestFloodingWorkerDisconnectsGracefully(t *testing.T) {
	for _, size := range []int{64, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			c := newCluster(t, runtime.WithSilent(true), runtime.WithMailboxBytes(flowBudget))
			if err := c.p.Register(runtime.NewUnaryHandler(testv1herd.TestServiceFloodProcedure, func(ctx context.Context, req *testv1.FloodRequest) (*testv1.FloodResponse, error) {
				<-release
				return nil, nil
			})); err != nil {
				t.Fatal(err)
			}
			goruntime.GC()
			debug.FreeOSMemory()
			before := rss(t, "self")
			w := c.fork("flood", runtime.WithForkEnv(fmt.Sprintf("HERD_TEST_FLOOD_SIZE=%d", size)))
			// The reader of out ends when the worker has exited (at the
			// latest when the cluster's cleanup kills it).
			out := lines(w.Stdout())
			defer unblock()
			w.Stderr().Close()
			waitLine(t, out, "stalled")
			grew := rss(t, "self") - before
			t.Logf("primary RSS grew by %.1f MiB with the worker held back (budget %d MiB)", float64(grew)/(1<<20), flowBudget>>20)
			if size >= 1<<20 && grew > flowBudget+flowSlack {
				t.Errorf("primary RSS grew by %d MiB under the flood; budget %d MiB + slack %d MiB", grew>>20, flowBudget>>20, flowSlack>>20)
			}

			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			start := time.Now()
			if err := w.Disconnect(ctx); err != nil {
				t.Fatalf("Disconnect of the flooding worker: %v (it was killed)", err)
			}
			t.Logf("graceful disconnect of the flooding worker took %v", time.Since(start).Round(time.Millisecond))
			unblock()
			ev := c.waitExit(w)
			if !ev.GetExitedAfterDisconnect() || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_CLEAN {
				t.Fatalf("exit %v, want a clean exit after disconnect", ev)
			}
		})
	}
}

// TestFloodedWorkerStillGetsReplies: the primary floods a worker whose
// handler does not return. The worker holds at most its byte budget (1 MiB
// messages), a call it makes to the primary still gets its reply, and
// connections of its round-robin listener are still handed to it: neither
// is stuck behind the flood.
func TestFloodedWorkerStillGetsReplies(t *testing.T) {
	for _, size := range []int{64, 1 << 20} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			c := newCluster(t, runtime.WithSilent(true), runtime.WithMailboxBytes(flowBudget))
			calls := make(chan string, 4)
			if err := c.p.Register(runtime.NewUnaryHandler(testv1herd.TestServiceAskProcedure, func(ctx context.Context, req *testv1.AskRequest) (*testv1.AskResponse, error) {
				calls <- req.GetMessage()
				return &testv1.AskResponse{}, nil
			})); err != nil {
				t.Fatal(err)
			}
			w := c.fork("sink")
			out := lines(w.Stdout())
			w.Stderr().Close()
			if m := <-calls; m != "ready" {
				t.Fatalf("first call %q", m)
			}
			var addr string
			select {
			case l := <-out:
				var ok bool
				if addr, ok = strings.CutPrefix(l, "listening "); !ok {
					t.Fatalf("worker said %q", l)
				}
			case <-time.After(waitLimit):
				t.Fatal("no address from the worker")
			}
			pid := strconv.Itoa(w.PID())
			before := rss(t, pid)

			stall := make(chan struct{})
			flooded := make(chan struct{})
			msg := &testv1.FloodRequest{Payload: []byte(strings.Repeat("x", size))}
			go func() {
				defer close(flooded)
				flood(func(ctx context.Context) error { return w.Send(ctx, testv1herd.TestServiceFloodProcedure, msg) }, func() { close(stall) })
			}()
			select {
			case <-stall:
			case <-flooded:
				t.Fatal("the flood ended before it was held back")
			}
			grew := rss(t, pid) - before
			t.Logf("worker RSS grew by %.1f MiB with the primary held back (budget %d MiB)", float64(grew)/(1<<20), flowBudget>>20)
			if size >= 1<<20 && grew > flowBudget+flowSlack {
				t.Errorf("worker RSS grew by %d MiB under the flood; budget %d MiB + slack %d MiB", grew>>20, flowBudget>>20, flowSlack>>20)
			}

			if err := syscall.Kill(w.PID(), syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			waitLine(t, out, "call: <nil>")
			if m := <-calls; m != "call" {
				t.Fatalf("second call %q", m)
			}
			for range 3 {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				conn.SetDeadline(time.Now().Add(waitLimit))
				b, err := io.ReadAll(conn)
				conn.Close()
				if string(b) != "hi\n" {
					t.Fatalf("connection to the flooded worker: read %q, %v", b, err)
				}
			}
			if err := w.Kill(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			<-flooded
			c.waitExit(w)
			for range out {
			}
		})
	}
}
