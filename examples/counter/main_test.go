//go:build unix

package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/herd-go/herd/runtime/herdtest"
)

// The test binary doubles as the example (role "counter", started by
// herdtest.Start) and as its workers, which inherit the role: main tells
// them apart by the runtime's sentinel.
func TestMain(m *testing.M) {
	herdtest.Main(m, herdtest.Roles{"counter": func() int { main(); return 0 }})
}

// onlinePID returns the worker's PID in the primary's line "online
// worker=ID pid=PID", and 0 for other lines.
func onlinePID(line string) int {
	var id, pid int
	if n, _ := fmt.Sscanf(line, "online worker=%d pid=%d", &id, &pid); n != 2 {
		return 0
	}
	return pid
}

// onlinePIDs returns the PIDs of the online lines read so far, in order.
func onlinePIDs(p *herdtest.Process) []int {
	var pids []int
	for _, l := range p.Lines() {
		if pid := onlinePID(l); pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// start runs the example with args in a process group of its own, as a
// shell runs a job (a signal to the group reaches the primary and every
// worker, as Ctrl-C, systemd and docker stop do); the test fails if a
// worker that an online line names outlives it.
func start(t *testing.T, args ...string) *herdtest.Process {
	t.Helper()
	return herdtest.Start(t, "counter", herdtest.WithArgs(args...),
		herdtest.WithProcessGroup(), herdtest.WithWorkerPIDs(onlinePID))
}

func get(t *testing.T, client *http.Client, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %q %v", url, resp.StatusCode, b, err)
	}
	return strings.TrimSpace(string(b))
}

func TestCounter(t *testing.T) {
	// SIGTERM goes to the primary alone, or to the whole process group
	// (workers included): either way the request in flight finishes.
	for _, tt := range []struct{ sched, target string }{
		{"rr", "primary"}, {"shared", "primary"}, {"reuseport", "primary"}, {"rr", "group"},
	} {
		sched := tt.sched
		t.Run(sched+"/"+tt.target, func(t *testing.T) {
			herdtest.CheckLeaks(t)
			e := start(t, "-addr", "127.0.0.1:0", "-workers", "2", "-sched", sched)
			line := e.WaitLine("listening addr=")
			addr := strings.TrimPrefix(line, "listening addr=")
			if strings.HasSuffix(addr, ":0") || !strings.HasPrefix(addr, "127.0.0.1:") {
				t.Fatalf("listening line %q: want the real port", line)
			}
			base := "http://" + addr
			keepAlive := &http.Transport{}
			defer keepAlive.CloseIdleConnections()
			clients := []*http.Client{
				{Transport: keepAlive, Timeout: herdtest.DefaultTimeout},
				{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: herdtest.DefaultTimeout},
			}
			const perClient = 20
			served := map[string]int{}
			for _, c := range clients {
				for range perClient {
					body := get(t, c, base+"/")
					if body != "hello from worker 1" && body != "hello from worker 2" {
						t.Fatalf("GET / = %q", body)
					}
					served[body]++
				}
			}
			if sched == "rr" && (served["hello from worker 1"] == 0 || served["hello from worker 2"] == 0) {
				t.Errorf("round robin served %v", served)
			}
			// Every request is counted, /stats included (before it reads
			// the totals). Hits of different workers reach the primary on
			// different links, so a count may lag by the other worker's
			// last hits: ask until it is complete.
			statsCalls := 0
			waitTotal := func(extra int) {
				t.Helper()
				var stats string
				counted := false
				defer func() { // WaitUntil failed: say what /stats said last
					if !counted {
						t.Logf("GET /stats = %q, want total=%d", stats, 2*perClient+statsCalls+extra)
					}
				}()
				herdtest.WaitUntil(t, "GET /stats counts every request made", func() bool {
					statsCalls++
					stats = get(t, clients[1], base+"/stats")
					var n int
					if _, err := fmt.Sscanf(stats, "total=%d per_worker=", &n); err != nil {
						t.Fatalf("GET /stats = %q", stats)
					}
					return n == 2*perClient+statsCalls+extra
				})
				counted = true
			}
			waitTotal(0)
			// A request in flight when the signal comes finishes.
			slow := make(chan error, 1)
			go func() {
				resp, err := clients[1].Get(base + "/?delay=300ms")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				slow <- err
			}()
			waitTotal(1) // the slow request has reached a worker
			if tt.target == "group" {
				e.SignalGroup(syscall.SIGTERM)
			} else {
				e.Signal(syscall.SIGTERM)
			}
			if err := herdtest.Receive(t, slow, "the request in flight"); err != nil {
				t.Errorf("request in flight during shutdown: %v", err)
			}
			total := e.WaitLine("total=")
			want := 2*perClient + statsCalls + 1
			var n, a, b int
			if _, err := fmt.Sscanf(total, "total=%d per_worker=1:%d,2:%d", &n, &a, &b); err != nil || n != want || a+b != want {
				t.Errorf("totals line %q, want total=%d per_worker=1:A,2:B with A+B=%d", total, want, want)
			}
			e.WaitExit(0)
		})
	}
}

// TestCounterSupervision: a worker killed with kill -9 is replaced (its
// replacement's online line follows) and requests keep being answered;
// SIGHUP reloads every worker while a client sends requests, none fails,
// and the primary prints the new IDs; SIGTERM then stops with the totals
// and status 0.
func TestCounterSupervision(t *testing.T) {
	herdtest.CheckLeaks(t)
	e := start(t, "-addr", "127.0.0.1:0", "-workers", "2", "-sched", "rr")
	addr := strings.TrimPrefix(e.WaitLine("listening addr="), "listening addr=")
	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{}, Timeout: herdtest.DefaultTimeout}
	defer client.CloseIdleConnections()
	get(t, client, base+"/")

	pids := onlinePIDs(e)
	if len(pids) != 2 {
		t.Fatalf("online lines %q", e.Lines())
	}
	syscall.Kill(pids[0], syscall.SIGKILL)
	e.WaitLine("online worker=3 pid=")
	for range 10 {
		if body := get(t, client, base+"/"); !strings.HasPrefix(body, "hello from worker ") {
			t.Fatalf("GET / = %q", body)
		}
	}

	// A reload under load: two clients, one keep-alive, one a new
	// connection per request, until the reload is done.
	stop := make(chan struct{})
	errs := make(chan error, 2)
	var answered [2]int
	for i, tr := range []*http.Transport{{}, {DisableKeepAlives: true}} {
		go func() {
			c := &http.Client{Transport: tr, Timeout: herdtest.DefaultTimeout}
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-stop:
					errs <- nil
					return
				default:
				}
				resp, err := c.Get(base + "/")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					errs <- err
					return
				}
				answered[i]++
			}
		}()
	}
	e.Signal(syscall.SIGHUP)
	if line := e.WaitLine("reloaded workers="); line != "reloaded workers=4,5" {
		t.Errorf("%q, want reloaded workers=4,5", line)
	}
	close(stop)
	for range 2 {
		if err := herdtest.Receive(t, errs, "the end of a client"); err != nil {
			t.Errorf("request during the reload: %v", err)
		}
	}
	t.Logf("answered during the reload: keep-alive %d, close %d", answered[0], answered[1])
	if body := get(t, client, base+"/"); body != "hello from worker 4" && body != "hello from worker 5" {
		t.Errorf("after the reload GET / = %q", body)
	}

	e.Signal(syscall.SIGTERM)
	total := e.WaitLine("total=")
	if !strings.Contains(total, " per_worker=1:") || !strings.Contains(total, ",5:") {
		t.Errorf("totals %q: want every worker, 1 to 5", total)
	}
	e.WaitExit(0)
	for _, l := range e.Lines() {
		if strings.HasPrefix(l, "online worker=6") {
			t.Errorf("a worker too many: %q", e.Lines())
		}
	}
}
