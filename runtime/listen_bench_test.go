//go:build unix

package runtime_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// benchSingleMain is the single-process baseline (role "bench-single"): it
// serves the same handler with plain net/http on 127.0.0.1:0, prints its
// address and serves until stdin closes.
func benchSingleMain() int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "w0") }))
	fmt.Println("addr", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// benchClusterMain (role "bench-cluster") runs a primary with two workers
// serving the same handler under the policy HERD_BENCH_POLICY names, for an
// external load generator such as wrk:
//
//	go test -c -o /tmp/rt.test ./runtime
//	HERDTEST_ROLE=bench-cluster HERD_BENCH_POLICY=rr /tmp/rt.test   # prints "addr 127.0.0.1:PORT"
func benchClusterMain() int {
	tg, err := startHerdTarget(os.Getenv("HERD_BENCH_POLICY"))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if path := os.Getenv("HERD_BENCH_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Println("addr", tg.addr)
	io.Copy(io.Discard, os.Stdin)
	pprof.StopCPUProfile()
	tg.stop()
	return 0
}

// benchConcurrency is the number of client connections (goroutines).
const benchConcurrency = 32

// httpTarget is a server under test: its address and how to stop it.
type httpTarget struct {
	addr string
	stop func()
}

// startSingle starts the single-process baseline server.
func startSingle(tb testing.TB) httpTarget {
	tb.Helper()
	p := herdtest.Start(tb, "bench-single", herdtest.WithArgs("-test.run=^$"))
	line := p.WaitLine("addr ")
	return httpTarget{addr: strings.TrimSpace(line[5:]), stop: func() { p.CloseStdin(); p.WaitExit(0) }}
}

// startHerd starts a primary in this process with two ctl workers serving
// the same handler on one port under policy.
func startHerd(tb testing.TB, policy string) httpTarget {
	tb.Helper()
	tg, err := startHerdTarget(policy)
	if err != nil {
		tb.Fatal(err)
	}
	return tg
}

func startHerdTarget(policy string) (httpTarget, error) {
	p := runtime.NewPrimary()
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		p.Disconnect(ctx)
		p.Wait(ctx)
	}
	var ws []*runtime.Worker
	for range 2 {
		w, err := p.Fork(context.Background(), herdtest.ForkRole("ctl"))
		if err != nil {
			stop()
			return httpTarget{}, err
		}
		ws = append(ws, w)
	}
	var addr string
	for _, w := range ws {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		res, err := testv1herd.NewTestServiceClient(w).Listen(ctx, &testv1.ListenRequest{Network: "tcp", Address: "127.0.0.1:0", Policy: policy})
		cancel()
		if err != nil || res.GetErrorName() != "" {
			stop()
			return httpTarget{}, fmt.Errorf("listen: %v %v", res, err)
		}
		addr = res.GetAddress()
	}
	return httpTarget{addr: addr, stop: stop}, nil
}

var (
	reqKeepAlive = []byte("GET / HTTP/1.1\r\nHost: bench\r\n\r\n")
	reqClose     = []byte("GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
)

// roundTrip writes one request and reads its response: status line,
// headers, and a body of Content-Length bytes (or to EOF).
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) {
		return fmt.Errorf("status line %q", line)
	}
	length := -1
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if length < 0 {
		_, err = io.Copy(io.Discard, br)
		return err
	}
	_, err = br.Discard(length)
	return err
}

// load sends n requests (n < 0: until stop is closed) over conc client
// goroutines, each keeping one connection (keepAlive) or dialing one per
// request, and returns how many were served.
func load(addr string, keepAlive bool, conc, n int, stop <-chan struct{}) (int64, error) {
	var left atomic.Int64
	left.Store(int64(n))
	var done atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var firstErr error
	fail := func(err error) { once.Do(func() { firstErr = err }) }
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c net.Conn
			var br *bufio.Reader
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			for {
				if n >= 0 && left.Add(-1) < 0 {
					return
				}
				if n < 0 {
					select {
					case <-stop:
						return
					default:
					}
				}
				if c == nil {
					var err error
					if c, err = net.Dial("tcp", addr); err != nil {
						fail(err)
						return
					}
					br = bufio.NewReaderSize(c, 4096)
				}
				req := reqKeepAlive
				if !keepAlive {
					req = reqClose
				}
				if err := roundTrip(c, br, req); err != nil {
					fail(err)
					return
				}
				done.Add(1)
				if !keepAlive {
					c.Close()
					c = nil
				}
			}
		}()
	}
	wg.Wait()
	return done.Load(), firstErr
}

func startTarget(tb testing.TB, name string) httpTarget {
	if name == "single" {
		return startSingle(tb)
	}
	return startHerd(tb, name)
}

// BenchmarkHTTP measures hello-world HTTP throughput over loopback with a
// small Go client (32 connections): a single-process net/http server, and
// herd with two workers under each policy, with keep-alive and with a new
// connection per request. Compare the req/s of the rows (or run
// TestHTTPThroughputRatios with HERD_BENCH_RATIOS=1 for the ratios in one
// run).
func BenchmarkHTTP(b *testing.B) {
	for _, target := range []string{"single", "rr", "shared", "reuseport"} {
		for _, mode := range []string{"keepalive", "close"} {
			b.Run(target+"/"+mode, func(b *testing.B) {
				tg := startTarget(b, target)
				defer tg.stop()
				if _, err := load(tg.addr, mode == "keepalive", benchConcurrency, 2*benchConcurrency, nil); err != nil {
					b.Fatal(err) // warm up
				}
				b.ResetTimer()
				start := time.Now()
				n, err := load(tg.addr, mode == "keepalive", benchConcurrency, b.N, nil)
				elapsed := time.Since(start)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(n)/elapsed.Seconds(), "req/s")
			})
		}
	}
}

// TestHTTPThroughputRatios runs each target for a fixed time, in one run,
// and prints req/s and the ratio to the single-process server. It is a
// measurement, not a check: it runs only with HERD_BENCH_RATIOS=1 (a
// duration in HERD_BENCH_SECONDS, default 3).
func TestHTTPThroughputRatios(t *testing.T) {
	if os.Getenv("HERD_BENCH_RATIOS") != "1" {
		t.Skip("set HERD_BENCH_RATIOS=1 to measure")
	}
	secs, _ := strconv.Atoi(os.Getenv("HERD_BENCH_SECONDS"))
	if secs <= 0 {
		secs = 3
	}
	rates := map[string]float64{}
	for _, mode := range []string{"keepalive", "close"} {
		for _, target := range []string{"single", "rr", "shared", "reuseport"} {
			tg := startTarget(t, target)
			load(tg.addr, mode == "keepalive", benchConcurrency, 4*benchConcurrency, nil)
			stop := make(chan struct{})
			time.AfterFunc(time.Duration(secs)*time.Second, func() { close(stop) })
			start := time.Now()
			n, err := load(tg.addr, mode == "keepalive", benchConcurrency, -1, stop)
			elapsed := time.Since(start)
			tg.stop()
			if err != nil {
				t.Fatalf("%s/%s: %v", target, mode, err)
			}
			rate := float64(n) / elapsed.Seconds()
			rates[target+"/"+mode] = rate
			t.Logf("%-20s %9.0f req/s  %.2fx single", target+"/"+mode, rate, rate/rates["single/"+mode])
		}
	}
}
