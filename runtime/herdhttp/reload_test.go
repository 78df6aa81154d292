//go:build unix

package herdhttp_test

import (
	"context"
	"errors"
	"os"
	goruntime "runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// TestServeReloadUnderLoad: a pool of two workers serving with Serve is
// reloaded twice while loopback clients send requests back to back, half
// on keep-alive connections, half on a new connection each with
// "Connection: close". No request fails (the clients never retry), every
// keep-alive connection to a replaced worker ended with
// "Connection: close", and the new workers answer.
//
// With reuseport one failure is the kernel's, not the drain's: a
// handshake that completes on a replaced worker's SO_REUSEPORT socket as
// the primary closes it (after taking what its queue held) is reset,
// unless net.ipv4.tcp_migrate_req=1 moves it to another socket of the
// group. Such a reset of a new connection's first request is counted and
// logged, not failed, when tcp_migrate_req is off.
func TestServeReloadUnderLoad(t *testing.T) {
	policies := []runtime.SchedulingPolicy{runtime.SchedRoundRobin, runtime.SchedShared}
	if goruntime.GOOS == "linux" {
		policies = append(policies, runtime.SchedReusePort)
	}
	for _, sched := range policies {
		t.Run(sched.String(), func(t *testing.T) {
			herdtest.CheckLeaks(t)
			p := runtime.NewPrimary(herdtest.WorkerRole("web"), runtime.WithSchedulingPolicy(sched))
			events := herdtest.RecordEvents(t, p)
			pool := runtime.NewPool(p, runtime.WithPoolSize(2))
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
				defer cancel()
				if err := pool.Stop(ctx); err != nil {
					t.Errorf("stop: %v", err)
				}
			})
			if err := pool.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			events.WaitFor("ready 1 ")
			events.WaitFor("ready 2 ")
			addr := strings.Fields(events.WaitFor("listening 1 "))[2]

			// The load: bounded in requests, ended by the test.
			const clients, maxRequests = 8, 1_000_000
			kernelResets := sched == runtime.SchedReusePort && !migrateReq()
			var (
				sent, answered, failed atomic.Int64
				resets                 atomic.Int64
				closes                 atomic.Int64
				firstErr               atomic.Value
				wg                     sync.WaitGroup
			)
			stop := make(chan struct{})
			warm := make(chan struct{}, clients)
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c := &client{addr: addr, keepAlive: i%2 == 0}
					defer func() {
						c.drop()
						closes.Add(int64(c.closes))
					}()
					for n := 0; sent.Add(1) <= maxRequests; n++ {
						select {
						case <-stop:
							return
						default:
						}
						if _, err := c.get("/"); err != nil {
							if kernelResets && c.fresh && errors.Is(err, syscall.ECONNRESET) {
								resets.Add(1)
								continue
							}
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
							continue
						}
						answered.Add(1)
						if n == 0 {
							warm <- struct{}{}
						}
					}
				}()
			}
			for range clients {
				herdtest.Receive(t, warm, "a first answer for every client")
			}
			for range 2 {
				if err := pool.Reload(context.Background()); err != nil {
					t.Error(err)
				}
			}
			events.WaitFor("reload-finished 5,6")
			close(stop)
			wg.Wait()
			if n := failed.Load(); n != 0 {
				t.Errorf("%d of %d requests failed; first: %v", n, n+answered.Load(), firstErr.Load())
			}
			// Each keep-alive client started on a worker that was
			// replaced: its connection ended with Connection: close.
			if n := closes.Load(); n < clients/2 {
				t.Errorf("keep-alive connections ended by the drain: %d, want at least %d", n, clients/2)
			}
			c := &client{addr: addr}
			a, err := c.get("/")
			if err != nil || (a.body != "hello from worker 5\n" && a.body != "hello from worker 6\n") {
				t.Errorf("after the reloads: %q %v", a.body, err)
			}
			t.Logf("%s: %d requests answered during two reloads, %d keep-alive connections ended by the drain, %d new connections reset by the kernel", sched, answered.Load(), closes.Load(), resets.Load())
			for _, l := range events.All() {
				// A reload's replaced worker exits with code 0 after its
				// disconnect: cause EXIT_CAUSE_RELOADED.
				if strings.HasPrefix(l, "exit ") && !strings.Contains(l, "code=0 signal= after=true cause=EXIT_CAUSE_RELOADED") {
					t.Errorf("a worker did not exit cleanly: %s", l)
				}
			}
		})
	}
}

// migrateReq reports whether the kernel moves the connections of a closing
// SO_REUSEPORT socket to another one of its group (net.ipv4.tcp_migrate_req).
func migrateReq() bool {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}
