//go:build unix

package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// The test binary doubles as the example's primary (HERD_COUNTER_MAIN=1)
// and as its workers (the runtime's sentinel).
func TestMain(m *testing.M) {
	if runtime.IsWorker() || os.Getenv("HERD_COUNTER_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

const waitLimit = 60 * time.Second

type example struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan string
	seen  []string
	pids  []int
}

func start(t *testing.T, args ...string) *example {
	t.Helper()
	base := herdtest.Take()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "HERD_COUNTER_MAIN=1")
	return run(t, base, cmd)
}

// run starts cmd, which runs the example, and reaps it and its workers at
// the end of the test (base is the leak check's start).
func run(t *testing.T, base herdtest.Snapshot, cmd *exec.Cmd) *example {
	t.Helper()
	// A process group of its own, as a shell gives a job: a signal to the
	// group reaches the primary and every worker, as Ctrl-C, systemd and
	// docker stop do.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e := &example{t: t, cmd: cmd, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			e.lines <- sc.Text()
		}
		close(e.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		for _, pid := range e.pids {
			waitGone(t, pid)
		}
		herdtest.Check(t, base, 10*time.Second)
	})
	return e
}

func (e *example) expect(prefix string) string {
	e.t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-e.lines:
			if !ok {
				e.t.Fatalf("output ended without %q; saw %q", prefix, e.seen)
			}
			e.seen = append(e.seen, l)
			if strings.HasPrefix(l, "online ") {
				var id, pid int
				fmt.Sscanf(l, "online worker=%d pid=%d", &id, &pid)
				e.pids = append(e.pids, pid)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timer.C:
			e.t.Fatalf("no line %q; saw %q", prefix, e.seen)
		}
	}
}

// waitGone waits for a worker (not our child) to end.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	if goruntime.GOOS != "linux" {
		return
	}
	w, err := herdtest.WatchPID(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Wait(waitLimit) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Errorf("worker %d still alive", pid)
	}
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
			e := start(t, "-addr", "127.0.0.1:0", "-workers", "2", "-sched", sched)
			line := e.expect("listening addr=")
			addr := strings.TrimPrefix(line, "listening addr=")
			if strings.HasSuffix(addr, ":0") || !strings.HasPrefix(addr, "127.0.0.1:") {
				t.Fatalf("listening line %q: want the real port", line)
			}
			base := "http://" + addr
			keepAlive := &http.Transport{}
			defer keepAlive.CloseIdleConnections()
			clients := []*http.Client{
				{Transport: keepAlive, Timeout: waitLimit},
				{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: waitLimit},
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
			waitTotal := func(extra int) string {
				t.Helper()
				for deadline := time.Now().Add(waitLimit); ; {
					statsCalls++
					stats := get(t, clients[1], base+"/stats")
					var n int
					if _, err := fmt.Sscanf(stats, "total=%d per_worker=", &n); err != nil {
						t.Fatalf("GET /stats = %q", stats)
					}
					if n == 2*perClient+statsCalls+extra {
						return stats
					}
					if time.Now().After(deadline) {
						t.Fatalf("GET /stats = %q, want total=%d", stats, 2*perClient+statsCalls+extra)
					}
				}
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
				syscall.Kill(-e.cmd.Process.Pid, syscall.SIGTERM)
			} else {
				e.cmd.Process.Signal(syscall.SIGTERM)
			}
			if err := <-slow; err != nil {
				t.Errorf("request in flight during shutdown: %v", err)
			}
			total := e.expect("total=")
			want := 2*perClient + statsCalls + 1
			var n, a, b int
			if _, err := fmt.Sscanf(total, "total=%d per_worker=1:%d,2:%d", &n, &a, &b); err != nil || n != want || a+b != want {
				t.Errorf("totals line %q, want total=%d per_worker=1:A,2:B with A+B=%d", total, want, want)
			}
			if err := e.cmd.Wait(); err != nil {
				t.Errorf("exit: %v", err)
			}
		})
	}
}

// TestCounterSupervision: a worker killed with kill -9 is replaced (its
// replacement's online line follows) and requests keep being answered;
// SIGHUP reloads every worker while a client sends requests, none fails,
// and the primary prints the new IDs; SIGTERM then stops with the totals
// and status 0.
func TestCounterSupervision(t *testing.T) {
	e := start(t, "-addr", "127.0.0.1:0", "-workers", "2", "-sched", "rr")
	addr := strings.TrimPrefix(e.expect("listening addr="), "listening addr=")
	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{}, Timeout: waitLimit}
	defer client.CloseIdleConnections()
	get(t, client, base+"/")

	if len(e.pids) != 2 {
		t.Fatalf("online lines %q", e.seen)
	}
	syscall.Kill(e.pids[0], syscall.SIGKILL)
	e.expect("online worker=3 pid=")
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
			c := &http.Client{Transport: tr, Timeout: waitLimit}
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
	e.cmd.Process.Signal(syscall.SIGHUP)
	if line := e.expect("reloaded workers="); line != "reloaded workers=4,5" {
		t.Errorf("%q, want reloaded workers=4,5", line)
	}
	close(stop)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("request during the reload: %v", err)
		}
	}
	t.Logf("answered during the reload: keep-alive %d, close %d", answered[0], answered[1])
	if body := get(t, client, base+"/"); body != "hello from worker 4" && body != "hello from worker 5" {
		t.Errorf("after the reload GET / = %q", body)
	}

	e.cmd.Process.Signal(syscall.SIGTERM)
	total := e.expect("total=")
	if !strings.Contains(total, " per_worker=1:") || !strings.Contains(total, ",5:") {
		t.Errorf("totals %q: want every worker, 1 to 5", total)
	}
	if err := e.cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
	for _, l := range e.seen {
		if strings.HasPrefix(l, "online worker=6") {
			t.Errorf("a worker too many: %q", e.seen)
		}
	}
}
