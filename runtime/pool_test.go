//go:build unix

package runtime_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// bootcrashWorker (role "bootcrash") dies before its handshake with a message on stderr.
func bootcrashWorker() int {
	fmt.Fprintln(os.Stderr, "starting up")
	fmt.Fprintln(os.Stderr, "fatal: config file /etc/nowhere.conf missing")
	return 2
}

// readyWorker (role "ready") says it is ready after Start, when its ID is in
// HERD_TEST_READY_IDS (all IDs when unset), and idles.
func readyWorker() int {
	self, ctx := startSelf()
	if ids := os.Getenv("HERD_TEST_READY_IDS"); ids == "" || slices.Contains(strings.Split(ids, ","), fmt.Sprint(self.ID())) {
		if err := self.Ready(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "Ready:", err)
			return 13
		}
	}
	<-self.Done()
	select {}
}

// stubbornWorker (role "stubborn") never finishes its drain hook and ignores SIGTERM.
func stubbornWorker() int {
	signal.Ignore(syscall.SIGTERM)
	return stuckdrainWorker()
}

// stuckdrainWorker (role "stuckdrain") never finishes its drain hook.
func stuckdrainWorker() int {
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		return 10
	}
	self.OnDisconnect(func(ctx context.Context) error { select {} })
	if err := self.Start(context.Background()); err != nil {
		return 12
	}
	select {}
}
func startSelf() (*runtime.Self, context.Context) {
	ctx := context.Background()
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		os.Exit(10)
	}
	if err := self.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Start:", err)
		os.Exit(12)
	}
	return self, ctx
}

func serveWorkerMain() int {
	ctx := context.Background()
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		return 10
	}
	var conns sync.WaitGroup
	acceptDone := make(chan struct{})
	self.OnDisconnect(func(ctx context.Context) error {
		// The runtime closed the listener: the accept loop ends, then
		// every connection it took is answered.
		<-acceptDone
		conns.Wait()
		return nil
	})
	if err := self.Start(ctx); err != nil {
		return 12
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "Listen:", err)
		return 13
	}
	_ = self.Send(ctx, testv1herd.TestServiceReportProcedure, &testv1.ReportRequest{Message: "addr " + ln.Addr().String()})
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
			}()
		}
	}()
	<-self.Done()
	select {}
}

// fakeClock is a pool clock that never moves by itself (the watchdog's
// ticks are its timers too: a test of something else gives its pool
// WithWatchdog(0)): Now is what the
// test set, and a timer fires at once when its delay is below auto (the
// restart delays), else never (ready and stop timeouts), unless Advance
// passes it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	auto   time.Duration
	delays []time.Duration
	timers []*fakeTimer
	added  chan struct{}
}

// waitTimers waits until n timers that do not fire by themselves have been
// set.
func (c *fakeClock) waitTimers(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		have := len(c.timers)
		c.mu.Unlock()
		if have >= n {
			return
		}
		select {
		case <-c.added:
		case <-deadline.C:
			t.Fatalf("%d timers set, want %d", have, n)
		}
	}
}

// waitPendingIn waits until a pending timer (set, not fired, not stopped)
// is due d after the clock's now.
func (c *fakeClock) waitPendingIn(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		found := false
		for _, tm := range c.timers {
			if !tm.stopped && tm.at.Sub(c.now) == d {
				found = true
			}
		}
		c.mu.Unlock()
		if found {
			return
		}
		select {
		case <-c.added:
		case <-deadline.C:
			t.Fatalf("no timer pending %v ahead", d)
		}
	}
}

type fakeTimer struct {
	at      time.Time
	f       func()
	stopped bool
}

func newFakeClock(auto time.Duration) *fakeClock {
	return &fakeClock{now: time.Unix(1_000_000, 0), auto: auto, added: make(chan struct{}, 1)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) func() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d < c.auto {
		c.delays = append(c.delays, d)
		go f()
		return func() bool { return false }
	}
	t := &fakeTimer{at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	select {
	case c.added <- struct{}{}:
	default:
	}
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		was := !t.stopped
		t.stopped = true
		return was
	}
}

// Advance moves the clock and fires the timers it passes.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var fire []func()
	for _, t := range c.timers {
		if !t.stopped && !t.at.After(c.now) {
			t.stopped = true
			fire = append(fire, t.f)
		}
	}
	c.mu.Unlock()
	for _, f := range fire {
		go f()
	}
}

func (c *fakeClock) Delays() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]time.Duration(nil), c.delays...)
}

// recordPool: the cluster's recorder (herdtest.Events) records the pool's
// events too: "ready ID slot=S source=X", "restart PREV slot=S attempt=A
// delay=D boot=B", "slotfailed LAST slot=S reason", "reload-started IDS",
// "reload-finished IDS", "reload-aborted slot=S worker=ID reason".
func recordPool(c *cluster) {}

// newPool makes a pool of workers in mode on a new cluster; the pool is
// stopped (gracefully, then killed) at the end of the test, before the
// cluster's leak check.
func newPool(t *testing.T, mode string, opts ...runtime.PoolOption) (*cluster, *runtime.Pool) {
	t.Helper()
	c := newCluster(t)
	recordPool(c)
	opts = append([]runtime.PoolOption{runtime.WithPoolForkOptions(herdtest.ForkRole(mode))}, opts...)
	pl := runtime.NewPool(c.p, opts...)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		pl.Stop(ctx)
	})
	return c, pl
}

func startPool(t *testing.T, pl *runtime.Pool) {
	t.Helper()
	if err := pl.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func waitPool(t *testing.T, pl *runtime.Pool) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	err := pl.Wait(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatal("the pool did not end")
	}
	return err
}

func workerIDs(ws []*runtime.Worker) []uint64 {
	var ids []uint64
	for _, w := range ws {
		ids = append(ids, w.ID())
	}
	return ids
}

// TestPoolReplacesDeadWorker: a worker killed from outside, or by the
// primary's Kill, is replaced in its slot; one the primary disconnected is
// not, and its slot goes. Then a graceful stop ends the pool with nil.
func TestPoolReplacesDeadWorker(t *testing.T) {
	c, pl := newPool(t, "idle", runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyOnOnline))
	startPool(t, pl)
	c.rec.waitFor("ready 1 slot=0 source=READY_SOURCE_ONLINE")
	c.rec.waitFor("ready 2 slot=1 source=READY_SOURCE_ONLINE")

	w1, _ := c.p.Worker(1)
	syscall.Kill(w1.PID(), syscall.SIGKILL) // from outside
	c.rec.waitFor("restart 1 slot=0 attempt=1 delay=")
	c.rec.waitFor("ready 3 slot=0")
	w2, _ := c.p.Worker(2)
	w2.Kill(syscall.SIGTERM) // the primary's Kill is no disconnect
	c.rec.waitFor("restart 2 slot=1 attempt=1")
	c.rec.waitFor("ready 4 slot=1")
	if got := workerIDs(pl.Workers()); !slices.Equal(got, []uint64{3, 4}) {
		t.Errorf("workers %v, want [3 4]", got)
	}

	// Exit before restart: the order of worker 1's events.
	want := []string{"fork", "online", "ready slot=0 source=READY_SOURCE_ONLINE", "disconnect",
		"exit code=-1 signal=SIGKILL after=false cause=EXIT_CAUSE_SIGNAL", "restart slot=0 attempt=1"}
	got := c.rec.of(1)
	if len(got) != len(want) {
		t.Fatalf("events of worker 1 %q, want %q", got, want)
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("event %d of worker 1 = %q, want %q...", i, got[i], want[i])
		}
	}

	// A disconnect the worker started itself is answered with a restart.
	w4, _ := c.p.Worker(4)
	// The reply may lose the race with the worker's own disconnect.
	if _, err := testv1herd.NewTestServiceClient(w4).Disconnect(context.Background(), &testv1.DisconnectRequest{}); err != nil {
		t.Logf("call: %v", err)
	}
	c.rec.waitFor("exit 4 code=0 signal= after=true cause=EXIT_CAUSE_CLEAN")
	c.rec.waitFor("restart 4 slot=1 attempt=2")
	c.rec.waitFor("ready 5 slot=1")

	// A disconnect the primary asked for is not answered with a restart.
	w3, _ := c.p.Worker(3)
	if err := w3.Disconnect(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-w3.Done()
	if n := pl.Size(); n != 1 {
		t.Errorf("size %d after a disconnect, want 1", n)
	}
	if err := pl.Stop(context.Background()); err != nil {
		t.Errorf("Stop: %v", err)
	}
	c.rec.waitFor("exit 5 code=0 signal= after=true")
	for _, l := range c.rec.all() {
		if strings.HasPrefix(l, "restart 3") || strings.HasPrefix(l, "restart 5") || strings.HasPrefix(l, "fork 6") {
			t.Errorf("unexpected %q", l)
		}
	}
}

// TestPoolRestartPolicies: transient replaces a failure only, temporary
// never; a slot not refilled goes.
func TestPoolRestartPolicies(t *testing.T) {
	t.Run("transient", func(t *testing.T) {
		c, pl := newPool(t, "idle", runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyOnOnline),
			runtime.WithRestartPolicy(runtime.RestartTransient))
		startPool(t, pl)
		c.rec.waitFor("ready 1 ")
		c.rec.waitFor("ready 2 ")
		w1, _ := c.p.Worker(1)
		w1.Kill(syscall.SIGKILL) // a failure
		c.rec.waitFor("restart 1 slot=0 attempt=1")
		c.rec.waitFor("ready 3 slot=0")
		// A clean exit the worker chose: not replaced.
		w2, _ := c.p.Worker(2)
		// The reply may lose the race with the worker's own disconnect.
		if _, err := testv1herd.NewTestServiceClient(w2).Disconnect(context.Background(), &testv1.DisconnectRequest{}); err != nil {
			t.Logf("call: %v", err)
		}
		c.rec.waitFor("exit 2 code=0 signal= after=true cause=EXIT_CAUSE_CLEAN")
		c.waitExit(w2) // the pool has seen the exit too
		if got := workerIDs(pl.Workers()); !slices.Equal(got, []uint64{3}) || pl.Size() != 1 {
			t.Errorf("workers %v size %d, want [3] and 1", got, pl.Size())
		}
	})
	t.Run("temporary", func(t *testing.T) {
		c, pl := newPool(t, "idle", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
			runtime.WithRestartPolicy(runtime.RestartTemporary))
		startPool(t, pl)
		c.rec.waitFor("ready 1 ")
		w1, _ := c.p.Worker(1)
		w1.Kill(syscall.SIGKILL)
		c.waitExit(w1)
		if pl.Size() != 0 || len(pl.Workers()) != 0 {
			t.Errorf("size %d workers %v after a temporary worker died", pl.Size(), workerIDs(pl.Workers()))
		}
	})
	t.Run("intensity", func(t *testing.T) {
		c, pl := newPool(t, "exit3", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
			runtime.WithRestartIntensity(1, time.Hour))
		startPool(t, pl)
		c.rec.waitFor("restart 1 slot=0 attempt=1")
		c.rec.waitFor("slotfailed 2 slot=0")
	})
}

// TestPoolScale: scaling up forks into new slots, scaling down disconnects
// the last slots' workers gracefully and does not replace them.
func TestPoolScale(t *testing.T) {
	c, pl := newPool(t, "idle", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline))
	startPool(t, pl)
	c.rec.waitFor("ready 1 slot=0")
	if err := pl.Scale(context.Background(), 3); err != nil {
		t.Fatal(err)
	}
	c.rec.waitFor("ready 2 slot=1")
	c.rec.waitFor("ready 3 slot=2")
	if got := workerIDs(pl.ReadyWorkers()); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Errorf("ready workers %v", got)
	}
	if err := pl.Scale(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{2, 3} {
		c.rec.waitFor(fmt.Sprintf("exit %d code=0 signal= after=true cause=EXIT_CAUSE_CLEAN", id))
	}
	if got := workerIDs(pl.Workers()); !slices.Equal(got, []uint64{1}) || pl.Size() != 1 {
		t.Errorf("workers %v size %d after scaling down", got, pl.Size())
	}
	if err := pl.Scale(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	c.rec.waitFor("ready 4 slot=3")
	if err := pl.Stop(context.Background()); err != nil {
		t.Errorf("Stop: %v", err)
	}
	for _, l := range c.rec.all() {
		if strings.HasPrefix(l, "restart") {
			t.Errorf("unexpected %q", l)
		}
	}
}

// TestPoolCrashLoopBackoffAndIntensity: a worker that crashes right after
// it is ready is restarted with 100 ms x1.5 delays (no jitter here; the
// injected clock fires them at once) until its slot passes 10 restarts in
// 60 s; the slot fails, and with every slot failed the pool ends with
// ErrAllSlotsFailed.
func TestPoolCrashLoopBackoffAndIntensity(t *testing.T) {
	clk := newFakeClock(time.Minute)
	b := runtime.DefaultRestartBackoff()
	b.Rand = func() float64 { return 0.5 } // no jitter
	c, pl := newPool(t, "exit3", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithRestartBackoff(b), runtime.WithClock(clk), runtime.WithWatchdog(0), runtime.WithStopTimeouts(time.Hour, time.Hour))
	startPool(t, pl)
	err := waitPool(t, pl)
	if !errors.Is(err, runtime.ErrAllSlotsFailed) || !strings.Contains(err.Error(), "exited with code 3") {
		t.Errorf("pool ended with %v, want ErrAllSlotsFailed naming exit code 3", err)
	}
	var want []time.Duration
	d := 100 * time.Millisecond
	for range 10 {
		want = append(want, d)
		d = d * 3 / 2
	}
	if got := clk.Delays(); !slices.Equal(got, want) {
		t.Errorf("delays %v, want %v", got, want)
	}
	for i := range 10 {
		c.rec.waitFor(fmt.Sprintf("restart %d slot=0 attempt=%d delay=%v boot=false", i+1, i+1, want[i]))
	}
	c.rec.waitFor("slotfailed 11 slot=0 more than 10 restarts within 1m0s")
	if strings.Contains(strings.Join(c.rec.all(), "\n"), "fork 12") {
		t.Error("a 12th worker was forked")
	}
}

// TestPoolBackoffSchedule: jitter stays within +-20 %, the delay is capped,
// and a worker that ran 30 s (on the injected clock) resets the sequence.
// (No minimum uptime here: every restart waits its backoff.)
func TestPoolBackoffSchedule(t *testing.T) {
	clk := newFakeClock(time.Minute)
	b := runtime.DefaultRestartBackoff()
	b.Max = 300 * time.Millisecond
	rands := []float64{0, 0.999999, 0.5, 0.5}
	var mu sync.Mutex
	b.Rand = func() float64 {
		mu.Lock()
		defer mu.Unlock()
		r := rands[0]
		rands = append(rands[1:], 0.5)
		return r
	}
	c, pl := newPool(t, "idle", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithRestartBackoff(b), runtime.WithMinUptime(-1),
		runtime.WithClock(clk), runtime.WithWatchdog(0), runtime.WithStopTimeouts(time.Hour, time.Hour))
	startPool(t, pl)
	kill := func(id uint64) {
		t.Helper()
		c.rec.waitFor(fmt.Sprintf("ready %d ", id))
		w, ok := c.p.Worker(id)
		if !ok {
			t.Fatalf("no worker %d", id)
		}
		w.Kill(syscall.SIGKILL)
		c.rec.waitFor(fmt.Sprintf("restart %d ", id))
	}
	for id := uint64(1); id <= 4; id++ {
		kill(id)
	}
	c.rec.waitFor("ready 5 ")
	clk.Advance(30 * time.Second) // worker 5 runs 30 s: stable
	kill(5)
	c.rec.waitFor("ready 6 ") // forked once its delay was set
	got := clk.Delays()
	want := []time.Duration{80 * time.Millisecond, 180 * time.Millisecond, 225 * time.Millisecond, 300 * time.Millisecond, 100 * time.Millisecond}
	if len(got) != len(want) {
		t.Fatalf("delays %v, want %v", got, want)
	}
	for i := range want {
		if diff := got[i] - want[i]; diff < -time.Microsecond || diff > time.Microsecond {
			t.Errorf("delay %d = %v, want %v", i, got[i], want[i])
		}
	}
	c.rec.waitFor("restart 5 slot=0 attempt=1 ")
}

// TestPoolMinUptime: a worker that had been ready for the minimum uptime
// (1 s by default, on the injected clock) when it died is replaced at once;
// one that dies sooner waits the backoff, whose sequence the immediate
// restarts still advance (a crash loop keeps its backoff).
func TestPoolMinUptime(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []runtime.PoolOption
		min  time.Duration
	}{
		{"default", nil, time.Second},
		{"2s", []runtime.PoolOption{runtime.WithMinUptime(2 * time.Second)}, 2 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newFakeClock(time.Minute)
			b := runtime.DefaultRestartBackoff()
			b.Rand = func() float64 { return 0.5 } // no jitter
			opts := append([]runtime.PoolOption{runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
				runtime.WithRestartBackoff(b), runtime.WithClock(clk), runtime.WithWatchdog(0),
				runtime.WithStopTimeouts(time.Hour, time.Hour)}, tc.opts...)
			c, pl := newPool(t, "idle", opts...)
			startPool(t, pl)
			// kill waits for worker id to be ready, moves the clock by up,
			// kills the worker and waits for its restart event.
			kill := func(id uint64, up time.Duration, want string) {
				t.Helper()
				c.rec.waitFor(fmt.Sprintf("ready %d ", id))
				clk.Advance(up)
				w, ok := c.p.Worker(id)
				if !ok {
					t.Fatalf("no worker %d", id)
				}
				w.Kill(syscall.SIGKILL)
				c.rec.waitFor(fmt.Sprintf("restart %d slot=0 %s boot=false", id, want))
			}
			kill(1, 0, "attempt=1 delay=100ms")
			kill(2, tc.min-time.Millisecond, "attempt=2 delay=150ms")
			kill(3, tc.min, "attempt=3 delay=0s")
			kill(4, 10*time.Millisecond, "attempt=4 delay=337.5ms")
			kill(5, tc.min+time.Second, "attempt=5 delay=0s")
			c.rec.waitFor("ready 6 ")
			want := []time.Duration{100 * time.Millisecond, 150 * time.Millisecond, 0, 337500 * time.Microsecond, 0}
			if got := clk.Delays(); !slices.Equal(got, want) {
				t.Errorf("delays %v, want %v", got, want)
			}
		})
	}
}

// TestPoolBootFailure: workers that die before they are ready, three in a
// row with none ever ready, end the pool with a *BootError that names the
// exit code and the last lines of the worker's stderr.
func TestPoolBootFailure(t *testing.T) {
	clk := newFakeClock(time.Minute)
	c, pl := newPool(t, "bootcrash", runtime.WithPoolSize(1), runtime.WithClock(clk), runtime.WithWatchdog(0), runtime.WithStopTimeouts(time.Hour, time.Hour))
	startPool(t, pl)
	err := waitPool(t, pl)
	var be *runtime.BootError
	if !errors.As(err, &be) || !errors.Is(err, runtime.ErrBootFailure) {
		t.Fatalf("pool ended with %v, want a *BootError", err)
	}
	if be.Failures != 3 || be.Worker != 3 || be.Code != 2 || be.Cause != herdv1.ExitCause_EXIT_CAUSE_BOOT_FAILURE ||
		be.StderrTail != "starting up\nfatal: config file /etc/nowhere.conf missing" {
		t.Errorf("boot error %+v", be)
	}
	if !strings.Contains(err.Error(), "exited with code 2") || !strings.Contains(err.Error(), "config file /etc/nowhere.conf missing") {
		t.Errorf("message %q", err)
	}
	c.rec.waitFor("restart 1 slot=0 attempt=1 delay=")
	c.rec.waitFor("restart 2 slot=0 attempt=2 delay=")
	if l := c.rec.waitFor("restart 1 "); !strings.HasSuffix(l, "boot=true") {
		t.Errorf("%q: want a boot failure", l)
	}
	if strings.Contains(strings.Join(c.rec.all(), "\n"), "fork 4") {
		t.Error("a 4th worker was forked")
	}
}

// TestPoolReadyTimeout: a worker that never says it is ready is killed at
// the ready timeout (exit cause READY_TIMEOUT), a boot failure.
func TestPoolReadyTimeout(t *testing.T) {
	clk := newFakeClock(time.Minute)
	c, pl := newPool(t, "idle", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyExplicit),
		runtime.WithClock(clk), runtime.WithWatchdog(0), runtime.WithBootFailures(1), runtime.WithStopTimeouts(time.Hour, time.Hour))
	startPool(t, pl)
	clk.waitTimers(t, 1)
	clk.Advance(runtime.DefaultReadyTimeout)
	err := waitPool(t, pl)
	c.rec.waitFor("exit 1 code=-1 signal=SIGKILL after=false cause=EXIT_CAUSE_READY_TIMEOUT")
	var be *runtime.BootError
	if !errors.As(err, &be) || be.Cause != herdv1.ExitCause_EXIT_CAUSE_READY_TIMEOUT || be.Signal != "SIGKILL" {
		t.Errorf("pool ended with %v (%+v), want a ready timeout", err, be)
	}
}

// TestPoolReadiness: an explicit Ready, and the first listening event by
// default.
func TestPoolReadiness(t *testing.T) {
	t.Run("explicit", func(t *testing.T) {
		c, pl := newPool(t, "ready", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyExplicit))
		startPool(t, pl)
		c.rec.waitFor("ready 1 slot=0 source=READY_SOURCE_EXPLICIT")
	})
	t.Run("listening", func(t *testing.T) {
		c, pl := newPool(t, "serve", runtime.WithPoolSize(1))
		startPool(t, pl)
		c.rec.waitFor("ready 1 slot=0 source=READY_SOURCE_LISTENING")
		got := c.rec.of(1)
		if i, j := slices.IndexFunc(got, func(l string) bool { return strings.HasPrefix(l, "listening") }),
			slices.IndexFunc(got, func(l string) bool { return strings.HasPrefix(l, "ready") }); i < 0 || j != i+1 {
			t.Errorf("events %q: want ready right after listening", got)
		}
	})
}

// TestPoolStopForced: a worker whose drain never ends gets SIGTERM once the
// graceful timeout has passed (on the injected clock); Stop says so.
func TestPoolStopForced(t *testing.T) {
	clk := newFakeClock(0)
	c, pl := newPool(t, "stuckdrain", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithClock(clk), runtime.WithWatchdog(0), runtime.WithStopTimeouts(time.Minute, time.Hour))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	clk.waitTimers(t, 1) // the ready timeout's, stopped
	stopped := make(chan error, 1)
	go func() { stopped <- pl.Stop(context.Background()) }()
	clk.waitTimers(t, 2) // the graceful timeout's
	clk.Advance(time.Minute)
	err := <-stopped
	var fe *runtime.ForcedError
	if !errors.As(err, &fe) || fe.Worker != 1 || fe.Signal != "SIGTERM" {
		t.Errorf("Stop: %v, want worker 1 ended with SIGTERM", err)
	}
	c.rec.waitFor("exit 1 code=-1 signal=SIGTERM after=true cause=EXIT_CAUSE_KILLED")
}

// TestPoolStopKillsStubborn: a worker that neither drains nor dies of
// SIGTERM gets SIGKILL once the term timeout has passed too.
func TestPoolStopKillsStubborn(t *testing.T) {
	clk := newFakeClock(0)
	c, pl := newPool(t, "stubborn", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithClock(clk), runtime.WithWatchdog(0), runtime.WithStopTimeouts(time.Minute, 5*time.Second))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	clk.waitTimers(t, 1)
	stopped := make(chan error, 1)
	go func() { stopped <- pl.Stop(context.Background()) }()
	clk.waitTimers(t, 2) // graceful
	clk.Advance(time.Minute)
	clk.waitTimers(t, 3) // term
	clk.Advance(5 * time.Second)
	err := <-stopped
	var fe *runtime.ForcedError
	if !errors.As(err, &fe) || fe.Worker != 1 || fe.Signal != "SIGKILL" {
		t.Errorf("Stop: %v, want worker 1 ended with SIGKILL", err)
	}
	c.rec.waitFor("exit 1 code=-1 signal=SIGKILL after=true cause=EXIT_CAUSE_KILLED")
}

// TestPoolReplacesWorkerSignalledAlone: SIGTERM to one worker drains it
// (the worker asks the primary, which disconnects it after the signal
// grace), and the pool replaces it: nobody asked the pool for fewer
// workers.
func TestPoolReplacesWorkerSignalledAlone(t *testing.T) {
	// Ready is called after Start has returned, when the worker catches its
	// stop signals (the online event may come before).
	c, pl := newPool(t, "ready", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyExplicit))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	w1, _ := c.p.Worker(1)
	syscall.Kill(w1.PID(), syscall.SIGTERM)
	c.rec.waitFor("exit 1 code=0 signal= after=true cause=EXIT_CAUSE_CLEAN")
	c.rec.waitFor("restart 1 slot=0 attempt=1")
	c.rec.waitFor("ready 2 slot=0")
}
