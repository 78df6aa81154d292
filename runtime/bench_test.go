//go:build unix

package runtime_test

import (
	"context"
	"fmt"
	"io"
	"os"
	goruntime "runtime"
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

// Benchmarks over real worker processes (the test binary re-executed in
// mode "typed"), through the generated TestService stubs. Run them with
//
//	go test -run '^$' -bench . -benchmem ./runtime
//
// allocs/op is the primary's; worker-allocs/msg is the worker's, counted
// in the worker with runtime.MemStats and sent back.

// benchCluster is a primary serving TestService with one typed worker.
type benchCluster struct {
	p      *runtime.Primary
	w      *runtime.Worker
	c      testv1herd.TestServiceClient
	online chan uint64

	// reports counts Report messages handled by the primary; when it
	// reaches target, reached is signalled.
	reports atomic.Uint64
	target  atomic.Uint64
	reached chan struct{}
}

type onlineEvents struct {
	herdv1herd.UnimplementedEventServiceHandler
	online chan uint64
}

func (o *onlineEvents) Online(ctx context.Context, ev *herdv1.OnlineEvent) error {
	o.online <- ev.GetWorker().GetId()
	return nil
}

func newBenchCluster(b *testing.B, env ...string) *benchCluster {
	b.Helper()
	bc := &benchCluster{
		p:       runtime.NewPrimary(runtime.WithOutput(io.Discard, io.Discard)),
		online:  make(chan uint64, 16),
		reached: make(chan struct{}, 1),
	}
	svc := &testService{onReport: func(w *runtime.Worker, req *testv1.ReportRequest) {
		if bc.reports.Add(1) == bc.target.Load() {
			bc.reached <- struct{}{}
		}
	}}
	if err := testv1herd.RegisterTestServiceHandler(bc.p, svc); err != nil {
		b.Fatal(err)
	}
	if err := herdv1herd.RegisterEventServiceHandler(bc.p, &onlineEvents{online: bc.online}); err != nil {
		b.Fatal(err)
	}
	w, err := bc.p.Fork(context.Background(), herdtest.ForkRole("typed"), runtime.WithForkEnv(env...))
	if err != nil {
		b.Fatal(err)
	}
	bc.w, bc.c = w, testv1herd.NewTestServiceClient(w)
	select {
	case <-bc.online:
	case <-time.After(waitLimit):
		b.Fatal("worker did not come online")
	}
	b.Cleanup(func() {
		w.Kill(syscall.SIGKILL)
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		if err := bc.p.Wait(ctx); err != nil {
			b.Errorf("worker not reaped: %v", err)
		}
	})
	return bc
}

// workerMallocs returns the worker's runtime.MemStats.Mallocs.
func (bc *benchCluster) workerMallocs(b *testing.B) uint64 {
	b.Helper()
	st, err := bc.c.Stats(context.Background(), &testv1.StatsRequest{})
	if err != nil {
		b.Fatal(err)
	}
	return st.GetMallocs()
}

// BenchmarkOneWay: the worker sends small fire-and-forget messages
// (SendReport) to the primary as fast as it can; one op is one message,
// from the worker's first send until the primary's handler has run for
// the last.
func BenchmarkOneWay(b *testing.B) {
	bc := newBenchCluster(b)
	ctx := context.Background()
	// Warm up: buffers grown, pools filled, goroutines started.
	bc.target.Store(1000)
	if _, err := bc.c.Blast(ctx, &testv1.BlastRequest{Count: 1000}); err != nil {
		b.Fatal(err)
	}
	<-bc.reached
	bc.reports.Store(0)
	bc.target.Store(uint64(b.N))
	b.ReportAllocs()
	b.ResetTimer()
	pcpu0, pok0 := processCPU(os.Getpid())
	wcpu0, wok0 := processCPU(bc.w.PID())
	res, err := bc.c.Blast(ctx, &testv1.BlastRequest{Count: uint64(b.N)})
	if err != nil {
		b.Fatal(err)
	}
	<-bc.reached
	b.StopTimer()
	pcpu1, pok1 := processCPU(os.Getpid())
	wcpu1, wok1 := processCPU(bc.w.PID())
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(res.GetMallocs())/float64(b.N), "worker-allocs/msg")
	// CPU per message, which other load moves less than the rate: the
	// primary's (this process: reading, decoding, dispatch, the handler)
	// and the worker's (encoding, queueing, writing).
	if pok0 && pok1 && wok0 && wok1 {
		b.ReportMetric(float64(pcpu1-pcpu0)/float64(b.N), "primary-cpu-ns/msg")
		b.ReportMetric(float64(wcpu1-wcpu0)/float64(b.N), "worker-cpu-ns/msg")
	}
}

// newEchoBench starts a cluster for the Echo benchmarks and warms it up
// with 1000 calls.
func newEchoBench(b *testing.B) (*benchCluster, context.Context, *testv1.EchoRequest) {
	bc := newBenchCluster(b, benchWorkerEnv()...)
	ctx := context.Background()
	req := &testv1.EchoRequest{Message: "ping"}
	for range 1000 {
		if _, err := bc.c.Echo(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	return bc, ctx, req
}

// BenchmarkRoundTrip: request/response calls of Echo from the primary to
// the worker, one at a time; one op is one round trip.
//
// ctxsw/rtt (Linux) counts the context switches of both processes' threads
// (primary-ctxsw/rtt: the primary's alone). HERD_BENCH_WORKER_ENV adds to
// the worker's environment (benchWorkerEnv), for GOMAXPROCS on one side.
func BenchmarkRoundTrip(b *testing.B) {
	bc, ctx, req := newEchoBench(b)
	before := bc.workerMallocs(b)
	pBefore, okP := ctxSwitches(os.Getpid())
	wBefore, okW := ctxSwitches(bc.w.PID())
	b.ReportAllocs()
	b.ResetTimer()
	pcpu0, pok0 := processCPU(os.Getpid())
	wcpu0, wok0 := processCPU(bc.w.PID())
	for range b.N {
		if _, err := bc.c.Echo(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	pcpu1, pok1 := processCPU(os.Getpid())
	wcpu1, wok1 := processCPU(bc.w.PID())
	pAfter, okP2 := ctxSwitches(os.Getpid())
	wAfter, okW2 := ctxSwitches(bc.w.PID())
	// CPU per round trip, which other load moves less than the latency:
	// the primary's (the caller) and the worker's (the callee).
	if pok0 && pok1 && wok0 && wok1 {
		b.ReportMetric(float64(pcpu1-pcpu0)/float64(b.N), "primary-cpu-ns/rtt")
		b.ReportMetric(float64(wcpu1-wcpu0)/float64(b.N), "worker-cpu-ns/rtt")
	}
	after := bc.workerMallocs(b)
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/rtt")
	b.ReportMetric(float64(after-before)/float64(b.N), "worker-allocs/msg")
	if okP && okW && okP2 && okW2 {
		b.ReportMetric(float64(pAfter-pBefore)/float64(b.N), "primary-ctxsw/rtt")
		b.ReportMetric(float64(pAfter-pBefore+wAfter-wBefore)/float64(b.N), "ctxsw/rtt")
	}
}

// BenchmarkRoundTripParallel: calls from four goroutines per P at once over
// one link (one of them at a time may read its own reply, callspin.go; the
// others wait on their channels): round trips per second, and the CPU of
// both processes per round trip.
func BenchmarkRoundTripParallel(b *testing.B) {
	bc, ctx, req := newEchoBench(b)
	b.ReportAllocs()
	b.SetParallelism(4)
	b.ResetTimer()
	pcpu0, pok0 := processCPU(os.Getpid())
	wcpu0, wok0 := processCPU(bc.w.PID())
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := bc.c.Echo(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	pcpu1, pok1 := processCPU(os.Getpid())
	wcpu1, wok1 := processCPU(bc.w.PID())
	if pok0 && pok1 && wok0 && wok1 {
		b.ReportMetric(float64(pcpu1-pcpu0)/float64(b.N), "primary-cpu-ns/rtt")
		b.ReportMetric(float64(wcpu1-wcpu0)/float64(b.N), "worker-cpu-ns/rtt")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "rtt/s")
}

// BenchmarkRoundTrip1MiB: a 1 MiB payload to the worker and back (the
// worker's Payload handler echoes it). "default": messages own their
// bytes, as without options. "borrowed": the worker's handlers are
// registered WithBorrowedRequests (the echo is written from the buffer the
// request was read into) and the primary calls WithBorrowedResponse,
// releasing each response before the next call (borrow.go).
//
// Besides the primary's allocs/op and B/op: both processes' CPU per round
// trip (Linux), and their garbage collection cycles per round trip.
func BenchmarkRoundTrip1MiB(b *testing.B) {
	for _, borrowed := range []bool{false, true} {
		name, env := "default", []string(nil)
		if borrowed {
			name, env = "borrowed", []string{"HERD_TEST_BORROW=1"}
		}
		b.Run(name, func(b *testing.B) { benchRoundTrip1MiB(b, borrowed, env) })
	}
}

func benchRoundTrip1MiB(b *testing.B, borrowed bool, env []string) {
	bc := newBenchCluster(b, env...)
	ctx := context.Background()
	req := &testv1.PayloadRequest{Data: make([]byte, 1<<20)}
	var lease runtime.Lease
	var opts []runtime.CallOption
	if borrowed {
		opts = append(opts, runtime.WithBorrowedResponse(&lease))
	}
	call := func() {
		res, err := bc.c.Payload(ctx, req, opts...)
		if err != nil || len(res.GetData()) != 1<<20 {
			b.Fatal(err)
		}
		lease.Release()
	}
	for range 10 {
		call()
	}
	wst0, err := bc.c.Stats(ctx, &testv1.StatsRequest{})
	if err != nil {
		b.Fatal(err)
	}
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	pgc0 := ms.NumGC
	b.SetBytes(2 << 20)
	b.ReportAllocs()
	b.ResetTimer()
	pcpu0, pok0 := processCPU(os.Getpid())
	wcpu0, wok0 := processCPU(bc.w.PID())
	for range b.N {
		call()
	}
	b.StopTimer()
	pcpu1, pok1 := processCPU(os.Getpid())
	wcpu1, wok1 := processCPU(bc.w.PID())
	goruntime.ReadMemStats(&ms)
	wst1, err := bc.c.Stats(ctx, &testv1.StatsRequest{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/rtt")
	if pok0 && pok1 && wok0 && wok1 {
		b.ReportMetric(float64(pcpu1-pcpu0)/float64(b.N), "primary-cpu-ns/rtt")
		b.ReportMetric(float64(wcpu1-wcpu0)/float64(b.N), "worker-cpu-ns/rtt")
	}
	b.ReportMetric(float64(ms.NumGC-pgc0)/float64(b.N), "primary-gc/rtt")
	b.ReportMetric(float64(wst1.GetNumGc()-wst0.GetNumGc())/float64(b.N), "worker-gc/rtt")
}

// BenchmarkForkOnline: from Fork of n workers (at once) until every one
// of them is online (its handshake done, its handlers registered).
func BenchmarkForkOnline(b *testing.B) {
	for _, n := range []int{1, 8} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			online := make(chan uint64, n)
			p := runtime.NewPrimary(runtime.WithOutput(io.Discard, io.Discard))
			if err := herdv1herd.RegisterEventServiceHandler(p, &onlineEvents{online: online}); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			for range b.N {
				b.StartTimer()
				ws := make([]*runtime.Worker, n)
				for i := range ws {
					w, err := p.Fork(ctx, herdtest.ForkRole("typed"))
					if err != nil {
						b.Fatal(err)
					}
					ws[i] = w
				}
				for range n {
					select {
					case <-online:
					case <-time.After(waitLimit):
						b.Fatal("workers did not come online")
					}
				}
				b.StopTimer()
				for _, w := range ws {
					w.Kill(syscall.SIGKILL)
				}
				wctx, cancel := context.WithTimeout(ctx, waitLimit)
				err := p.Wait(wctx)
				cancel()
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/fork")
		})
	}
}
