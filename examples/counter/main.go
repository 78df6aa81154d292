// Command counter is the example of Node's cluster documentation, with
// typed messages: workers serve HTTP on a port they share and tell the
// primary about every request with a fire-and-forget message; the primary
// counts.
//
//	go run ./examples/counter [-addr 127.0.0.1:8000] [-workers N] [-sched rr|shared|reuseport]
//
// GET / answers "hello from worker ID"; GET /stats answers the primary's
// current totals, which the worker fetches with a request/response call
// (an optional ?delay=DURATION holds a response, to watch a graceful
// shutdown finish it). Once every worker listens and is ready (round-robin
// connections go only to ready workers) the primary prints
//
//	listening addr=HOST:PORT
//
// with the real port (also for port 0). The workers are a supervised
// runtime.Pool: a worker that dies (kill -9) is replaced in its slot, and
// its replacement prints its own online line. SIGHUP to the primary reloads
// every worker, one at a time, without a failed request; when it is done the
// primary prints the new workers' IDs, ascending:
//
//	reloaded workers=3,4
//
// With HERD_ADMIN_SOCKET=PATH in its environment the primary serves its
// admin socket there (the pool does, see runtime.WithAdminSocket), and
// herdctl operates it: herdctl status [-json], reload (which prints the same
// reloaded line here), scale N, kill, disconnect and recycle ID, watch.
//
// SIGINT or SIGTERM, to the primary or to the whole process group (Ctrl-C,
// kill -- -PGID, systemd, docker stop), disconnects the workers gracefully
// (requests in flight finish; a worker that gets the signal too waits for
// the primary's disconnect, which the runtime arranges), then the primary
// prints
//
//	total=N per_worker=1:A,2:B
//
// and exits with status 0 (1 when a worker had to be killed: a second
// SIGINT or SIGTERM during the stop skips to SIGKILL).
//
// Operated: under systemd (examples/systemd) the pool speaks sd_notify
// (READY=1 once every worker is ready, STATUS=, RELOADING=1, STOPPING=1,
// WATCHDOG=1), and started with a socket (LISTEN_FDS: a .socket unit,
// systemd-socket-activate) the workers serve that socket instead of binding
// -addr. -health ADDR makes the primary serve the pool's readiness at GET
// /readyz (it prints "health addr=HOST:PORT"), and -drain-delay D makes
// SIGTERM first turn it to 503 while the workers serve on for D
// (Kubernetes: examples/kubernetes).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	counterv1 "github.com/herd-go/herd/examples/counter/gen/counter/v1"
	"github.com/herd-go/herd/examples/counter/gen/counter/v1/counterv1herd"
	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdhttp"
)

type options struct {
	addr    string
	workers int
	sched   string
	health  string
	drain   time.Duration
}

// parse reads the flags; workers run with the primary's arguments, so both
// sides parse them.
func parse(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("counter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8000", "address to serve HTTP on (port 0 picks one)")
	fs.IntVar(&o.workers, "workers", goruntime.NumCPU(), "number of workers")
	fs.StringVar(&o.sched, "sched", "", "scheduling policy: rr, shared or reuseport (default: "+runtime.EnvSchedPolicy+", else rr)")
	fs.StringVar(&o.health, "health", "", "address the primary serves its readiness on (GET /readyz: 200 while serving, 503 while draining); none when empty")
	fs.DurationVar(&o.drain, "drain-delay", 0, "on SIGTERM, report not ready and keep serving this long before the graceful stop")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.workers < 1 {
		return o, errors.New("-workers must be at least 1")
	}
	return o, nil
}

func main() {
	o, err := parse(os.Args[1:], os.Stderr)
	if err != nil {
		os.Exit(2)
	}
	if runtime.IsWorker() {
		os.Exit(worker(o))
	}
	os.Exit(primary(o, os.Stdout, os.Stderr))
}

// envActivated tells workers that the primary was given its socket by
// systemd (descriptor 3).
const envActivated = "COUNTER_SOCKET_ACTIVATED"

// ---- worker ----

func worker(o options) int {
	ctx := context.Background()
	self, err := runtime.NewSelf()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	counter := counterv1herd.NewCounterServiceClient(self)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		delay(r)
		fmt.Fprintf(w, "hello from worker %d\n", self.ID())
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, r *http.Request) {
		delay(r)
		st, err := counter.Stats(r.Context(), &counterv1.StatsRequest{})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		fmt.Fprintln(w, totals(st))
	})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Tell the primary, fire-and-forget (Node's process.send). The
		// message is queued before the response is written, so the
		// primary has counted it by the time the worker exits.
		if err := counter.SendHit(context.Background(), &counterv1.HitRequest{Path: r.URL.Path}); err != nil {
			fmt.Fprintln(os.Stderr, "hit:", err)
		}
		mux.ServeHTTP(w, r)
	})}
	if err := self.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// An HTTP client speaks first: the kernel queues a connection for
	// accept once its request arrived, so that a worker that dies holds
	// none still waiting for its request (README, "What a worker's death
	// costs").
	lopts := []runtime.ListenOption{runtime.WithDeferAccept()}
	if os.Getenv(envActivated) != "" {
		lopts = append(lopts, runtime.WithListenFD(3)) // systemd's socket, held by the primary
	}
	ln, err := runtime.Listen(ctx, "tcp", o.addr, lopts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "worker %d: %v\n", self.ID(), err)
		return 1
	}
	// Serve until the worker disconnects (a reload, a stop), then drain:
	// keep-alive connections end between requests, requests in flight
	// and those that arrive meanwhile are answered with "Connection:
	// close"; the worker exits once every connection has ended.
	if err := herdhttp.Serve(ctx, self, srv, ln); err != nil {
		fmt.Fprintf(os.Stderr, "worker %d: %v\n", self.ID(), err)
	}
	<-self.Done()
	return 0
}

// delay holds a response for ?delay=DURATION (at most ten seconds).
func delay(r *http.Request) {
	if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil && d > 0 {
		time.Sleep(min(d, 10*time.Second))
	}
}

// ---- primary ----

// counts is the primary's CounterService: the totals.
type counts struct {
	counterv1herd.UnimplementedCounterServiceHandler
	mu        sync.Mutex
	total     uint64
	perWorker map[uint64]uint64
}

// Hit implements counterv1herd.CounterServiceHandler.
func (c *counts) Hit(ctx context.Context, req *counterv1.HitRequest) (*counterv1.HitResponse, error) {
	w, _ := runtime.WorkerFromContext(ctx)
	c.mu.Lock()
	c.total++
	c.perWorker[w.ID()]++
	c.mu.Unlock()
	return &counterv1.HitResponse{}, nil
}

// Stats implements counterv1herd.CounterServiceHandler.
func (c *counts) Stats(ctx context.Context, req *counterv1.StatsRequest) (*counterv1.StatsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	res := &counterv1.StatsResponse{Total: c.total, PerWorker: make(map[uint64]uint64, len(c.perWorker))}
	for id, n := range c.perWorker {
		res.PerWorker[id] = n
	}
	return res, nil
}

// totals formats the totals line: total=N per_worker=1:A,2:B.
func totals(st *counterv1.StatsResponse) string {
	ids := make([]uint64, 0, len(st.GetPerWorker()))
	for id := range st.GetPerWorker() {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = fmt.Sprintf("%d:%d", id, st.GetPerWorker()[id])
	}
	return fmt.Sprintf("total=%d per_worker=%s", st.GetTotal(), strings.Join(parts, ","))
}

// events prints when every worker listens and is ready, and reports
// failures.
type events struct {
	herdv1herd.UnimplementedEventServiceHandler
	out     io.Writer
	stderr  io.Writer
	counts  *counts
	want    int
	mu      sync.Mutex
	ready   map[uint64]bool // workers the pool made ready
	addr    string          // the address of the last Listening
	printed bool
}

// Fork implements herdv1herd.EventServiceHandler: every worker gets a line
// in the totals, even with no requests.
func (e *events) Fork(ctx context.Context, ev *herdv1.ForkEvent) error {
	e.counts.mu.Lock()
	e.counts.perWorker[ev.GetWorker().GetId()] += 0
	e.counts.mu.Unlock()
	return nil
}

// ReloadFinished implements herdv1herd.EventServiceHandler.
func (e *events) ReloadFinished(ctx context.Context, ev *herdv1.ReloadFinishedEvent) error {
	ids := slices.Clone(ev.GetWorkers())
	slices.Sort(ids)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.FormatUint(id, 10)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(e.out, "reloaded workers=%s\n", strings.Join(parts, ","))
	return nil
}

// ReloadAborted implements herdv1herd.EventServiceHandler.
func (e *events) ReloadAborted(ctx context.Context, ev *herdv1.ReloadAbortedEvent) error {
	fmt.Fprintf(e.stderr, "reload aborted at slot %d: %s\n", ev.GetSlot(), ev.GetReason())
	return nil
}

// Online implements herdv1herd.EventServiceHandler.
func (e *events) Online(ctx context.Context, ev *herdv1.OnlineEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	fmt.Fprintf(e.out, "online worker=%d pid=%d\n", ev.GetWorker().GetId(), ev.GetWorker().GetPid())
	return nil
}

// Listening implements herdv1herd.EventServiceHandler: it notes the
// address; the line waits for Ready.
func (e *events) Listening(ctx context.Context, ev *herdv1.ListeningEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	host := ev.GetAddress().GetAddress()
	if host == "" {
		host = "::"
	}
	e.addr = net.JoinHostPort(host, strconv.Itoa(int(ev.GetAddress().GetPort())))
	e.printLocked()
	return nil
}

// Ready implements herdv1herd.EventServiceHandler. The pool marks a worker
// ready once it listens, after the Listening handlers ran; from then on
// round-robin connections go to it, so the line waits for every worker's
// Ready.
func (e *events) Ready(ctx context.Context, ev *herdv1.ReadyEvent) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ready[ev.GetWorker().GetId()] = true
	e.printLocked()
	return nil
}

// printLocked prints the listening line once every worker is ready and an
// address is known.
func (e *events) printLocked() {
	if !e.printed && e.addr != "" && len(e.ready) == e.want {
		e.printed = true
		fmt.Fprintf(e.out, "listening addr=%s\n", e.addr)
	}
}

// Exit implements herdv1herd.EventServiceHandler.
func (e *events) Exit(ctx context.Context, ev *herdv1.ExitEvent) error {
	if !ev.GetExitedAfterDisconnect() {
		fmt.Fprintf(e.stderr, "worker %d died (code %d, signal %q)\n", ev.GetWorker().GetId(), ev.GetCode(), ev.GetSignal())
	}
	return nil
}

func primary(o options, stdout, stderr io.Writer) int {
	ctx := context.Background()
	var opts []runtime.PrimaryOption
	if o.sched != "" {
		pol, err := runtime.ParseSchedulingPolicy(o.sched)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		opts = append(opts, runtime.WithSchedulingPolicy(pol))
	}
	// Socket activation (systemd, systemd-socket-activate): the workers
	// serve the socket passed as descriptor 3 instead of binding -addr.
	// NewPrimary takes it over, so the workers are told in a variable of
	// their own.
	if os.Getenv("LISTEN_PID") == strconv.Itoa(os.Getpid()) && os.Getenv("LISTEN_FDS") != "" {
		opts = append(opts, runtime.WithEnv(envActivated+"=1"))
	}
	p := runtime.NewPrimary(opts...)
	c := &counts{perWorker: make(map[uint64]uint64)}
	ev := &events{out: stdout, stderr: stderr, counts: c, want: o.workers, ready: make(map[uint64]bool)}
	if err := counterv1herd.RegisterCounterServiceHandler(p, c); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	if err := herdv1herd.RegisterEventServiceHandler(p, ev); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	// The pool keeps o.workers workers, replaces one that dies, reloads
	// them all on SIGHUP and, on SIGINT or SIGTERM, stops them gracefully:
	// each worker closes its listener, finishes its requests and exits
	// (SIGTERM after 30 seconds, then SIGKILL). Run returns once they all
	// have exited.
	// Under systemd (NOTIFY_SOCKET) the pool says READY=1 once every worker
	// is ready, with a STATUS= line, and pings the watchdog while healthy.
	// With -drain-delay, SIGTERM first turns -health's /readyz to 503 and
	// keeps serving that long (Kubernetes).
	pool := runtime.NewPool(p, runtime.WithPoolSize(o.workers), runtime.WithDrainDelay(o.drain))
	if o.health != "" {
		ln, err := net.Listen("tcp", o.health)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		mux := http.NewServeMux()
		mux.Handle("GET /readyz", pool.ReadinessHandler())
		hs := &http.Server{Handler: mux}
		go hs.Serve(ln)
		defer hs.Close()
		fmt.Fprintf(stdout, "health addr=%s\n", ln.Addr())
	}
	err := pool.Run(ctx)
	if err != nil {
		fmt.Fprintln(stderr, err)
	}
	st, _ := c.Stats(ctx, &counterv1.StatsRequest{})
	ev.mu.Lock()
	fmt.Fprintln(stdout, totals(st))
	ev.mu.Unlock()
	if err != nil {
		return 1
	}
	return 0
}
