package runtime_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// The tests of issue 11's ready-only round robin, watchdog, recycling and
// exit causes. Their workers are roles of this test binary (superviseRoles,
// forked with herdtest.ForkRole).

var superviseRoles = herdtest.Roles{
	// sup-hang answers echo messages: "deadlock", "spin" and "stall" hang
	// it in three ways (each reports first); "work" counts a request
	// (RequestDone); "recycle:DETAIL" calls Self.Recycle. It reports its
	// request limit as it starts ("max N"). SUP_IGNORE_QUIT=1 ignores
	// SIGQUIT.
	"sup-hang": supHangWorker,
	// sup-gated listens on a round-robin port and answers each connection's
	// line with "ok ID ready=BOOL" (whether it had called Self.Ready). IDs
	// in SUP_READY_IDS call Ready at once, the others on "ready now".
	"sup-gated": supGatedWorker,
	// sup-serve answers "ok ID" per connection, counts each (RequestDone)
	// and drains its connections on disconnect.
	"sup-serve": supServeWorker,
	// sup-oom moves into the memory cgroup SUP_CGROUP before its
	// handshake, then allocates until the kernel kills it.
	"sup-oom": supOOMWorker,
}

func supSelf() *runtime.Self {
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		os.Exit(10)
	}
	return self
}

func supReport(self *runtime.Self, msg string) {
	_ = testv1herd.NewTestServiceClient(self).SendReport(context.Background(), &testv1.ReportRequest{Message: msg})
}

// waitStack waits until a goroutine's stack shows fn, blocked (not
// running) when blocked is set.
func waitStack(fn string, blocked bool) {
	buf := make([]byte, 1<<20)
	for {
		n := goruntime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			head, _, _ := strings.Cut(g, "\n")
			if strings.Contains(g, fn) && (!blocked || !strings.Contains(head, "running") && !strings.Contains(head, "runnable")) {
				return
			}
		}
		goruntime.Gosched()
	}
}

//go:noinline
func deadlockForever() {
	var mu sync.Mutex
	mu.Lock()
	mu.Lock()
}

// spinForever spins without touching memory (nothing for the race
// detector to instrument: its own code has no Go stack to dump).
//
//go:noinline
func spinForever(x uint64) uint64 {
	for x != 0 {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

func supHangWorker() int {
	if os.Getenv("SUP_IGNORE_QUIT") == "1" {
		signal.Ignore(syscall.SIGQUIT)
	}
	self := supSelf()
	err := self.Register(runtime.NewUnaryHandler(testv1herd.TestServiceEchoProcedure, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		switch msg := req.GetMessage(); {
		// Each reports once its goroutine dump would show it hung.
		case msg == "deadlock":
			go func() {
				waitStack("deadlockForever(", true)
				supReport(self, "stuck")
			}()
			deadlockForever()
		case msg == "spin":
			go func() {
				waitStack("spinForever(", false)
				supReport(self, "spinning")
			}()
			spinSink.Store(spinForever(uint64(time.Now().UnixNano()) | 1))
		case msg == "stall":
			runtime.StallLinkReader(self)
			supReport(self, "stalled")
			go func() {
				// Stuck once the next request (a heartbeat) comes.
				waitStack(".onFrame(", true)
				supReport(self, "reader stuck")
			}()
		case msg == "work":
			self.RequestDone()
		case strings.HasPrefix(msg, "recycle:"):
			if err := self.Recycle(ctx, strings.TrimPrefix(msg, "recycle:")); err != nil {
				supReport(self, "recycle: "+err.Error())
			} else {
				supReport(self, "recycle accepted")
			}
		}
		return &testv1.EchoResponse{}, nil
	}))
	if err != nil {
		return 11
	}
	if err := self.Start(context.Background()); err != nil {
		return 12
	}
	supReport(self, fmt.Sprintf("max %d", self.MaxRequests()))
	if slices.Contains(strings.Split(os.Getenv("SUP_READY_IDS"), ","), fmt.Sprint(self.ID())) {
		if err := self.Ready(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "Ready:", err)
		}
	}
	<-self.Done()
	select {}
}

func supGatedWorker() int {
	self := supSelf()
	ctx := context.Background()
	var saidReady atomic.Bool
	ready := func() {
		saidReady.Store(true)
		if err := self.Ready(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "Ready:", err)
		}
	}
	err := self.Register(runtime.NewUnaryHandler(testv1herd.TestServiceEchoProcedure, func(ctx context.Context, req *testv1.EchoRequest) (*testv1.EchoResponse, error) {
		if req.GetMessage() == "ready now" {
			ready()
		}
		return &testv1.EchoResponse{}, nil
	}))
	if err != nil {
		return 11
	}
	if err := self.Start(ctx); err != nil {
		return 12
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0", runtime.WithSchedulingPolicy(runtime.SchedRoundRobin))
	if err != nil {
		fmt.Fprintln(os.Stderr, "Listen:", err)
		return 13
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(waitLimit))
				if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					fmt.Fprintf(c, "ok %d ready=%t\n", self.ID(), saidReady.Load())
				}
			}()
		}
	}()
	supReport(self, "addr "+ln.Addr().String())
	if slices.Contains(strings.Split(os.Getenv("SUP_READY_IDS"), ","), fmt.Sprint(self.ID())) {
		ready()
	}
	<-self.Done()
	select {}
}

func supServeWorker() int {
	ctx := context.Background()
	self := supSelf()
	var conns sync.WaitGroup
	acceptDone := make(chan struct{})
	self.OnDisconnect(func(ctx context.Context) error {
		<-acceptDone
		conns.Wait()
		return nil
	})
	if err := self.Start(ctx); err != nil {
		return 12
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0", runtime.WithSchedulingPolicy(runtime.SchedRoundRobin))
	if err != nil {
		fmt.Fprintln(os.Stderr, "Listen:", err)
		return 13
	}
	supReport(self, "addr "+ln.Addr().String())
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(waitLimit))
				if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
					return
				}
				fmt.Fprintf(c, "ok %d\n", self.ID())
				self.RequestDone()
			}()
		}
	}()
	<-self.Done()
	select {}
}

var (
	oomHold  [][]byte
	spinSink atomic.Uint64
)

func supOOMWorker() int {
	if err := os.WriteFile(os.Getenv("SUP_CGROUP")+"/cgroup.procs", []byte("0"), 0); err != nil {
		fmt.Fprintln(os.Stderr, "join cgroup:", err)
		return 14
	}
	self := supSelf()
	if err := self.Start(context.Background()); err != nil {
		return 12
	}
	for {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		oomHold = append(oomHold, b)
	}
}

// ---- helpers ----

// supPool is a pool of role's workers on a new cluster, stopped at the
// end of the test.
func supPool(t *testing.T, role string, opts ...runtime.PoolOption) (*cluster, *runtime.Pool) {
	t.Helper()
	return newPool(t, "", append([]runtime.PoolOption{runtime.WithPoolForkOptions(herdtest.ForkRole(role))}, opts...)...)
}

// waitPending waits until n timers of the clock are pending (set, not
// fired, not stopped).
func (c *fakeClock) waitPending(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		have := 0
		for _, tm := range c.timers {
			if !tm.stopped {
				have++
			}
		}
		c.mu.Unlock()
		if have == n {
			return
		}
		select {
		case <-c.added:
		case <-deadline.C:
			t.Fatalf("%d timers pending, want %d", have, n)
		}
	}
}

// pendingIn returns how far ahead of now the pending timers are.
func (c *fakeClock) pendingIn() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ds []time.Duration
	for _, tm := range c.timers {
		if !tm.stopped {
			ds = append(ds, tm.at.Sub(c.now))
		}
	}
	slices.Sort(ds)
	return ds
}

// heartbeats collects the watchdog's answered heartbeats.
type heartbeats chan [2]uint64

func (h heartbeats) option() runtime.PoolOption {
	return runtime.WithHeartbeatHook(func(worker, seq uint64) { h <- [2]uint64{worker, seq} })
}

func (h heartbeats) wait(t *testing.T, worker, seq uint64) {
	t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		select {
		case got := <-h:
			if got == [2]uint64{worker, seq} {
				return
			}
		case <-timer.C:
			t.Fatalf("no answer to heartbeat %d of worker %d", seq, worker)
		}
	}
}

func mustWorker(t *testing.T, c *cluster, id uint64) *runtime.Worker {
	t.Helper()
	w, ok := c.p.Worker(id)
	if !ok {
		t.Fatalf("no worker %d", id)
	}
	return w
}

func sendEcho(t *testing.T, w *runtime.Worker, msg string) {
	t.Helper()
	if err := testv1herd.NewTestServiceClient(w).SendEcho(context.Background(), &testv1.EchoRequest{Message: msg}); err != nil {
		t.Fatalf("send %q to worker %d: %v", msg, w.ID(), err)
	}
}

// askOnce dials addr, writes a line and returns the answer.
func askOnce(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(waitLimit))
	if _, err := c.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	return strings.TrimSpace(line)
}

// ---- ready-only round robin ----

// TestPoolRoundRobinReadyOnly: a pool's worker that listens but is not
// ready yet is handed no connection; once it is ready it takes its share;
// a connection that arrives while no worker is ready waits for one.
func TestPoolRoundRobinReadyOnly(t *testing.T) {
	c, pl := supPool(t, "sup-gated", runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyExplicit),
		runtime.WithPoolForkOptions(runtime.WithForkEnv("SUP_READY_IDS=1")))
	startPool(t, pl)
	c.rec.waitFor("ready 1 slot=0 source=READY_SOURCE_EXPLICIT")
	addr := strings.TrimPrefix(c.rec.waitFor("report 1 addr "), "report 1 addr ")
	c.rec.waitFor("report 2 addr ")
	for i := range 20 {
		if got := askOnce(t, addr); got != "ok 1 ready=true" {
			t.Fatalf("connection %d answered %q while worker 2 is not ready, want worker 1's", i, got)
		}
	}
	sendEcho(t, mustWorker(t, c, 2), "ready now")
	c.rec.waitFor("ready 2 slot=1 source=READY_SOURCE_EXPLICIT")
	by := map[string]int{}
	for range 40 {
		by[askOnce(t, addr)]++
	}
	if by["ok 1 ready=true"]+by["ok 2 ready=true"] != 40 || by["ok 2 ready=true"] == 0 {
		t.Errorf("answers once both are ready: %v, want both workers, all ready", by)
	}

	t.Run("none ready", func(t *testing.T) {
		c, pl := supPool(t, "sup-gated", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyExplicit))
		startPool(t, pl)
		addr := strings.TrimPrefix(c.rec.waitFor("report 1 addr "), "report 1 addr ")
		answer := make(chan string, 1)
		conn, err := net.DialTimeout("tcp", addr, waitLimit)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(waitLimit))
		if _, err := conn.Write([]byte("hi\n")); err != nil {
			t.Fatal(err)
		}
		go func() {
			line, err := bufio.NewReader(conn).ReadString('\n')
			if err != nil {
				line = "error: " + err.Error()
			}
			answer <- strings.TrimSpace(line)
		}()
		sendEcho(t, mustWorker(t, c, 1), "ready now")
		if got := <-answer; got != "ok 1 ready=true" {
			t.Errorf("the connection made before any worker was ready got %q, want it answered once worker 1 was ready", got)
		}
	})
}

// ---- the watchdog ----

// TestWatchdogSchedule: heartbeats go every timeout/2 (on the injected
// clock), each answered on the worker's user lane; with WithWatchdog(0)
// there are none.
func TestWatchdogSchedule(t *testing.T) {
	clk := newFakeClock(time.Second)
	hb := make(heartbeats, 16)
	c, pl := supPool(t, "sup-hang", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithClock(clk), runtime.WithWatchdog(10*time.Second), hb.option())
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	clk.waitPending(t, 1)
	if got := clk.pendingIn(); !slices.Equal(got, []time.Duration{5 * time.Second}) {
		t.Fatalf("pending timers %v, want the first tick in 5s", got)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		clk.Advance(5 * time.Second)
		hb.wait(t, 1, seq)
		clk.waitPending(t, 1)
		if got := clk.pendingIn(); !slices.Equal(got, []time.Duration{5 * time.Second}) {
			t.Fatalf("after heartbeat %d: pending timers %v, want the next tick in 5s", seq, got)
		}
	}
	w1 := mustWorker(t, c, 1)
	if w1.IsDead() {
		t.Fatal("a worker that answers was killed")
	}

	t.Run("default", func(t *testing.T) {
		clk := newFakeClock(time.Second)
		c, pl := supPool(t, "sup-hang", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline), runtime.WithClock(clk))
		startPool(t, pl)
		c.rec.waitFor("ready 1 ")
		clk.waitPending(t, 1)
		if got := clk.pendingIn(); !slices.Equal(got, []time.Duration{runtime.DefaultWatchdogTimeout / 2}) {
			t.Errorf("pending timers %v, want a tick in %v", got, runtime.DefaultWatchdogTimeout/2)
		}
	})
	t.Run("disabled", func(t *testing.T) {
		clk := newFakeClock(time.Second)
		c, pl := supPool(t, "sup-hang", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
			runtime.WithClock(clk), runtime.WithWatchdog(0))
		startPool(t, pl)
		c.rec.waitFor("ready 1 ")
		sendEcho(t, mustWorker(t, c, 1), "deadlock")
		c.rec.waitFor("report 1 stuck")
		if got := clk.pendingIn(); len(got) != 0 {
			t.Fatalf("pending timers %v, want none: the watchdog is off", got)
		}
		clk.Advance(time.Hour) // nothing to fire
		if mustWorker(t, c, 1).IsDead() {
			t.Error("killed with the watchdog off")
		}
	})
}

// hangCase is one way a worker hangs, and what its dump must show.
type hangCase struct {
	name string
	hang func(t *testing.T, c *cluster, w *runtime.Worker)
	want []string // in the diagnostics
}

var hangCases = []hangCase{
	{"deadlock", func(t *testing.T, c *cluster, w *runtime.Worker) {
		sendEcho(t, w, "deadlock")
		c.rec.waitFor(fmt.Sprintf("report %d stuck", w.ID()))
	}, []string{"deadlockForever", "sent SIGQUIT for its goroutine dump", "goroutine "}},
	{"spin", func(t *testing.T, c *cluster, w *runtime.Worker) {
		sendEcho(t, w, "spin")
		c.rec.waitFor(fmt.Sprintf("report %d spinning", w.ID()))
		// Its stack is in the dump when SIGQUIT reached its thread or
		// it was preempted; running on another thread it is "stack
		// unavailable" (Go traces those only with GOTRACEBACK=crash).
	}, []string{"spinForever|stack unavailable", "goroutine "}},
	{"stuck reader", func(t *testing.T, c *cluster, w *runtime.Worker) {
		sendEcho(t, w, "stall") // the reader sticks at the next heartbeat
		c.rec.waitFor(fmt.Sprintf("report %d stalled", w.ID()))
	}, []string{"onFrame", "goroutine "}},
	{"stopped", func(t *testing.T, c *cluster, w *runtime.Worker) {
		if err := syscall.Kill(w.PID(), syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		waitStopped(t, w.PID())
	}, []string{"process state T (stopped)", "then SIGCONT", "goroutine "}},
}

// TestWatchdogKillsHungWorker: a worker whose handler deadlocks or spins,
// whose link reader is stuck, or that is stopped by SIGSTOP answers no
// heartbeat: once the timeout has passed on the injected clock, the
// watchdog collects its goroutine dump (SIGQUIT; SIGCONT for the stopped
// one) and the worker exits with cause EXIT_CAUSE_WATCHDOG, the dump in
// its diagnostics. The pool replaces it.
func TestWatchdogKillsHungWorker(t *testing.T) {
	for _, tc := range hangCases {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(time.Second)
			hb := make(heartbeats, 16)
			c, pl := supPool(t, "sup-hang", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
				runtime.WithClock(clk), hb.option())
			startPool(t, pl)
			c.rec.waitFor("ready 1 ")
			w1 := mustWorker(t, c, 1)
			half := runtime.DefaultWatchdogTimeout / 2
			clk.waitPending(t, 1)
			clk.Advance(half)
			hb.wait(t, 1, 1) // healthy so far
			clk.waitPending(t, 1)

			tc.hang(t, c, w1)
			clk.Advance(half) // heartbeat 2 goes, unanswered
			clk.waitPending(t, 1)
			if tc.name == "stuck reader" {
				c.rec.waitFor("report 1 reader stuck")
			}
			clk.Advance(half) // 30 s since the last answer: hung
			ev := c.waitExit(w1)
			if ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_WATCHDOG || ev.GetCode() != 2 {
				t.Errorf("exit code=%d signal=%s cause=%v, want status 2 (a Go program after its SIGQUIT dump), EXIT_CAUSE_WATCHDOG",
					ev.GetCode(), ev.GetSignal(), ev.GetCause())
			}
			diag := ev.GetDiagnostics()
			for _, want := range append([]string{"answered no heartbeat for 30s (timeout 30s, 1 answered before)"}, tc.want...) {
				if !slices.ContainsFunc(strings.Split(want, "|"), func(w string) bool { return strings.Contains(diag, w) }) {
					t.Errorf("diagnostics lack %q:\n%s", want, diag)
				}
			}
			c.rec.waitFor("restart 1 slot=0 attempt=1")
			c.rec.waitFor("ready 2 slot=0")
		})
	}
}

// waitStopped waits until the child pid is stopped (waitid with WSTOPPED
// and WNOWAIT: the event stays for whoever waits for it).
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	var info unixSiginfo
	if err := waitidStopped(pid, &info); err != nil {
		t.Fatalf("wait for worker %d to stop: %v", pid, err)
	}
}

// TestWatchdogDump: the dump's wait and size are bounded; a worker that
// ignores SIGQUIT gets SIGKILL once the wait has passed; WithWatchdogDump
// with a negative wait kills at once.
func TestWatchdogDump(t *testing.T) {
	hung := func(t *testing.T, env string, opts ...runtime.PoolOption) (*cluster, *fakeClock, *runtime.Worker) {
		clk := newFakeClock(time.Second)
		opts = append([]runtime.PoolOption{runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
			runtime.WithClock(clk), runtime.WithRestartPolicy(runtime.RestartTemporary),
			runtime.WithPoolForkOptions(runtime.WithForkEnv(env))}, opts...)
		c, pl := supPool(t, "sup-hang", opts...)
		startPool(t, pl)
		c.rec.waitFor("ready 1 ")
		w1 := mustWorker(t, c, 1)
		clk.waitPending(t, 1)
		hangCases[0].hang(t, c, w1)
		half := runtime.DefaultWatchdogTimeout / 2
		clk.Advance(half)
		clk.waitPending(t, 1)
		clk.Advance(half)
		return c, clk, w1
	}
	t.Run("bounded wait", func(t *testing.T) {
		c, clk, w1 := hung(t, "SUP_IGNORE_QUIT=1", runtime.WithWatchdogDump(10*time.Second, 1024))
		clk.waitPending(t, 1) // the dump's wait
		if got := clk.pendingIn(); !slices.Equal(got, []time.Duration{10 * time.Second}) {
			t.Fatalf("pending %v, want the dump's 10s", got)
		}
		clk.Advance(10 * time.Second)
		ev := c.waitExit(w1)
		if ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_WATCHDOG || ev.GetSignal() != "SIGKILL" ||
			!strings.Contains(ev.GetDiagnostics(), "still running 10s after SIGQUIT: SIGKILL") {
			t.Errorf("exit %v %s, diagnostics:\n%s", ev.GetCause(), ev.GetSignal(), ev.GetDiagnostics())
		}
	})
	t.Run("bounded size", func(t *testing.T) {
		c, _, w1 := hung(t, "SUP_IGNORE_QUIT=0", runtime.WithWatchdogDump(time.Minute, 300))
		ev := c.waitExit(w1)
		diag := ev.GetDiagnostics()
		header, dump, _ := strings.Cut(diag, "\n")
		if !strings.Contains(dump, "more bytes not kept]") || len(dump) > 300+64 || !strings.Contains(header, "SIGQUIT") {
			t.Errorf("diagnostics (%d bytes of dump):\n%s", len(dump), diag)
		}
	})
	t.Run("none", func(t *testing.T) {
		c, _, w1 := hung(t, "SUP_IGNORE_QUIT=0", runtime.WithWatchdogDump(-1, 0))
		ev := c.waitExit(w1)
		if ev.GetSignal() != "SIGKILL" || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_WATCHDOG ||
			!strings.Contains(ev.GetDiagnostics(), "killed without a dump (WithWatchdogDump)") {
			t.Errorf("exit %v %s, diagnostics:\n%s", ev.GetCause(), ev.GetSignal(), ev.GetDiagnostics())
		}
	})
	t.Run("stderr not kept", func(t *testing.T) {
		c, _, w1 := hung(t, "SUP_IGNORE_QUIT=0", runtime.WithStderrTail(-1))
		ev := c.waitExit(w1)
		if ev.GetSignal() != "SIGKILL" || !strings.Contains(ev.GetDiagnostics(), "the pool does not keep its stderr") {
			t.Errorf("exit %s, diagnostics:\n%s", ev.GetSignal(), ev.GetDiagnostics())
		}
	})
}

// TestWatchdogRealClock: the watchdog on the real clock (2 s) catches a
// deadlocked worker and dumps it.
func TestWatchdogRealClock(t *testing.T) {
	c, pl := supPool(t, "sup-hang", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithWatchdog(2*time.Second), runtime.WithRestartPolicy(runtime.RestartTemporary))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	w1 := mustWorker(t, c, 1)
	// On a loaded machine the watchdog may find it slow before the
	// deadlock: the outcome is the same.
	_ = testv1herd.NewTestServiceClient(w1).SendEcho(context.Background(), &testv1.EchoRequest{Message: "deadlock"})
	ev := c.waitExit(w1)
	if ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_WATCHDOG || !strings.Contains(ev.GetDiagnostics(), "goroutine ") {
		t.Errorf("exit %v, diagnostics:\n%s", ev.GetCause(), ev.GetDiagnostics())
	}
}

// ---- recycling ----

// recycledEvents registers, for every worker of a pool, a handler that
// passes its Recycled events on.
func recycledEvents(ch chan *herdv1.RecycledEvent) runtime.PoolOption {
	return runtime.WithPoolForkOptions(runtime.WithRegister(func(r runtime.Registrar) error {
		return r.Register(runtime.NewEventHandler(herdv1herd.EventServiceRecycledProcedure,
			func(ctx context.Context, ev *herdv1.RecycledEvent) error {
				ch <- ev
				// Not handled here: the primary's recorder sees it too.
				return runtime.Errorf(runtime.CodeUnimplemented, "pass")
			}))
	}))
}

// TestRecycleAfterRequests: each worker learns its request limit with its
// jitter (at least 10 %) in its handshake; at the limit it asks, and the
// pool replaces it by the rolling path: the replacement is ready before
// the Recycled event, then the worker disconnects and exits with cause
// EXIT_CAUSE_RECYCLED.
func TestRecycleAfterRequests(t *testing.T) {
	var mu sync.Mutex
	rands := []float64{0.5, 0.99}
	rnd := func() float64 {
		mu.Lock()
		defer mu.Unlock()
		r := rands[0]
		rands = append(rands[1:], 0.5)
		return r
	}
	recycled := make(chan *herdv1.RecycledEvent, 4)
	c, pl := supPool(t, "sup-hang", runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithRecycleRequests(100, 0), runtime.WithPoolRand(rnd), recycledEvents(recycled))
	startPool(t, pl)
	// A jitter of 0 is raised to 10 %: 100 + 100*0.1*0.5 and 100 + 100*0.1*0.99.
	c.rec.waitFor("report 1 max 105")
	c.rec.waitFor("report 2 max 109")
	w1 := mustWorker(t, c, 1)
	for range 105 {
		if _, err := testv1herd.NewTestServiceClient(w1).Echo(context.Background(), &testv1.EchoRequest{Message: "work"}); err != nil {
			t.Fatal(err)
		}
	}
	c.rec.waitFor("recycled 1 slot=0 reason=RECYCLE_REASON_REQUESTS by=3")
	ev := <-recycled
	if ev.GetRequests() != 105 || ev.GetReplacement().GetId() != 3 {
		t.Errorf("recycled event %v, want 105 requests and worker 3", ev)
	}
	exit := c.waitExit(w1)
	if exit.GetCause() != herdv1.ExitCause_EXIT_CAUSE_RECYCLED || exit.GetCode() != 0 || !exit.GetExitedAfterDisconnect() {
		t.Errorf("exit %v", exit)
	}
	// The rolling path: the replacement ready, then the Recycled event,
	// then the old worker's disconnect and exit.
	all := c.rec.all()
	at := func(line string) int {
		i := slices.IndexFunc(all, func(l string) bool { return strings.HasPrefix(l, line) })
		if i < 0 {
			t.Fatalf("no %q in %q", line, all)
		}
		return i
	}
	if r, e, d, x := at("ready 3 slot=0"), at("recycled 1 "), at("disconnect 1"), at("exit 1 "); !(r < e && e < d && d < x) {
		t.Errorf("order of events %q: want ready 3, recycled 1, disconnect 1, exit 1", all)
	}
	if got := workerIDs(pl.Workers()); !slices.Equal(got, []uint64{3, 2}) {
		t.Errorf("workers %v, want [3 2]", got)
	}
	if slices.ContainsFunc(c.rec.all(), func(l string) bool { return strings.HasPrefix(l, "restart ") }) {
		t.Error("a recycle counted as a restart")
	}
}

// TestRecycleOnRequest: Self.Recycle recycles a pool's worker, with its
// detail; a worker in no pool is refused with ErrRecycleRefused.
func TestRecycleOnRequest(t *testing.T) {
	recycled := make(chan *herdv1.RecycledEvent, 4)
	c, pl := supPool(t, "sup-hang", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline), recycledEvents(recycled))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	sendEcho(t, mustWorker(t, c, 1), "recycle:cache grew too large")
	c.rec.waitFor("report 1 recycle accepted")
	c.rec.waitFor("recycled 1 slot=0 reason=RECYCLE_REASON_WORKER by=2")
	if ev := <-recycled; ev.GetDetail() != "cache grew too large" {
		t.Errorf("detail %q", ev.GetDetail())
	}
	c.rec.waitFor("exit 1 code=0 signal= after=true cause=EXIT_CAUSE_RECYCLED")

	t.Run("replacement fails", func(t *testing.T) {
		// The replacement is never ready: the recycle fails, an error
		// event says so, and the worker keeps its slot and serves.
		clk := newFakeClock(time.Second)
		c, pl := supPool(t, "sup-hang", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyExplicit),
			runtime.WithClock(clk), runtime.WithWatchdog(0), runtime.WithPoolForkOptions(runtime.WithForkEnv("SUP_READY_IDS=1")))
		startPool(t, pl)
		c.rec.waitFor("ready 1 slot=0 source=READY_SOURCE_EXPLICIT")
		sendEcho(t, mustWorker(t, c, 1), "recycle:try")
		c.rec.waitFor("report 2 max 0") // the replacement is up, not ready
		clk.waitPending(t, 1)           // its ready timeout
		clk.Advance(runtime.DefaultReadyTimeout)
		c.rec.waitFor("exit 2 code=-1 signal=SIGKILL after=false cause=EXIT_CAUSE_READY_TIMEOUT")
		l := c.rec.waitFor("error 1 ")
		if !strings.Contains(l, "recycle of worker 1 failed, it keeps serving: its replacement not ready within 1m0s") {
			t.Errorf("%q: want the recycle's failure", l)
		}
		if got := workerIDs(pl.ReadyWorkers()); !slices.Equal(got, []uint64{1}) {
			t.Errorf("ready workers %v, want [1]", got)
		}
		if _, err := testv1herd.NewTestServiceClient(mustWorker(t, c, 1)).Echo(context.Background(), &testv1.EchoRequest{Message: "work"}); err != nil {
			t.Errorf("worker 1 after the failed recycle: %v", err)
		}
		if slices.ContainsFunc(c.rec.all(), func(l string) bool { return strings.HasPrefix(l, "recycled ") || strings.HasPrefix(l, "restart ") }) {
			t.Errorf("events %q: want no recycle done and no restart", c.rec.all())
		}
	})
	t.Run("bounded", func(t *testing.T) {
		// A slot is recycled no more often than the restart intensity
		// allows; a worker not ready is not recycled.
		c, pl := supPool(t, "sup-hang", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
			runtime.WithRestartIntensity(1, time.Hour))
		startPool(t, pl)
		c.rec.waitFor("ready 1 ")
		sendEcho(t, mustWorker(t, c, 1), "recycle:once")
		c.rec.waitFor("recycled 1 slot=0 reason=RECYCLE_REASON_WORKER by=2")
		sendEcho(t, mustWorker(t, c, 2), "recycle:twice")
		if l := c.rec.waitFor("report 2 recycle: "); !strings.Contains(l, "its slot was recycled 1 times within 1h0m0s") {
			t.Errorf("%q: want a refusal", l)
		}

		c, pl = supPool(t, "sup-hang", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyExplicit))
		startPool(t, pl)
		c.rec.waitFor("report 1 max 0")
		sendEcho(t, mustWorker(t, c, 1), "recycle:early")
		if l := c.rec.waitFor("report 1 recycle: "); !strings.Contains(l, "the worker is not ready yet") {
			t.Errorf("%q: want a refusal", l)
		}
	})

	w := c.fork("", herdtest.ForkRole("sup-hang"))
	c.rec.waitFor(fmt.Sprintf("report %d max 0", w.ID()))
	sendEcho(t, w, "recycle:please")
	if l := c.rec.waitFor(fmt.Sprintf("report %d recycle: ", w.ID())); !strings.Contains(l, runtime.ErrRecycleRefused.Error()+": the worker is not in a pool") {
		t.Errorf("%q: want a refusal", l)
	}
}

// TestRecycleRSS: the pool samples its workers' RSS every 30 s by default
// (or WithRSSSampleInterval) and recycles a ready worker above the limit.
func TestRecycleRSS(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		opts     []runtime.PoolOption
	}{
		{"default interval", runtime.DefaultRSSSampleInterval, nil},
		{"5s", 5 * time.Second, []runtime.PoolOption{runtime.WithRSSSampleInterval(5 * time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(time.Second)
			var samples atomic.Int64
			var fat atomic.Int64
			sampler := func(pid int) (uint64, error) {
				samples.Add(1)
				if int64(pid) == fat.Load() {
					return 3 << 30, nil
				}
				return 1 << 20, nil
			}
			recycled := make(chan *herdv1.RecycledEvent, 4)
			opts := append([]runtime.PoolOption{runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyOnOnline),
				runtime.WithClock(clk), runtime.WithWatchdog(0), runtime.WithRecycleRSS(2 << 30),
				runtime.WithRSSSampler(sampler), recycledEvents(recycled)}, tc.opts...)
			c, pl := supPool(t, "sup-hang", opts...)
			startPool(t, pl)
			c.rec.waitFor("ready 1 ")
			c.rec.waitFor("ready 2 ")
			fat.Store(int64(mustWorker(t, c, 1).PID()))
			clk.waitPending(t, 1)
			if got := clk.pendingIn(); !slices.Equal(got, []time.Duration{tc.interval}) {
				t.Fatalf("pending %v, want the first sample in %v", got, tc.interval)
			}
			clk.Advance(tc.interval)
			c.rec.waitFor("recycled 1 slot=0 reason=RECYCLE_REASON_RSS by=3")
			if ev := <-recycled; ev.GetRssBytes() != 3<<30 {
				t.Errorf("rss %d", ev.GetRssBytes())
			}
			c.rec.waitFor("exit 1 code=0 signal= after=true cause=EXIT_CAUSE_RECYCLED")
			if n := samples.Load(); n != 2 {
				t.Errorf("%d samples, want 2 (both workers, once)", n)
			}
			if slices.ContainsFunc(c.rec.all(), func(l string) bool { return strings.HasPrefix(l, "recycled 2") }) {
				t.Error("worker 2, under the limit, was recycled")
			}
		})
	}
}

// TestRecycleUnderLoad: workers that recycle every 20-30 connections,
// while a loopback client makes connections one at a time until three
// recycles are done, lose none.
func TestRecycleUnderLoad(t *testing.T) {
	c, pl := supPool(t, "sup-serve", runtime.WithPoolSize(2), runtime.WithRecycleRequests(20, 0.5))
	startPool(t, pl)
	addr := strings.TrimPrefix(c.rec.waitFor("report 1 addr "), "report 1 addr ")
	c.rec.waitFor("ready 1 ")
	c.rec.waitFor("ready 2 ")
	recycles := func() int {
		n := 0
		for _, l := range c.rec.all() {
			if strings.HasPrefix(l, "recycled ") {
				n++
			}
		}
		return n
	}
	const most = 20000
	sent, ok := 0, 0
	for sent < most && recycles() < 3 {
		sent++
		if strings.HasPrefix(askOnce(t, addr), "ok ") {
			ok++
		}
	}
	if ok != sent {
		t.Errorf("%d of %d requests answered", ok, sent)
	}
	if n := recycles(); n < 3 {
		t.Errorf("%d recycles in %d requests, want 3", n, sent)
	}
	t.Logf("%d requests, %d recycles", sent, recycles())
}

// ---- exit causes ----

// TestExitCauseReloaded: a worker a reload replaced exits with cause
// EXIT_CAUSE_RELOADED, and every exit carries its uptime and usage.
func TestExitCauseReloaded(t *testing.T) {
	c, pl := supPool(t, "sup-hang", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	w1 := mustWorker(t, c, 1)
	if err := pl.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev := c.waitExit(w1)
	if ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_RELOADED || ev.GetCode() != 0 {
		t.Errorf("exit %v", ev)
	}
	if ev.GetUptime().AsDuration() <= 0 || ev.GetCpuTime().AsDuration() <= 0 || ev.GetMaxRssBytes() < 1<<20 {
		t.Errorf("uptime %v cpu %v max rss %d: want them measured", ev.GetUptime().AsDuration(), ev.GetCpuTime().AsDuration(), ev.GetMaxRssBytes())
	}
}

// TestExitCauseOOM: a worker the kernel's OOM killer kills in its memory
// cgroup exits with cause EXIT_CAUSE_OOM. It needs a memory cgroup the
// test can make (root, and a writable cgroup v1 memory hierarchy or a v2
// group with the memory controller delegated); it skips, saying why,
// elsewhere.
func TestExitCauseOOM(t *testing.T) {
	dir := makeMemoryCgroup(t, 64<<20)
	c := newCluster(t)
	w := c.fork("", herdtest.ForkRole("sup-oom"), runtime.WithForkEnv("SUP_CGROUP="+dir))
	ev := c.waitExit(w)
	if ev.GetSignal() != "SIGKILL" || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_OOM {
		t.Errorf("exit code=%d signal=%s cause=%v, want SIGKILL, EXIT_CAUSE_OOM", ev.GetCode(), ev.GetSignal(), ev.GetCause())
	}
	if ev.GetMaxRssBytes() < 32<<20 {
		t.Errorf("max rss %d, want near the 64 MiB limit", ev.GetMaxRssBytes())
	}
}

// makeMemoryCgroup makes a memory cgroup limited to limit bytes under this
// process's, removed at the end of the test; it skips the test when it
// cannot.
func makeMemoryCgroup(t *testing.T, limit int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: making a memory cgroup needs root")
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skipf("skipped: %v", err)
	}
	var v1, v2 string
	for _, line := range strings.Split(string(b), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
		} else if slices.Contains(strings.Split(parts[1], ","), "memory") {
			v1 = parts[2]
		}
	}
	name := fmt.Sprintf("herd-oom-test-%d", os.Getpid())
	var dir string
	var files [][2]string
	switch {
	case v1 != "":
		dir = "/sys/fs/cgroup/memory" + v1 + "/" + name
		files = [][2]string{{"memory.limit_in_bytes", fmt.Sprint(limit)}, {"memory.memsw.limit_in_bytes", fmt.Sprint(limit)}}
	case v2 != "":
		ctl, err := os.ReadFile("/sys/fs/cgroup" + v2 + "/cgroup.subtree_control")
		if err != nil || !strings.Contains(string(ctl), "memory") {
			t.Skipf("skipped: the cgroup v2 group %s does not delegate the memory controller (%q, %v)", v2, ctl, err)
		}
		dir = "/sys/fs/cgroup" + v2 + "/" + name
		files = [][2]string{{"memory.max", fmt.Sprint(limit)}, {"memory.swap.max", "0"}}
	default:
		t.Skip("skipped: no memory cgroup")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Skipf("skipped: cannot make a memory cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove the test's cgroup: %v", err)
		}
	})
	for i, f := range files {
		if err := os.WriteFile(dir+"/"+f[0], []byte(f[1]), 0); err != nil {
			if i == 0 {
				t.Skipf("skipped: cannot limit the cgroup's memory: %v", err)
			}
			if !errors.Is(err, os.ErrNotExist) {
				t.Logf("%s: %v (no swap limit)", f[0], err)
			}
		}
	}
	return dir
}
