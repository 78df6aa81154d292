package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// The kill scenario: what a worker's death costs the clients. An HTTP
// cluster of killWorkers workers serves the hello-world handler under a
// load with a new connection per request; halfway through the run the
// harness SIGKILLs one worker (the "victim", whose PID the server reports
// in its ready line) and counts the requests that failed in the run:
// socket errors (connect, read, write, timeout) and non-2xx responses.
// Nothing replaces the victim: the figure is the kill's cost alone. One
// run is one kill; the table's median over the rounds (3 by default) is
// the median of that many kills. For the herd systems the table also
// shows how many connections the victim's server held (accepted, not yet
// closed) when it died, as the workers count them in a shared file: those
// are lost under any policy, and the rest of the failures is what the
// policy lost. It splits them: those whose request the server had not read
// yet (its goroutine had not run, or the request had not arrived) and
// those it had read and not answered. The herd servers listen as an HTTP
// server should, with the runtime's default accept-ahead bound and
// runtime.WithDeferAccept (HERD_BENCH_ACCEPT_AHEAD and
// HERD_BENCH_DEFER_ACCEPT in the harness's environment change both, for
// comparing).
//
// The load is always the built-in client, with -connections connections: it counts a request that hangs (the server never answers)
// as failed even when it hangs past the end of the run, and wrk does not.

// killWorkers is the size of the kill scenario's cluster.
const killWorkers = 2

// killRequestTimeout is how long a request of the kill scenario may take
// before it counts as failed (a hello world answers in well under a
// millisecond; this leaves room for a loaded machine).
const killRequestTimeout = 2 * time.Second

// envKill tells a server child it runs the kill scenario: it reports a
// victim's PID and tolerates that worker's death. envCounts names the file
// where herd workers count their server's connections (counts_unix.go).
const (
	envKill   = "HERD_BENCH_KILL"
	envCounts = "HERD_BENCH_COUNTS"
)

// killScenario is the kill_failed_requests scenario.
func killScenario() *scenario {
	sys := func(name string, srv server, needs func(*config) string) *system {
		return &system{
			name: name, key: "kill_failed_requests_" + name, needs: needs, run: killRun(name, srv),
			extras: []extra{
				{key: "kill_requests_" + name, label: "requests in the run", unit: "requests", tableOnly: true},
				{key: "kill_inflight_" + name, label: "connections its server held (accepted, not closed) at its death", unit: "conns", tableOnly: true},
				{key: "kill_unread_" + name, label: "of those, no request read yet", unit: "conns", tableOnly: true},
				{key: "kill_unanswered_" + name, label: "of those, request read, not answered", unit: "conns", tableOnly: true},
			},
		}
	}
	return &scenario{
		name:  "kill_failed_requests",
		title: "HTTP, 2 workers, a new connection per request, one worker SIGKILLed mid-run: failed requests per kill",
		unit:  "failed",
		lower: true,
		systems: []*system{
			sys("rr", serverHerd("rr"), nil),
			sys("shared", serverHerd("shared"), nil),
			sys("reuseport", serverHerd("reuseport"), needsReuseport),
			sys("node_rr", serverNode("rr"), needsNode),
			sys("node_none", serverNode("none"), needsNode),
		},
	}
}

// killRun runs one kill of system name: the server srv with killWorkers workers, loaded
// for the measuring time with a new connection per request, its victim
// killed halfway. The figure is the count of failed requests.
func killRun(name string, srv server) func(context.Context, *config) (map[string]float64, error) {
	return func(ctx context.Context, cfg *config) (map[string]float64, error) {
		kcfg := *cfg
		kcfg.workers = killWorkers
		counts, err := os.CreateTemp(cfg.tmp, "kill-counts-")
		if err != nil {
			return nil, err
		}
		defer os.Remove(counts.Name())
		err = counts.Truncate(slotSize * killWorkers)
		counts.Close()
		if err != nil {
			return nil, err
		}
		kcfg.childEnv = append(slices.Clone(cfg.childEnv), envKill+"=1", envCounts+"="+counts.Name())
		c, err := srv(&kcfg)
		if err != nil {
			return nil, err
		}
		defer c.kill()
		ready, err := c.await(ctx, lineReady, childTimeout)
		if err != nil {
			return nil, err
		}
		port, victim := int(ready["port"]), int(ready["victim"])
		if port <= 0 || port > 65535 {
			return nil, c.failure(fmt.Errorf("bad port %v", ready["port"]))
		}
		if victim <= 0 {
			return nil, c.failure(fmt.Errorf("bad victim PID %v", ready["victim"]))
		}
		lctx, cancel := context.WithCancel(ctx)
		killed := make(chan error, 1)
		go func() {
			t := time.NewTimer(cfg.duration / 2)
			defer t.Stop()
			select {
			case <-t.C:
				killed <- killMember(c, victim)
			case <-lctx.Done():
				killed <- fmt.Errorf("the load ended before the kill: %w", lctx.Err())
			}
		}()
		load, err := goLoad(lctx, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cfg.connections, cfg.duration, true, killRequestTimeout)
		cancel()
		if kerr := <-killed; kerr != nil && err == nil {
			err = kerr
		}
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
		if res["victim_killed"] != 1 {
			return nil, fmt.Errorf("%s: the server did not see its victim (PID %d) die of SIGKILL", c.name, victim)
		}
		figs := map[string]float64{"value": float64(load.errors), "kill_requests_" + name: float64(load.requests)}
		if id := ready["victim_id"]; id > 0 {
			// A herd victim counted its server's connections: those it
			// accepted and had not closed when it died were lost with it.
			n, err := readSlot(counts.Name(), uint64(id))
			if err != nil {
				return nil, err
			}
			accepted, read, answered, closed := n[0], n[1], n[2], n[3]
			figs["kill_inflight_"+name] = float64(accepted - closed)
			figs["kill_unread_"+name] = float64(accepted - read)
			figs["kill_unanswered_"+name] = float64(read - answered)
		}
		return figs, nil
	}
}

// slotSize is the size of a worker's slot in the counts file: four
// counters (connCounts).
const slotSize = 32

// connCounts are a kill-scenario worker's counts of its server's
// connections: accepted by the server, with a request read (the first Read
// returned data), answered (the first Write returned), closed.
type connCounts struct {
	accepted, read, answered, closed *atomic.Int64
}

// killListener counts, for the kill scenario, what its server does with
// the connections it accepts.
type killListener struct {
	net.Listener
	n *connCounts
}

func (l killListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.n.accepted.Add(1)
	return &countingConn{Conn: c, n: l.n}, nil
}

// countingConn counts its first Read that returns data, its first Write
// (after it: the response is in the kernel's hands) and its first Close
// (before closing).
type countingConn struct {
	net.Conn
	n                   *connCounts
	read, wrote, closed atomic.Bool
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.read.Load() && c.read.CompareAndSwap(false, true) {
		c.n.read.Add(1)
	}
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if !c.wrote.Load() && c.wrote.CompareAndSwap(false, true) {
		c.n.answered.Add(1)
	}
	return n, err
}

func (c *countingConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.n.closed.Add(1)
	}
	return c.Conn.Close()
}
