package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdhttp"
)

// The reload scenarios: what a rolling reload costs the clients. A cluster
// of reloadWorkers workers serves the hello world under load (wrk when it
// is used, else the built-in client; keep-alive connections, or a new
// connection per request with "Connection: close"); after a quarter of
// -duration the harness reloads every worker, twice in a row, then lets
// the load run another quarter of -duration and stops it. The figure is
// the count of failed requests in the run: socket errors (connect, read,
// write, timeout) and non-2xx responses. The load runs as long as the
// reloads take, whatever -duration says.
//
// herd: a runtime.Pool of hello-world workers serving with herdhttp.Serve
// (the examples/counter way), reloaded with pool.Reload (what SIGHUP runs
// under pool.Run). pm2: PM2's cluster mode with 2 instances of a tiny
// Node http server, reloaded with `pm2 reload` (see pm2.go).

// reloadWorkers is the size of the reload scenarios' clusters.
const reloadWorkers = 2

// reloadRequestTimeout is how long a request of the built-in client may
// take before it counts as failed (wrk's --timeout is 5 s too).
const reloadRequestTimeout = 5 * time.Second

// lineReloaded is a reload child's line when a reload has ended:
// {"ok": 1} when it succeeded.
const lineReloaded = "reloaded"

// reloadScenario is reload_failed_requests_keepalive or _close.
func reloadScenario(closeConns bool) *scenario {
	mode := "keepalive"
	title := "HTTP, 2 workers, keep-alive load, every worker reloaded twice: failed requests"
	if closeConns {
		mode = "close"
		title = "HTTP, 2 workers, a new connection per request, every worker reloaded twice: failed requests"
	}
	name := "reload_failed_requests_" + mode
	sys := func(sysName string, start func(*config) (*child, error), needs func(*config) string) *system {
		requests := "reload_requests_" + mode + "_" + sysName
		return &system{
			name: sysName, key: name + "_" + sysName, needs: needs, run: reloadRun(start, closeConns, requests),
			extras: []extra{{key: requests, label: "requests in the run", unit: "requests", tableOnly: true}},
		}
	}
	return &scenario{
		name:  name,
		title: title,
		unit:  "failed",
		lower: true,
		systems: []*system{
			sys("rr", reloadHerd("rr"), nil),
			sys("shared", reloadHerd("shared"), nil),
			sys("reuseport", reloadHerd("reuseport"), needsReuseport),
			sys("pm2", startPM2(pm2ModeReload), needsPM2),
		},
	}
}

// reloadHerd starts a herd reload primary under a scheduling policy.
func reloadHerd(policy string) func(*config) (*child, error) {
	return func(cfg *config) (*child, error) {
		return startSelf(cfg, roleReloadPrimary, "HERD_SCHED_POLICY="+policy, fmt.Sprintf("%s=%d", envWorkers, reloadWorkers))
	}
}

// askReload asks a child for a reload on its stdin.
func askReload(c *child) error {
	_, err := c.stdin.Write([]byte("reload\n"))
	return err
}

// reloadRun measures one system: two reloads under load.
func reloadRun(start func(*config) (*child, error), closeConns bool, requestsKey string) func(context.Context, *config) (map[string]float64, error) {
	return func(ctx context.Context, cfg *config) (map[string]float64, error) {
		c, err := start(cfg)
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
		load, err := startOpenLoad(ctx, cfg, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), closeConns)
		if err != nil {
			return nil, c.failure(fmt.Errorf("load: %w", err))
		}
		reloads := func() error {
			if err := sleepCtx(ctx, cfg.duration/4); err != nil {
				return err
			}
			for i := range 2 {
				if err := askReload(c); err != nil {
					return fmt.Errorf("reload %d: %w", i+1, err)
				}
				res, err := c.await(ctx, lineReloaded, childTimeout)
				if err != nil {
					return err
				}
				if res["ok"] != 1 {
					return c.failure(fmt.Errorf("reload %d failed", i+1))
				}
			}
			return sleepCtx(ctx, cfg.duration/4)
		}
		rerr := reloads()
		r, lerr := load.stop()
		if rerr != nil {
			return nil, rerr
		}
		if lerr != nil {
			return nil, c.failure(fmt.Errorf("load: %w", lerr))
		}
		c.stop()
		if _, err := c.await(ctx, lineResult, childTimeout); err != nil {
			return nil, err
		}
		if err := c.finish(ctx); err != nil {
			return nil, err
		}
		if r.errors > 0 && r.first != nil {
			cfg.log.Info("reload run: failed requests", "child", c.name, "failed", r.errors, "first", r.first)
		}
		return map[string]float64{"value": float64(r.errors), requestsKey: float64(r.requests)}, nil
	}
}

// sleepCtx sleeps d, or less when ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// openLoad is a load that runs until stopped: wrk (stopped with SIGINT,
// on which it prints its summary) or the built-in client.
type openLoad struct {
	stop func() (loadResult, error)
}

// openLoadLimit bounds an open load that nobody stops.
const openLoadLimit = 10 * time.Minute

// startOpenLoad starts loading addr with cfg.connections connections.
func startOpenLoad(ctx context.Context, cfg *config, addr string, closeConns bool) (*openLoad, error) {
	if err := checkLoopback(addr); err != nil {
		return nil, err
	}
	if cfg.wrkPath != "" {
		return startWrk(ctx, cfg, addr, closeConns)
	}
	return startGoOpenLoad(addr, cfg.connections, closeConns), nil
}

// startWrk starts wrk for up to openLoadLimit; stop interrupts it.
func startWrk(ctx context.Context, cfg *config, addr string, closeConns bool) (*openLoad, error) {
	args := []string{
		"-t", strconv.Itoa(wrkThreads(cfg)),
		"-c", strconv.Itoa(cfg.connections),
		"-d", strconv.Itoa(int(openLoadLimit / time.Second)),
		"--timeout", strconv.Itoa(int(reloadRequestTimeout / time.Second)),
	}
	if closeConns {
		args = append(args, "-H", "Connection: close")
	}
	args = append(args, "http://"+addr+"/")
	cmd := exec.Command(cfg.wrkPath, args...)
	out := &tailBuffer{max: 64 << 10}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("wrk: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var once sync.Once
	var res loadResult
	var rerr error
	return &openLoad{stop: func() (loadResult, error) {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Interrupt) // wrk prints its summary
			t := time.NewTimer(childTimeout)
			defer t.Stop()
			select {
			case err := <-exited:
				if err != nil {
					rerr = fmt.Errorf("wrk %v: %w: %s", args, err, out.String())
					return
				}
			case <-t.C:
				_ = cmd.Process.Kill()
				<-exited
				rerr = fmt.Errorf("wrk did not stop on SIGINT: %s", out.String())
				return
			case <-ctx.Done():
				_ = cmd.Process.Kill()
				<-exited
				rerr = ctx.Err()
				return
			}
			res, rerr = parseWrk(out.String())
			if m := wrkSocket.FindString(out.String()); m != "" {
				cfg.log.Info("wrk", "errors", m)
			}
			if m := wrkNon2xx.FindString(out.String()); m != "" {
				cfg.log.Info("wrk", "errors", m)
			}
		})
		return res, rerr
	}}, nil
}

// startGoOpenLoad is the built-in client (see goLoad) until stopped. A
// request in flight when it stops still counts, and fails when it takes
// longer than reloadRequestTimeout.
func startGoOpenLoad(addr string, conns int, closeConns bool) *openLoad {
	req := "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: herd-bench\r\n\r\n"
	if closeConns {
		req = "GET / HTTP/1.1\r\nHost: " + addr + "\r\nUser-Agent: herd-bench\r\nConnection: close\r\n\r\n"
	}
	var (
		requests, failures atomic.Int64
		firstErr           error
		errOnce            sync.Once
		wg                 sync.WaitGroup
		stopped            atomic.Bool
	)
	start := time.Now()
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &loadConn{addr: addr, req: []byte(req), end: start.Add(openLoadLimit), timeout: reloadRequestTimeout}
			defer c.close()
			for !stopped.Load() && time.Since(start) < openLoadLimit {
				if err := c.roundTrip(closeConns); err != nil {
					failures.Add(1)
					errOnce.Do(func() { firstErr = err })
					time.Sleep(time.Millisecond) // no busy loop on a refusing server
					continue
				}
				requests.Add(1)
			}
		}()
	}
	var once sync.Once
	var res loadResult
	return &openLoad{stop: func() (loadResult, error) {
		once.Do(func() {
			stopped.Store(true)
			wg.Wait()
			res = loadResult{requests: requests.Load(), errors: failures.Load(), elapsed: time.Since(start), first: firstErr}
		})
		if res.requests == 0 {
			return res, fmt.Errorf("no request completed; first error: %v", res.first)
		}
		return res, nil
	}}
}

// The herd side: a pool primary whose workers serve the hello world with
// herdhttp.Serve.

// reloadPrimary is the herd reload system: a pool of HERD_BENCH_WORKERS
// workers under pool.Run. It prints "ready" once they are all ready; each
// "reload" line on its stdin runs pool.Reload (what SIGHUP does under Run;
// the harness asks on stdin because it needs to know when each reload
// returns) and prints "reloaded" when it returns; when its
// stdin ends it stops the pool gracefully and prints "result".
func reloadPrimary() error {
	n, err := roleInt(envWorkers)
	if err != nil {
		return err
	}
	p := runtime.NewPrimary(runtime.WithEnv(envWorkerRole + "=" + workerReload))
	ev := newPoolEvents()
	if err := herdv1herd.RegisterEventServiceHandler(p, ev); err != nil {
		return err
	}
	pool := runtime.NewPool(p, runtime.WithPoolSize(n))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- pool.Run(ctx) }()
	port, err := ev.waitReady(n, done)
	if err != nil {
		return err
	}
	emit(lineReady, map[string]float64{"port": float64(port)})
	go func() {
		defer cancel() // stdin ended: stop
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) != "reload" {
				continue
			}
			ok := 1.0
			if err := pool.Reload(ctx); err != nil {
				fmt.Fprintln(os.Stderr, "reload:", err)
				ok = 0
			}
			emit(lineReloaded, map[string]float64{"ok": ok})
		}
	}()
	if err := <-done; err != nil {
		return fmt.Errorf("pool: %w", err)
	}
	emit(lineResult, map[string]float64{"clean_stop": 1})
	return nil
}

// poolEvents follows a pool's events for the reload and restart
// primaries.
type poolEvents struct {
	herdv1herd.UnimplementedEventServiceHandler
	ready    chan *herdv1.ReadyEvent
	restarts chan *herdv1.RestartScheduledEvent
	port     atomic.Int64
}

func newPoolEvents() *poolEvents {
	return &poolEvents{ready: make(chan *herdv1.ReadyEvent, 64), restarts: make(chan *herdv1.RestartScheduledEvent, 64)}
}

func (e *poolEvents) Listening(ctx context.Context, ev *herdv1.ListeningEvent) error {
	e.port.CompareAndSwap(0, int64(ev.GetAddress().GetPort()))
	return nil
}

func (e *poolEvents) Ready(ctx context.Context, ev *herdv1.ReadyEvent) error {
	select {
	case e.ready <- ev:
	default:
	}
	return nil
}

func (e *poolEvents) RestartScheduled(ctx context.Context, ev *herdv1.RestartScheduledEvent) error {
	select {
	case e.restarts <- ev:
	default:
	}
	return nil
}

// waitReady waits for n Ready events and returns the listening port; the
// pool ending first is an error.
func (e *poolEvents) waitReady(n int, done <-chan error) (int, error) {
	t := time.NewTimer(childTimeout)
	defer t.Stop()
	for got := 0; got < n; {
		select {
		case <-e.ready:
			got++
		case err := <-done:
			return 0, fmt.Errorf("the pool ended before its workers were ready: %v", err)
		case <-t.C:
			return 0, fmt.Errorf("%d of %d workers ready within %v", got, n, childTimeout)
		}
	}
	port := int(e.port.Load())
	if port <= 0 {
		return 0, errors.New("no listening event")
	}
	return port, nil
}

// reloadWorker is a herd worker of the reload and restart systems: the
// hello world on a shared loopback port, served with herdhttp.Serve.
func reloadWorker() error {
	ctx := context.Background()
	self, err := runtime.NewSelf()
	if err != nil {
		return err
	}
	// Before the drain: the runtime exits the process after it.
	self.OnDisconnect(func(context.Context) error { stopProfiles(); return nil })
	if err := self.Start(ctx); err != nil {
		return err
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: helloHandler{}, ReadHeaderTimeout: 10 * time.Second}
	if os.Getenv(envReloadDrain) == "shutdown" {
		// The comparison: what a worker had before herdhttp, a drain
		// hook that calls Shutdown.
		self.OnDisconnect(srv.Shutdown)
		if err := srv.Serve(ln); !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	} else if err := herdhttp.Serve(ctx, self, srv, ln); err != nil {
		return err
	}
	<-self.Done()
	return nil
}

// envReloadDrain=shutdown makes the reload workers drain with
// http.Server.Shutdown alone instead of herdhttp.Serve: set it in the
// harness's environment to measure what herdhttp saves.
const envReloadDrain = "HERD_BENCH_RELOAD_DRAIN"
