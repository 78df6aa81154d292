package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	goruntime "runtime"
	"sync/atomic"
	"time"

	benchv1 "github.com/herd-go/herd/cmd/herd-bench/internal/benchv1"
	"github.com/herd-go/herd/cmd/herd-bench/internal/benchv1/benchv1herd"
	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
)

// The herd IPC scenarios: a primary and one worker, both this binary,
// talking through the generated client and handler of herd-bench's own
// herd.bench.v1.BenchService (internal/proto/herd/bench/v1), as users would:
//
//   - one-way: the primary calls the worker's Blast with a batch count, over
//     and over for the measuring time; the worker sends that many Reports
//     ({seq: n}, about 45 bytes on the wire) to the primary, fire-and-forget
//     (SendReport); the primary's Report handler counts them.
//   - round trip: the primary calls the worker's Echo with a short message.
//   - 1 MiB: the primary calls the worker's Payload with 1 MiB of data,
//     which comes back: with borrowed buffers (the worker's handler
//     WithBorrowedRequests, the primary's call WithBorrowedResponse), and,
//     as "herd default", without.

// blastBatch is the count of one Blast call: large enough that a call
// costs little next to its batch, small enough for short runs. The calls
// overlap (blastsInFlight), so the worker does not pause between batches.
const blastBatch = 16384

// blastsInFlight is how many Blast calls the one-way scenario keeps
// outstanding (see herdOneway).
const blastsInFlight = 2

// envBorrow, set to 1 in the worker's environment, registers its handlers
// WithBorrowedRequests (ipc_1mib_rtt's herd run).
const envBorrow = "HERD_BENCH_BORROW"

// blobSize is the payload of the ipc_1mib_rtt scenario.
const blobSize = 1 << 20

// maxSamples bounds the latency samples of one run.
const maxSamples = 4 << 20

// warmup round trips are made, and not counted, before a latency run.
const warmup = 100

// clusterEvents forwards the events the harness waits for to channels.
// The handlers never block: an event that finds its channel full is
// dropped (the channels are sized for the clusters the harness forks).
type clusterEvents struct {
	herdv1herd.UnimplementedEventServiceHandler
	online    chan uint64
	listening chan *herdv1.ListeningEvent
	exit      chan *herdv1.ExitEvent
}

func newClusterEvents() *clusterEvents {
	return &clusterEvents{
		online:    make(chan uint64, 256),
		listening: make(chan *herdv1.ListeningEvent, 256),
		exit:      make(chan *herdv1.ExitEvent, 256),
	}
}

func (e *clusterEvents) Online(ctx context.Context, ev *herdv1.OnlineEvent) error {
	select {
	case e.online <- ev.GetWorker().GetId():
	default:
	}
	return nil
}

func (e *clusterEvents) Listening(ctx context.Context, ev *herdv1.ListeningEvent) error {
	select {
	case e.listening <- ev:
	default:
	}
	return nil
}

func (e *clusterEvents) Exit(ctx context.Context, ev *herdv1.ExitEvent) error {
	select {
	case e.exit <- ev:
	default:
	}
	return nil
}

// waitOnline waits for n online events; a worker exiting first is an
// error.
func (e *clusterEvents) waitOnline(n int, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for got := 0; got < n; {
		select {
		case <-e.online:
			got++
		case ev := <-e.exit:
			return fmt.Errorf("worker %d exited before it was online: code %d signal %q", ev.GetWorker().GetId(), ev.GetCode(), ev.GetSignal())
		case <-t.C:
			return fmt.Errorf("%d of %d workers online after %v", got, n, timeout)
		}
	}
	return nil
}

// stopCluster disconnects every worker and waits for their exit events.
func stopCluster(p *runtime.Primary) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return errors.Join(p.Disconnect(ctx), p.Wait(ctx))
}

// ipcPrimary is the herd primary of the IPC scenarios: it forks one worker
// and measures the mode the harness asked for.
func ipcPrimary() error {
	mode := os.Getenv(envMode)
	d, err := roleDuration()
	if err != nil {
		return err
	}
	ctx := context.Background()
	reports := &reportCounter{reached: make(chan time.Time, 1)}
	env := []string{envWorkerRole + "=" + workerIPC}
	if mode == mode1MiB {
		env = append(env, envBorrow+"=1")
	}
	p := runtime.NewPrimary(runtime.WithEnv(env...))
	ev := newClusterEvents()
	if err := herdv1herd.RegisterEventServiceHandler(p, ev); err != nil {
		return err
	}
	if err := benchv1herd.RegisterBenchServiceHandler(p, reports); err != nil {
		return err
	}
	w, err := p.Fork(ctx)
	if err != nil {
		return err
	}
	defer stopCluster(p)
	if err := ev.waitOnline(1, 30*time.Second); err != nil {
		return err
	}
	client := benchv1herd.NewBenchServiceClient(w)
	var v, n float64
	figs := map[string]float64{}
	cost := startPrimaryCost(w)
	switch mode {
	case modeOneway:
		cpu0, ok0 := selfCPU()
		wcpu0, wok0 := processCPU(w.PID())
		v, n, err = herdOneway(ctx, client, d, reports)
		// The primary's CPU per message received: decoding, dispatch and
		// the handler, and everything else the process did meanwhile.
		if cpu1, ok1 := selfCPU(); ok0 && ok1 && n > 0 {
			figs["ipc_oneway_ns_per_msg_primary"] = float64((cpu1 - cpu0).Nanoseconds()) / n
		}
		// The worker's CPU per message sent: encoding, queueing, writing,
		// waiting for credit, and serving the Blast calls.
		if wcpu1, wok1 := processCPU(w.PID()); wok0 && wok1 && n > 0 {
			figs["ipc_oneway_ns_per_msg_worker"] = float64((wcpu1 - wcpu0).Nanoseconds()) / n
		}
	case modeRTT:
		sw := startSwitchCount(os.Getpid(), w.PID())
		cpu0, ok0 := selfCPU()
		wcpu0, wok0 := processCPU(w.PID())
		v, n, err = herdRTT(ctx, client, d)
		if perRTT, ok := sw.per(n + warmup); ok {
			figs["ipc_rtt_ctx_switches"] = perRTT
		}
		// CPU per round trip on each side: what a faster round trip
		// costs (a caller that reads its own reply spins, callspin.go).
		if cpu1, ok1 := selfCPU(); ok0 && ok1 && n > 0 {
			figs["ipc_rtt_primary_cpu_us"] = float64((cpu1 - cpu0).Nanoseconds()) / 1e3 / (n + warmup)
		}
		if wcpu1, wok1 := processCPU(w.PID()); wok0 && wok1 && n > 0 {
			figs["ipc_rtt_worker_cpu_us"] = float64((wcpu1 - wcpu0).Nanoseconds()) / 1e3 / (n + warmup)
		}
	case mode1MiB, mode1MiBDefault:
		prefix := "ipc_1mib_rtt"
		if mode == mode1MiBDefault {
			prefix += "_default"
		}
		cpu0, ok0 := selfCPU()
		wcpu0, wok0 := processCPU(w.PID())
		var ms0, ms1 goruntime.MemStats
		goruntime.ReadMemStats(&ms0)
		v, n, err = herdBlobRTT(ctx, client, d, mode == mode1MiB)
		goruntime.ReadMemStats(&ms1)
		if n > 0 {
			figs[prefix+"_primary_allocs"] = float64(ms1.Mallocs-ms0.Mallocs) / n
			figs[prefix+"_primary_alloc_kib"] = float64(ms1.TotalAlloc-ms0.TotalAlloc) / 1024 / n
			figs[prefix+"_primary_gcs"] = float64(ms1.NumGC-ms0.NumGC) / n
		}
		if cpu1, ok1 := selfCPU(); ok0 && ok1 && n > 0 {
			figs[prefix+"_primary_cpu_us"] = float64((cpu1 - cpu0).Nanoseconds()) / 1e3 / n
		}
		if wcpu1, wok1 := processCPU(w.PID()); wok0 && wok1 && n > 0 {
			figs[prefix+"_worker_cpu_us"] = float64((wcpu1 - wcpu0).Nanoseconds()) / 1e3 / n
		}
	default:
		err = fmt.Errorf("unknown mode %q", mode)
	}
	if err != nil {
		return err
	}
	if mode != mode1MiB && mode != mode1MiBDefault {
		allocs, syscalls := cost.per(w, n)
		figs["ipc_"+mode+"_primary_allocs"], figs["ipc_"+mode+"_primary_syscalls"] = allocs, syscalls
	}
	if err := stopCluster(p); err != nil {
		return err
	}
	figs["value"], figs["n"] = v, n
	emit(lineResult, figs)
	return nil
}

// primaryCost counts the primary's heap allocations and its link's system
// calls (write, sendmsg, recvmsg, EAGAIN included) over a run.
type primaryCost struct {
	mallocs, syscalls uint64
}

func startPrimaryCost(w *runtime.Worker) primaryCost {
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	st := w.Stats()
	return primaryCost{mallocs: ms.Mallocs, syscalls: st.Writes + st.Reads}
}

// per returns the allocations and system calls since the start, per op
// (message or round trip). The warm-up is counted too, and ops says how
// many it made: what a steady state costs shows all the same.
func (c primaryCost) per(w *runtime.Worker, ops float64) (allocs, syscalls float64) {
	after := startPrimaryCost(w)
	if ops <= 0 {
		return 0, 0
	}
	return float64(after.mallocs-c.mallocs) / ops, float64(after.syscalls-c.syscalls) / ops
}

// switchCount counts the context switches of a set of processes.
type switchCount struct {
	pids   []int
	before uint64
	ok     bool
}

// startSwitchCount starts counting the context switches of pids.
func startSwitchCount(pids ...int) *switchCount {
	c := &switchCount{pids: pids}
	c.before, c.ok = c.read()
	return c
}

func (c *switchCount) read() (uint64, bool) {
	var total uint64
	for _, pid := range c.pids {
		n, ok := ctxSwitches(pid)
		if !ok {
			return 0, false
		}
		total += n
	}
	return total, true
}

// per returns the context switches since the start, divided by ops.
func (c *switchCount) per(ops float64) (float64, bool) {
	after, ok := c.read()
	if !ok || !c.ok || ops <= 0 {
		return 0, false
	}
	return float64(after-c.before) / ops, true
}

// reportCounter is the primary's BenchService: it counts the Reports of the
// one-way scenario, and says when the count reaches the target the
// primary sets once it knows how many were sent.
type reportCounter struct {
	benchv1herd.UnimplementedBenchServiceHandler
	received atomic.Uint64
	target   atomic.Uint64
	reached  chan time.Time
}

var reportResponse = &benchv1.ReportResponse{}

func (c *reportCounter) Report(ctx context.Context, req *benchv1.ReportRequest) (*benchv1.ReportResponse, error) {
	n := c.received.Add(1)
	if t := c.target.Load(); t != 0 && n == t {
		select {
		case c.reached <- time.Now():
		default:
		}
	}
	return reportResponse, nil
}

// wait sets the target and returns when it was reached.
func (c *reportCounter) wait(ctx context.Context, target uint64) (time.Time, error) {
	c.target.Store(target)
	if c.received.Load() >= target {
		return time.Now(), nil // reached before the target was known
	}
	select {
	case t := <-c.reached:
		return t, nil
	case <-ctx.Done():
		return time.Time{}, fmt.Errorf("%d of %d reports handled: %w", c.received.Load(), target, ctx.Err())
	}
}

// herdOneway has the worker blast Reports for d and returns the rate at
// which the primary handled them: the count, over the time from the first
// Blast call to the handling of the last Report.
//
// blastsInFlight Blast calls are kept outstanding, as Node's worker sends
// without a pause: the worker serves its Blast calls one after the other
// (one lane), so the next batch starts as soon as the last one ends. With
// one call at a time the worker sat idle for a round trip after every
// batch, and the primary with it: its reader handles the reports in order
// before it reads the reply, so it had no backlog left to handle meanwhile.
func herdOneway(ctx context.Context, client benchv1herd.BenchServiceClient, d time.Duration, c *reportCounter) (rate, n float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	t0 := time.Now()
	var sent atomic.Uint64
	errs := make(chan error, blastsInFlight)
	for range blastsInFlight {
		go func() {
			for first := true; first || time.Since(t0) < d; first = false {
				res, err := client.Blast(ctx, &benchv1.BlastRequest{Count: blastBatch})
				if err != nil {
					errs <- fmt.Errorf("blast: %w", err)
					return
				}
				sent.Add(res.GetSent())
			}
			errs <- nil
		}()
	}
	for range blastsInFlight {
		if e := <-errs; e != nil && err == nil {
			err = e
			cancel()
		}
	}
	if err != nil {
		return 0, 0, err
	}
	total := sent.Load()
	t1, err := c.wait(ctx, total)
	if err != nil {
		return 0, 0, err
	}
	if got := c.received.Load(); got != total {
		return 0, 0, fmt.Errorf("worker sent %d reports, primary handled %d", total, got)
	}
	return float64(total) / t1.Sub(t0).Seconds(), float64(total), nil
}

// herdRTT makes small Echo calls to the worker for d and returns the
// median round trip in µs.
func herdRTT(ctx context.Context, client benchv1herd.BenchServiceClient, d time.Duration) (medianUS, n float64, err error) {
	req := &benchv1.EchoRequest{Message: "ping"}
	samples := make([]int64, 0, 1<<16)
	var end time.Time
	for i := 0; ; i++ {
		if i == warmup {
			end = time.Now().Add(d)
		}
		if i > warmup && (!time.Now().Before(end) || len(samples) == maxSamples) {
			break
		}
		start := time.Now()
		res, err := client.Echo(ctx, req)
		if err != nil {
			return 0, 0, fmt.Errorf("echo: %w", err)
		}
		took := time.Since(start)
		if res.GetMessage() == "" {
			return 0, 0, errors.New("echo came back empty")
		}
		if i >= warmup {
			samples = append(samples, took.Nanoseconds())
		}
	}
	return durationMedianUS(samples), float64(len(samples)), nil
}

// herdBlobRTT echoes a 1 MiB payload for d (at least 5 times) and returns
// the median round trip in ms.
//
// borrowed makes the calls WithBorrowedResponse: the response's data shares
// the link's buffer until the Lease is released, after the check of its
// length (the worker borrows its request too, see ipcWorker).
func herdBlobRTT(ctx context.Context, client benchv1herd.BenchServiceClient, d time.Duration, borrowed bool) (medianMS, n float64, err error) {
	data := make([]byte, blobSize)
	for i := range data {
		data[i] = byte(i * 7)
	}
	req := &benchv1.PayloadRequest{Data: data}
	var lease runtime.Lease
	var opts []runtime.CallOption
	if borrowed {
		opts = append(opts, runtime.WithBorrowedResponse(&lease))
	}
	for range 3 { // warm-up: buffers grow to the frame size
		if _, err := client.Payload(ctx, req, opts...); err != nil {
			return 0, 0, fmt.Errorf("payload: %w", err)
		}
		lease.Release()
	}
	var samples []int64
	end := time.Now().Add(d)
	for len(samples) < 5 || time.Now().Before(end) {
		start := time.Now()
		res, err := client.Payload(ctx, req, opts...)
		if err != nil {
			return 0, 0, fmt.Errorf("payload: %w", err)
		}
		samples = append(samples, time.Since(start).Nanoseconds())
		got := len(res.GetData())
		lease.Release()
		if got != blobSize {
			return 0, 0, fmt.Errorf("payload came back with %d bytes", got)
		}
	}
	return durationMedianUS(samples) / 1e3, float64(len(samples)), nil
}

// ipcWorker is the herd worker of the IPC scenarios.
func ipcWorker() error {
	ctx := context.Background()
	self, err := runtime.NewSelf()
	if err != nil {
		return err
	}
	var hopts []runtime.HandlerOption
	if os.Getenv(envBorrow) == "1" {
		// ipc_1mib_rtt's herd run: the echo is written from the buffer
		// the request was read into (runtime/borrow.go).
		hopts = append(hopts, runtime.WithBorrowedRequests())
	}
	if err := benchv1herd.RegisterBenchServiceHandler(self, &ipcService{self: self, primary: benchv1herd.NewBenchServiceClient(self)}, hopts...); err != nil {
		return err
	}
	self.OnDisconnect(func(context.Context) error { stopProfiles(); return nil })
	if err := self.Start(ctx); err != nil {
		return err
	}
	<-self.Done()
	return nil
}

// ipcService is the worker's BenchService.
type ipcService struct {
	benchv1herd.UnimplementedBenchServiceHandler
	self    *runtime.Self
	primary benchv1herd.BenchServiceClient
}

func (s *ipcService) Echo(ctx context.Context, req *benchv1.EchoRequest) (*benchv1.EchoResponse, error) {
	return &benchv1.EchoResponse{Message: req.GetMessage(), WorkerId: s.self.ID()}, nil
}

// Blast sends count Reports to the primary, fire-and-forget; a full link
// blocks it (backpressure) until the primary catches up.
func (s *ipcService) Blast(ctx context.Context, req *benchv1.BlastRequest) (*benchv1.BlastResponse, error) {
	bg := context.Background()
	r := &benchv1.ReportRequest{}
	if p := req.GetPadding(); p > 0 {
		r.Padding = make([]byte, p)
	}
	for i := range req.GetCount() {
		r.Seq = i + 1
		if err := s.primary.SendReport(bg, r); err != nil {
			return nil, err
		}
	}
	return &benchv1.BlastResponse{Sent: req.GetCount()}, nil
}

func (s *ipcService) Payload(ctx context.Context, req *benchv1.PayloadRequest) (*benchv1.PayloadResponse, error) {
	data := req.GetData()
	if n := req.GetResponseSize(); n != 0 {
		data = make([]byte, n)
	}
	return &benchv1.PayloadResponse{Data: data}, nil
}
