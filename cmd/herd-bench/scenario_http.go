package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	benchv1 "github.com/herd-go/herd/cmd/herd-bench/internal/benchv1"
	"github.com/herd-go/herd/cmd/herd-bench/internal/benchv1/benchv1herd"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
)

// The HTTP scenarios: a hello-world server, loaded by the harness for the
// measuring time over a fixed number of connections (see load.go). The
// servers are child processes speaking the child protocol: "ready
// {"port": N}" once listening on 127.0.0.1:N, then, when their stdin ends,
// "result {...}" with what they counted.

// A server starts one HTTP system as a child.
type server func(cfg *config) (*child, error)

// serverSingle is a plain single-process Go net/http server.
func serverSingle(cfg *config) (*child, error) { return startSelf(cfg, roleSingle) }

// serverHerd is a herd cluster of cfg.workers workers sharing one port
// under a scheduling policy: rr, shared or reuseport.
func serverHerd(policy string) server {
	return func(cfg *config) (*child, error) {
		return startSelf(cfg, roleHTTPPrimary, "HERD_SCHED_POLICY="+policy)
	}
}

// serverRawRR is the raw hand-off baseline (scenario_http_rawrr_linux.go):
// cfg.workers children behind a bare accepting process.
func serverRawRR(cfg *config) (*child, error) { return startSelf(cfg, roleRawRR) }

// httpRun measures one server under load: requests per second under
// "value", and whatever the server reports at the end.
func httpRun(srv server, closeConns bool) func(context.Context, *config) (map[string]float64, error) {
	return func(ctx context.Context, cfg *config) (map[string]float64, error) {
		c, err := srv(cfg)
		if err != nil {
			return nil, err
		}
		defer c.kill()
		ready, err := c.await(ctx, lineReady, childTimeout)
		if err != nil {
			return nil, err
		}
		port := int(ready["port"])
		if port <= 0 || port > 65535 {
			return nil, c.failure(fmt.Errorf("bad port %v", ready["port"]))
		}
		load, err := runLoad(ctx, cfg, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), closeConns)
		if err != nil {
			return nil, c.failure(fmt.Errorf("load: %w", err))
		}
		c.stop()
		res, err := c.await(ctx, lineResult, childTimeout)
		if err != nil {
			return nil, err
		}
		if err := c.finish(ctx); err != nil {
			return nil, err
		}
		res["value"] = load.rps()
		return res, nil
	}
}

// The hello-world handler of every Go server: the same bytes as Node's
// (a 14-byte text/plain body with its Content-Length; net/http adds Date,
// as Node does).
var (
	helloBody   = []byte("Hello, World!\n")
	helloType   = []string{"text/plain"}
	helloLength = []string{strconv.Itoa(len(helloBody))}
)

type helloHandler struct{}

func (helloHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = helloType
	h["Content-Length"] = helloLength
	w.Write(helloBody)
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// serve runs an HTTP server on ln until stop closes, then shuts it down.
func serveUntil(ln net.Listener, stop <-chan struct{}) error {
	srv := &http.Server{Handler: helloHandler{}, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-stop:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		srv.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// singleServer is the single-process Go server.
func singleServer() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	var accepted atomic.Int64
	stop := stdinClosed()
	emit(lineReady, map[string]float64{"port": float64(ln.Addr().(*net.TCPAddr).Port)})
	cpu := startServerCPU(os.Getpid())
	if err := serveUntil(countingListener{ln, &accepted}, stop); err != nil {
		return err
	}
	figs := map[string]float64{"connections": float64(accepted.Load())}
	cpu.report(figs, float64(accepted.Load()))
	emit(lineResult, figs)
	return nil
}

// The herd HTTP systems: a primary (this binary) forks HERD_BENCH_WORKERS
// workers, each of which listens on 127.0.0.1:0 with runtime.Listen and
// serves the hello-world handler with net/http. The policy comes from
// HERD_SCHED_POLICY in the primary's environment (runtime.EnvSchedPolicy),
// set by the harness, and every worker checks, with runtime.ListenerPolicy,
// that its listener got it. When its stdin ends the primary asks each
// worker how many connections it accepted and reports the spread.

// envWorkerProcs is the GOMAXPROCS of the HTTP clusters' workers
// (-worker-gomaxprocs): -1 (or unset) herd's default for a Pool of that many
// workers, 0 Go's default, n > 0 n.
const envWorkerProcs = "HERD_BENCH_WORKER_GOMAXPROCS"

// envNoRescue set to 1 makes the HTTP clusters' primary hand rr
// connections off without keeping its copies (-handoff-no-rescue,
// runtime.WithHandoffWithoutRescue).
const envNoRescue = "HERD_BENCH_HANDOFF_NO_RESCUE"

// httpPrimary is the herd HTTP cluster.
func httpPrimary() error {
	n, err := roleInt(envWorkers)
	if err != nil {
		return err
	}
	ctx := context.Background()
	env := []string{envWorkerRole + "=" + workerHTTP}
	// The cluster forks its workers itself, outside a Pool, so it applies
	// the rule a Pool of n workers would (runtime.WorkerGOMAXPROCS).
	procs := runtime.WorkerGOMAXPROCS(n, runtime.DefaultPoolSize())
	if v := os.Getenv(envWorkerProcs); v != "" && v != "-1" {
		if procs, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("%s: %w", envWorkerProcs, err)
		}
	}
	opts := []runtime.PrimaryOption{runtime.WithEnv(env...), runtime.WithWorkerGOMAXPROCS(procs)}
	if os.Getenv(envNoRescue) == "1" {
		opts = append(opts, runtime.WithHandoffWithoutRescue())
	}
	p := runtime.NewPrimary(opts...)
	ev := newClusterEvents()
	if err := herdv1herd.RegisterEventServiceHandler(p, ev); err != nil {
		return err
	}
	defer stopCluster(p)
	stop := stdinClosed()
	var first *runtime.Worker
	for range n {
		w, err := p.Fork(ctx)
		if err != nil {
			return err
		}
		if first == nil {
			first = w
		}
	}
	port, err := ev.waitListening(n, 60*time.Second)
	if err != nil {
		return err
	}
	if os.Getenv(envKill) != "" {
		return killedCluster(p, ev, first, port, stop)
	}
	emit(lineReady, map[string]float64{"port": float64(port)})
	pids := []int{os.Getpid()}
	for _, w := range p.Workers() {
		pids = append(pids, w.PID())
	}
	servers := startServerCPU(pids...)
	cpu0, cpuOK := selfCPU()
	<-stop
	cpu1, _ := selfCPU()
	servers.stop()

	want, _ := runtime.ParseSchedulingPolicy(os.Getenv(runtime.EnvSchedPolicy))
	var counts []float64
	for _, w := range p.Workers() {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		res, err := benchv1herd.NewBenchServiceClient(w).Connections(cctx, &benchv1.ConnectionsRequest{})
		cancel()
		if err != nil {
			return fmt.Errorf("worker %d: connections: %w", w.ID(), err)
		}
		if want != runtime.SchedDefault && res.GetPolicy() != want.String() {
			return fmt.Errorf("worker %d listens with policy %q, want %q", w.ID(), res.GetPolicy(), want)
		}
		counts = append(counts, float64(res.GetAccepted()))
	}
	if err := stopCluster(p); err != nil {
		return err
	}
	figs := map[string]float64{}
	if len(counts) > 0 {
		lo, hi := slices.Min(counts), slices.Max(counts)
		figs["conns_min"], figs["conns_max"] = lo, hi
		if lo > 0 {
			figs["rr_balance_max_over_min"] = hi / lo
		}
		// The primary's CPU while the load ran (it accepts and hands off
		// every connection under rr), per 1000 connections the workers
		// accepted.
		if total := floatSum(counts); cpuOK && total > 0 {
			figs["http_close_primary_cpu_ms_per_1k_conns"] = float64((cpu1 - cpu0).Microseconds()) / 1e3 / (total / 1000)
		}
		servers.report(figs, floatSum(counts))
	}
	emit(lineResult, figs)
	return nil
}

// killedCluster is the rest of httpPrimary in the kill scenario: it names
// the first worker as the victim, replaces nothing when the harness kills
// it, and reports whether it died of SIGKILL.
func killedCluster(p *runtime.Primary, ev *clusterEvents, victim *runtime.Worker, port int, stop <-chan struct{}) error {
	emit(lineReady, map[string]float64{"port": float64(port), "victim": float64(victim.PID()), "victim_id": float64(victim.ID())})
	<-stop
	killed := 0.0
	t := time.NewTimer(10 * time.Second)
	defer t.Stop()
wait:
	for {
		select {
		case x := <-ev.exit:
			if x.GetWorker().GetId() != victim.ID() {
				return fmt.Errorf("worker %d exited: code %d signal %q", x.GetWorker().GetId(), x.GetCode(), x.GetSignal())
			}
			if x.GetSignal() == "SIGKILL" {
				killed = 1
			}
			break wait
		case <-t.C:
			break wait // the victim is still there: killed stays 0
		}
	}
	if err := stopCluster(p); err != nil {
		return err
	}
	emit(lineResult, map[string]float64{"victim_killed": killed})
	return nil
}

// envAcceptAhead, when set in the harness's environment, is the
// runtime.WithAcceptAhead value of the herd HTTP workers' listeners (-1:
// no bound), for comparing bounds; unset, they use the default.
const envAcceptAhead = "HERD_BENCH_ACCEPT_AHEAD"

// envDeferAccept, when set in the harness's environment (a boolean), says
// whether the herd HTTP workers listen with runtime.WithDeferAccept; unset,
// the kill scenario's do and the others' do not.
const envDeferAccept = "HERD_BENCH_DEFER_ACCEPT"

// httpWorker is a herd HTTP worker.
func httpWorker() error {
	ctx := context.Background()
	self, err := runtime.NewSelf()
	if err != nil {
		return err
	}
	var (
		accepted atomic.Int64
		policy   atomic.Value // string
	)
	policy.Store("")
	conns := func(ctx context.Context, _ *benchv1.ConnectionsRequest) (*benchv1.ConnectionsResponse, error) {
		return &benchv1.ConnectionsResponse{Accepted: uint64(accepted.Load()), Policy: policy.Load().(string)}, nil
	}
	if err := self.Register(runtime.NewUnaryHandler(benchv1herd.BenchServiceConnectionsProcedure, conns)); err != nil {
		return err
	}
	if err := self.Start(ctx); err != nil {
		return err
	}
	var lopts []runtime.ListenOption
	if v := os.Getenv(envAcceptAhead); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", envAcceptAhead, v, err)
		}
		lopts = append(lopts, runtime.WithAcceptAhead(n))
	}
	// The kill scenario's servers defer accept (an HTTP server should);
	// envDeferAccept overrides it, for comparing.
	deferAccept := os.Getenv(envKill) != ""
	if v := os.Getenv(envDeferAccept); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s=%q: %w", envDeferAccept, v, err)
		}
		deferAccept = b
	}
	if deferAccept {
		lopts = append(lopts, runtime.WithDeferAccept())
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0", lopts...)
	if err != nil {
		return err
	}
	if p, ok := runtime.ListenerPolicy(ln); ok {
		policy.Store(p.String())
	}
	srv := &http.Server{Handler: helloHandler{}, ReadHeaderTimeout: 10 * time.Second}
	self.OnDisconnect(func(ctx context.Context) error {
		stopProfiles() // before the drain: the runtime exits the process after it
		return srv.Shutdown(ctx)
	})
	// A disconnect closes the listener (the runtime stops accepting first),
	// then the drain hook shuts the server down.
	served := net.Listener(countingListener{ln, &accepted})
	if path := os.Getenv(envCounts); path != "" {
		n, err := counterSlot(path, self.ID())
		if err != nil {
			return err
		}
		served = killListener{served, n}
	}
	if err := srv.Serve(served); !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	<-self.Done()
	return nil
}

// figServerCPU is the figure, in a server's result line, of the CPU its
// processes (a herd primary and its workers, or the single server) used
// while the load ran, in milliseconds per 1000 connections accepted.
const figServerCPU = "server_cpu_ms_per_1k_conns"

// serverCPU measures the CPU time of a set of processes (processCPU: the
// sum of their threads' time on the CPU, Linux only) from its start to
// its stop.
type serverCPU struct {
	pids   []int
	before time.Duration
	after  time.Duration
	ok     bool
}

func startServerCPU(pids ...int) *serverCPU {
	s := &serverCPU{pids: pids}
	s.before, s.ok = s.sum()
	return s
}

func (s *serverCPU) sum() (time.Duration, bool) {
	var total time.Duration
	for _, pid := range s.pids {
		d, ok := processCPU(pid)
		if !ok {
			return 0, false
		}
		total += d
	}
	return total, true
}

// stop takes the second reading (report does, if stop was not called).
func (s *serverCPU) stop() {
	if s.after == 0 && s.ok {
		s.after, s.ok = s.sum()
	}
}

// report puts figServerCPU for conns connections into figs, when both
// readings could be made.
func (s *serverCPU) report(figs map[string]float64, conns float64) {
	s.stop()
	if s.ok && conns > 0 && s.after > s.before {
		figs[figServerCPU] = float64((s.after - s.before).Microseconds()) / 1e3 / (conns / 1000)
	}
}

func floatSum(v []float64) float64 {
	var s float64
	for _, x := range v {
		s += x
	}
	return s
}
