//go:build herdlisten

package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"

	testv1 "github.com/herd-go/herd/gen/herd/test/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
)

// The herd HTTP systems: a primary (this binary) forks HERD_BENCH_WORKERS
// workers, each of which listens on 127.0.0.1:0 with runtime.Listen and
// serves the hello-world handler with net/http. The policy comes from
// HERD_SCHED_POLICY in the primary's environment (runtime.EnvSchedPolicy),
// set by the harness, and every worker checks, with runtime.ListenerPolicy,
// that its listener got it. When its stdin ends the primary asks each
// worker how many connections it accepted and reports the spread.

// procConnections asks an HTTP worker for its count of accepted
// connections and its listener's policy: a procedure of the harness's own,
// with TestService's messages.
const procConnections = "/herd.bench.v1.BenchService/Connections"

// httpPrimary is the herd HTTP cluster.
func httpPrimary() error {
	n, err := roleInt(envWorkers)
	if err != nil {
		return err
	}
	ctx := context.Background()
	p := runtime.NewPrimary(runtime.WithEnv(envWorkerRole + "=" + workerHTTP))
	ev := newClusterEvents()
	if err := herdv1herd.RegisterEventServiceHandler(p, ev); err != nil {
		return err
	}
	defer stopCluster(p)
	stop := stdinClosed()
	for range n {
		if _, err := p.Fork(ctx); err != nil {
			return err
		}
	}
	port, err := ev.waitListening(n, 60*time.Second)
	if err != nil {
		return err
	}
	emit(lineReady, map[string]float64{"port": float64(port)})
	<-stop

	want, _ := runtime.ParseSchedulingPolicy(os.Getenv(runtime.EnvSchedPolicy))
	var counts []float64
	for _, w := range p.Workers() {
		var res testv1.ReportRequest
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := w.Call(cctx, procConnections, &testv1.StatsRequest{}, &res)
		cancel()
		if err != nil {
			return fmt.Errorf("worker %d: connections: %w", w.ID(), err)
		}
		if want != runtime.SchedDefault && res.GetMessage() != want.String() {
			return fmt.Errorf("worker %d listens with policy %q, want %q", w.ID(), res.GetMessage(), want)
		}
		counts = append(counts, float64(res.GetSeq()))
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
	}
	emit(lineResult, figs)
	return nil
}

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
	conns := func(ctx context.Context, _ *testv1.StatsRequest) (*testv1.ReportRequest, error) {
		return &testv1.ReportRequest{Seq: uint64(accepted.Load()), Message: policy.Load().(string)}, nil
	}
	if err := self.Register(runtime.NewUnaryHandler(procConnections, conns)); err != nil {
		return err
	}
	if err := self.Start(ctx); err != nil {
		return err
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	if p, ok := runtime.ListenerPolicy(ln); ok {
		policy.Store(p.String())
	}
	srv := &http.Server{Handler: helloHandler{}, ReadHeaderTimeout: 10 * time.Second}
	self.OnDisconnect(func(ctx context.Context) error {
		defer stopProfiles()
		return srv.Shutdown(ctx)
	})
	if err := srv.Serve(countingListener{ln, &accepted}); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-self.Done()
	return nil
}
