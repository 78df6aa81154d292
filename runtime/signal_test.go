//go:build unix

package runtime_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/emptypb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// The stop-signal tests' worker and primary (roles "inflight" and
// "graceful-primary").

// inflightWorker serves HTTP on a shared port: GET /slow reports "inflight"
// to the primary and answers "done" only once the worker drains, so every
// request the primary has heard of is in flight until the drain finishes
// it. Its drain hook reports "draining by-primary" when the drain's
// deadline is the primary's (a minute or less away; the primary's own stop
// in gracefulPrimary) and "draining alone" when it is the worker's own
// drain timeout (an hour: the disconnect carried no deadline).
func inflightWorker() int {
	ctx := context.Background()
	self, err := runtime.NewSelf(runtime.WithOrphanTimeout(time.Second), runtime.WithDrainTimeout(time.Hour))
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		return 10
	}
	report := func(msg string) {
		if err := self.Call(ctx, testv1herd.TestServiceReportProcedure, &testv1.ReportRequest{Message: msg}, &testv1.ReportResponse{}); err != nil {
			fmt.Fprintln(os.Stderr, "report:", err)
		}
	}
	draining := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		report("inflight")
		<-draining
		fmt.Fprint(w, "done")
	})}
	self.OnDisconnect(func(ctx context.Context) error {
		by := "alone"
		if d, ok := ctx.Deadline(); ok && time.Until(d) <= time.Minute {
			by = "by-primary"
		}
		report("draining " + by)
		close(draining)
		return srv.Shutdown(ctx)
	})
	if err := self.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Start:", err)
		return 12
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, "Listen:", err)
		return 13
	}
	go srv.Serve(ln)
	report("addr " + ln.Addr().String())
	<-self.Done()
	return 0
}

// noStopSignalsWorker opts out of the runtime's stop signals.
func noStopSignalsWorker() int {
	self, err := runtime.NewSelf(runtime.WithStopSignals())
	if err != nil {
		return 10
	}
	if err := self.Start(context.Background()); err != nil {
		return 12
	}
	if err := self.Call(context.Background(), testv1herd.TestServiceReportProcedure, &testv1.ReportRequest{Message: "ready"}, &testv1.ReportResponse{}); err != nil {
		return 13
	}
	<-self.Done()
	return 0
}

// gracefulPrimary is a primary as a program would write it: two inflight
// workers; on SIGINT or SIGTERM it disconnects them (30 s deadline), waits
// for their exits and exits 0. It prints the workers' reports and events,
// "signal NAME" and "done". Its grace for workers' stop signals is a
// minute, so that a signal to the whole group is certainly handled by its
// own stop, which is what the test checks.
func gracefulPrimary() int {
	ctx := context.Background()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	p := runtime.NewPrimary(herdtest.WorkerRole("inflight"), runtime.WithWorkerSignalGrace(time.Minute))
	var mu sync.Mutex
	println := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	err := p.Register(
		runtime.NewUnaryHandler(testv1herd.TestServiceReportProcedure, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
			w, _ := runtime.WorkerFromContext(ctx)
			println("report %d %s", w.ID(), req.GetMessage())
			return &testv1.ReportResponse{}, nil
		}),
		runtime.NewUnaryHandler("/herd.v1.EventService/Disconnect", func(ctx context.Context, ev *herdv1.DisconnectEvent) (*emptypb.Empty, error) {
			println("disconnect %d", ev.GetWorker().GetId())
			return empty(), nil
		}),
		runtime.NewUnaryHandler("/herd.v1.EventService/Exit", func(ctx context.Context, ev *herdv1.ExitEvent) (*emptypb.Empty, error) {
			println("exit %d code=%d signal=%s after=%t cause=%s", ev.GetWorker().GetId(), ev.GetCode(), ev.GetSignal(), ev.GetExitedAfterDisconnect(), ev.GetCause())
			return empty(), nil
		}),
	)
	if err != nil {
		println("register: %v", err)
		return 2
	}
	for range 2 {
		if _, err := p.Fork(ctx); err != nil {
			println("fork: %v", err)
			return 2
		}
	}
	sig := <-sigs
	println("signal %v", sig)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := p.Disconnect(dctx); err != nil {
		println("disconnect: %v", err)
		return 3
	}
	if err := p.Wait(ctx); err != nil {
		println("wait: %v", err)
		return 3
	}
	println("done")
	return 0
}

// getSlow sends GET /slow on a connection of its own and returns the status
// and body, or the error.
func getSlow(client *http.Client, addr string) string {
	resp, err := client.Get("http://" + addr + "/slow")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// TestStopSignalToProcessGroup runs a primary in its own process group,
// with requests in flight in both of its workers, and sends SIGTERM or
// SIGINT to the whole group, as Ctrl-C, kill -- -PGID, systemd and docker
// stop do: every request finishes, the workers are drained by the primary's
// own stop (not each on its own), every exit is clean and after a
// disconnect, and the primary exits 0.
func TestStopSignalToProcessGroup(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			herdtest.CheckLeaks(t)
			p := herdtest.Start(t, "graceful-primary", herdtest.WithProcessGroup())
			p.Timeout = waitLimit

			// Both workers listen (in either order) on the same port.
			_, addr, ok := strings.Cut(p.WaitLine("report "), " addr ")
			if !ok {
				t.Fatalf("first report: %q", p.Lines())
			}
			if l := p.WaitLine("report "); !strings.HasSuffix(l, " addr "+addr) {
				t.Fatalf("second worker: %q, want its address %s", l, addr)
			}
			// Four requests in flight: one connection each, spread over
			// both workers by round robin.
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitLimit}
			const inflight = 4
			results := make(chan string, inflight)
			for range inflight {
				go func() { results <- getSlow(client, addr) }()
			}
			for range inflight {
				if l := p.WaitLine("report "); !strings.HasSuffix(l, " inflight") {
					t.Fatalf("before the signal: %q", l)
				}
			}

			p.SignalGroup(sig)
			for range inflight {
				if r := <-results; r != "200 done" {
					t.Errorf("request in flight when %v reached the group: %s", sig, r)
				}
			}
			p.WaitLine("done")
			p.WaitExit(0)
			seen := p.Lines()
			for _, id := range []int{1, 2} {
				var got []string
				for _, l := range seen {
					kind, rest, _ := strings.Cut(l, " ")
					if kind == "report" || kind == "disconnect" || kind == "exit" {
						if wid, tail, _ := strings.Cut(rest, " "); wid == fmt.Sprint(id) && !strings.HasPrefix(tail, "addr") && tail != "inflight" {
							got = append(got, strings.TrimSpace(kind+" "+tail))
						}
					}
				}
				want := []string{"report draining by-primary", "disconnect", "exit code=0 signal= after=true cause=EXIT_CAUSE_CLEAN"}
				if !slices.Equal(got, want) {
					t.Errorf("worker %d: %q, want %q (output %q)", id, got, want, seen)
				}
			}
		})
	}
}

// TestStopSignalToOneWorker signals one worker alone: it finishes its
// requests in flight and disconnects gracefully (the primary sees a
// disconnect, then an exit after disconnect); the other worker serves on.
func TestStopSignalToOneWorker(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			c := newCluster(t)
			w1 := c.fork("inflight")
			w2 := c.fork("inflight")
			_, addr, _ := strings.Cut(c.rec.waitFor("report 1 addr "), "addr ")
			c.rec.waitFor("report 2 addr ")
			client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitLimit}
			// Requests until worker 1 holds two in flight.
			results := make(chan string, 16)
			sent := 0
			for c.rec.count("report 1 inflight") < 2 {
				if sent == cap(results) {
					t.Fatalf("worker 1 got fewer than 2 of %d requests: %q", sent, c.rec.all())
				}
				go func() { results <- getSlow(client, addr) }()
				sent++
				c.rec.waitCount("report ", 2+sent) // the addr reports, then one per request
			}
			if err := syscall.Kill(w1.PID(), sig); err != nil {
				t.Fatal(err)
			}
			ev := c.waitExit(w1)
			if ev.GetCode() != 0 || ev.GetSignal() != "" || !ev.GetExitedAfterDisconnect() || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_CLEAN || !w1.ExitedAfterDisconnect() {
				t.Errorf("exit of the signalled worker: %v", ev)
			}
			var got []string
			for _, l := range c.rec.of(w1.ID()) {
				if !strings.HasPrefix(l, "report addr") && l != "report inflight" && !strings.HasPrefix(l, "listening 127.0.0.1:") {
					got = append(got, l)
				}
			}
			want := []string{"fork", "online", "report draining alone", "disconnect", "exit code=0 signal= after=true cause=EXIT_CAUSE_CLEAN"}
			if !slices.Equal(got, want) {
				t.Errorf("events of the signalled worker: %q, want %q", got, want)
			}
			// Worker 1's requests finished; worker 2 still holds its own
			// until it drains.
			done := 0
			for range c.rec.count("report 1 inflight") {
				if r := <-results; r != "200 done" {
					t.Errorf("request in flight in the signalled worker: %s", r)
				}
				done++
			}
			if !w2.IsConnected() || w2.IsDead() {
				t.Errorf("the other worker was disconnected too")
			}
			if err := w2.Disconnect(context.Background()); err != nil {
				t.Fatal(err)
			}
			for range sent - done {
				if r := <-results; r != "200 done" {
					t.Errorf("request in flight in the other worker: %s", r)
				}
			}
		})
	}
}

// TestStopSignalOptOut: a worker built WithStopSignals() dies of SIGTERM as
// any program without a handler does, and its exit says so.
func TestStopSignalOptOut(t *testing.T) {
	c := newCluster(t)
	w := c.fork("nostopsignals")
	c.rec.waitFor("report 1 ready")
	if err := syscall.Kill(w.PID(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ev := c.waitExit(w)
	if ev.GetCode() != -1 || ev.GetSignal() != "SIGTERM" || ev.GetExitedAfterDisconnect() || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_SIGNAL {
		t.Errorf("exit = %v, want death by SIGTERM", ev)
	}
}

// TestKillIsNotADrain: Worker.Kill's signal ends a worker that handles stop
// signals, with no drain (its hook does not run), and the exit says killed.
func TestKillIsNotADrain(t *testing.T) {
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
	}{{syscall.SIGTERM, "SIGTERM"}, {syscall.SIGINT, "SIGINT"}} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			w := c.fork("hooks")
			c.rec.waitFor("report 1 ready")
			if err := w.Kill(tc.sig); err != nil {
				t.Fatal(err)
			}
			ev := c.waitExit(w)
			if ev.GetCode() != -1 || ev.GetSignal() != tc.name || ev.GetExitedAfterDisconnect() || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_KILLED {
				t.Errorf("exit = %v, want killed by %s", ev, tc.name)
			}
			if slices.Contains(c.rec.of(w.ID()), "report draining") {
				t.Errorf("Kill ran the drain hooks: %q", c.rec.of(w.ID()))
			}
		})
	}
}

// count returns how many recorded lines start with prefix.
func (r *recorder) count(prefix string) int {
	n := 0
	for _, l := range r.all() {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// waitCount waits until at least n recorded lines start with prefix.
func (r *recorder) waitCount(prefix string, n int) {
	r.t.Helper()
	deadline := time.NewTimer(waitLimit)
	defer deadline.Stop()
	for r.count(prefix) < n {
		select {
		case <-r.notify:
		case <-deadline.C:
			r.t.Fatalf("fewer than %d events %q; have %q", n, prefix, r.all())
		}
	}
}
