//go:build unix

package runtime_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// index returns the position of the first recorded line with prefix, or
// -1.
func index(lines []string, prefix string) int {
	return slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, prefix) })
}

// TestPoolReload: one slot at a time, the replacement is ready before the
// old worker is disconnected, and the old one has exited before the next
// slot's replacement is forked.
func TestPoolReload(t *testing.T) {
	c, pl := newPool(t, "idle", runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyOnOnline))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	c.rec.waitFor("ready 2 ")
	if err := pl.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	lines := c.rec.all()
	order := []string{"reload-started 1,2", "fork 3", "ready 3 slot=0", "disconnect 1", "exit 1 code=0 signal= after=true",
		"fork 4", "ready 4 slot=1", "disconnect 2", "exit 2 code=0 signal= after=true", "reload-finished 3,4"}
	last := -1
	for _, want := range order {
		i := index(lines, want)
		if i <= last {
			t.Fatalf("%q at %d, after %d: %q", want, i, last, lines)
		}
		last = i
	}
	if got := workerIDs(pl.Workers()); !slices.Equal(got, []uint64{3, 4}) {
		t.Errorf("workers %v, want [3 4]", got)
	}
	if index(lines, "restart") >= 0 {
		t.Errorf("a restart during the reload: %q", lines)
	}
}

// TestPoolReloadAborts: a replacement that never becomes ready aborts the
// reload at its slot: it is killed at the ready timeout, the slot before
// keeps its replacement, the slot keeps its old worker, and Reload says
// which slot and why.
func TestPoolReloadAborts(t *testing.T) {
	clk := newFakeClock(time.Minute)
	c, pl := newPool(t, "ready", runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyExplicit),
		runtime.WithClock(clk), runtime.WithWatchdog(0), runtime.WithStopTimeouts(time.Hour, time.Hour),
		runtime.WithPoolForkOptions(runtime.WithForkEnv("HERD_TEST_READY_IDS=1,2,3")))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	c.rec.waitFor("ready 2 ")
	done := make(chan error, 1)
	go func() { done <- pl.Reload(context.Background()) }()
	c.rec.waitFor("exit 1 code=0 signal= after=true") // slot 0 replaced by 3
	c.rec.waitFor("online 4")
	clk.waitTimers(t, 4) // worker 4's ready timeout
	clk.Advance(runtime.DefaultReadyTimeout)
	err := <-done
	var re *runtime.ReloadError
	if !errors.As(err, &re) || re.Slot != 1 || re.Worker != 4 || !strings.Contains(err.Error(), "not ready within 1m0s") {
		t.Fatalf("Reload: %v, want a *ReloadError for slot 1, worker 4, not ready", err)
	}
	c.rec.waitFor("reload-aborted slot=1 worker=4 not ready within 1m0s; killed")
	c.rec.waitFor("exit 4 code=-1 signal=SIGKILL after=false cause=EXIT_CAUSE_READY_TIMEOUT")
	if got := workerIDs(pl.Workers()); !slices.Equal(got, []uint64{3, 2}) {
		t.Errorf("workers %v, want [3 2]", got)
	}
	w2, _ := c.p.Worker(2)
	if w2 == nil || !w2.IsConnected() {
		t.Error("worker 2 does not serve any more")
	}
	lines := c.rec.all()
	if index(lines, "reload-finished") >= 0 || index(lines, "restart") >= 0 || index(lines, "fork 5") >= 0 {
		t.Errorf("events %q", lines)
	}
}

// TestPoolReloadUnderLoad: two reloads of two serving workers while a
// loopback client sends requests, a new connection each: every request is
// answered.
func TestPoolReloadUnderLoad(t *testing.T) {
	for _, sched := range []runtime.SchedulingPolicy{runtime.SchedRoundRobin, runtime.SchedShared} {
		t.Run(sched.String(), func(t *testing.T) {
			c := newCluster(t, runtime.WithSchedulingPolicy(sched))
			recordPool(c)
			pl := runtime.NewPool(c.p, runtime.WithPoolSize(2),
				runtime.WithPoolForkOptions(herdtest.ForkRole("serve")))
			t.Cleanup(func() { pl.Stop(context.Background()) })
			startPool(t, pl)
			c.rec.waitFor("ready 1 ")
			c.rec.waitFor("ready 2 ")
			addr := strings.TrimPrefix(c.rec.waitFor("report 1 addr "), "report 1 addr ")

			const clients, maxRequests = 4, 200_000
			var ok, failed, sent atomic.Int64
			var firstErr atomic.Value
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for sent.Add(1) <= maxRequests {
						select {
						case <-stop:
							return
						default:
						}
						if err := ask(addr); err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
							continue
						}
						ok.Add(1)
					}
				}()
			}
			for range 2 {
				if err := pl.Reload(context.Background()); err != nil {
					t.Error(err)
				}
			}
			close(stop)
			wg.Wait()
			if failed.Load() != 0 {
				t.Errorf("%d of %d requests failed; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
			}
			if ok.Load() == 0 {
				t.Error("no request answered")
			}
			c.rec.waitFor("reload-finished 5,6")
			// The new workers answer.
			for range 10 {
				if err := ask(addr); err != nil {
					t.Errorf("after the reloads: %v", err)
				}
			}
			t.Logf("%d requests answered during two reloads", ok.Load())
		})
	}
}

// ask sends one request on a new connection and checks the answer.
func ask(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, waitLimit)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(waitLimit))
	if _, err := conn.Write([]byte("hi\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "ok ") {
		return fmt.Errorf("answer %q", line)
	}
	return nil
}

// crashidsWorker (role "crashids") is idle, except the workers whose IDs are in
// HERD_TEST_CRASH_IDS: those die before their handshake.
func crashidsWorker() int {
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second))
	if err != nil {
		return 10
	}
	if slices.Contains(strings.Split(os.Getenv("HERD_TEST_CRASH_IDS"), ","), fmt.Sprint(self.ID())) {
		fmt.Fprintln(os.Stderr, "fatal: new version cannot start")
		return 2
	}
	if err := self.Start(context.Background()); err != nil {
		return 12
	}
	<-self.Done()
	select {}
}

// TestPoolReloadReplacementCrashes: a replacement that exits before it is
// ready aborts the reload at once, with its exit and its last stderr line
// in the error; the old workers keep serving.
func TestPoolReloadReplacementCrashes(t *testing.T) {
	c, pl := newPool(t, "crashids", runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithPoolForkOptions(runtime.WithForkEnv("HERD_TEST_CRASH_IDS=3")))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	c.rec.waitFor("ready 2 ")
	err := pl.Reload(context.Background())
	var re *runtime.ReloadError
	if !errors.As(err, &re) || re.Slot != 0 || re.Worker != 3 ||
		!strings.Contains(err.Error(), "exited before it was ready: exited with code 2") ||
		!strings.Contains(err.Error(), "fatal: new version cannot start") {
		t.Fatalf("Reload: %v", err)
	}
	c.rec.waitFor("reload-aborted slot=0 worker=3 exited before it was ready")
	if got := workerIDs(pl.Workers()); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("workers %v, want [1 2]", got)
	}
	if lines := c.rec.all(); index(lines, "restart") >= 0 || index(lines, "exit 1") >= 0 {
		t.Errorf("events %q", lines)
	}
}
