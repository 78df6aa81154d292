//go:build unix

package runtime_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// cluster is a primary with a recorder, reaped and leak-checked at the end
// of the test.
type cluster struct {
	t   *testing.T
	p   *runtime.Primary
	rec *recorder
}

func newCluster(t *testing.T, opts ...runtime.PrimaryOption) *cluster {
	t.Helper()
	c := &cluster{t: t, p: runtime.NewPrimary(opts...), rec: newRecorder(t)}
	base := herdtest.Take()
	c.rec.register(c.p)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		for _, w := range c.p.Workers() {
			w.Kill(syscall.SIGKILL)
		}
		if err := c.p.Wait(ctx); err != nil {
			t.Errorf("workers not reaped: %v", err)
		}
		herdtest.Check(t, base, 10*time.Second)
	})
	return c
}

func (c *cluster) fork(mode string, opts ...runtime.ForkOption) *runtime.Worker {
	c.t.Helper()
	w, err := c.p.Fork(context.Background(), append([]runtime.ForkOption{herdtest.ForkRole(mode)}, opts...)...)
	if err != nil {
		c.t.Fatalf("fork %s: %v", mode, err)
	}
	return w
}

func (c *cluster) waitExit(w *runtime.Worker) *herdv1.ExitEvent {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	ev, err := w.Wait(ctx)
	if err != nil {
		c.t.Fatalf("worker %d did not exit: %v", w.ID(), err)
	}
	return ev
}

func TestIDsStatesAndEventOrder(t *testing.T) {
	c := newCluster(t)
	w1 := c.fork("idle")
	w2 := c.fork("idle")
	if w1.ID() != 1 || w2.ID() != 2 {
		t.Fatalf("IDs %d, %d; want 1, 2", w1.ID(), w2.ID())
	}
	c.rec.waitFor("online 1")
	c.rec.waitFor("online 2")
	if s := w1.State(); s != runtime.StateOnline {
		t.Errorf("state after online = %v", s)
	}
	if !w1.IsConnected() || w1.IsDead() {
		t.Errorf("online worker: connected=%t dead=%t", w1.IsConnected(), w1.IsDead())
	}
	if got := c.p.Workers(); len(got) != 2 || got[0] != w1 || got[1] != w2 {
		t.Errorf("Workers() = %v", got)
	}
	if err := w1.Disconnect(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev := c.waitExit(w1)
	if w1.State() != runtime.StateDead || !w1.IsDead() || w1.IsConnected() {
		t.Errorf("after exit: state=%v dead=%t connected=%t", w1.State(), w1.IsDead(), w1.IsConnected())
	}
	if ev.GetCode() != 0 || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_CLEAN || !ev.GetExitedAfterDisconnect() {
		t.Errorf("exit event %v", ev)
	}
	want := []string{"fork", "online", "disconnect", "exit code=0 signal= after=true cause=EXIT_CAUSE_CLEAN"}
	if got := c.rec.of(1); !slices.Equal(got, want) {
		t.Errorf("events of worker 1 = %q, want %q", got, want)
	}
	if _, ok := c.p.Worker(1); ok {
		t.Error("exited worker still in the table")
	}
	// IDs are never reused.
	w3 := c.fork("idle")
	if w3.ID() != 3 {
		t.Errorf("third worker ID %d", w3.ID())
	}
	c.rec.waitFor("online 3")
}

func TestExitCodeSignalAndExitedAfterDisconnect(t *testing.T) {
	tests := []struct {
		name   string
		mode   string
		action func(*runtime.Worker) error
		code   int32
		signal string
		after  bool
		cause  herdv1.ExitCause
	}{
		{name: "primary disconnect", mode: "idle", action: func(w *runtime.Worker) error { return w.Disconnect(context.Background()) },
			code: 0, after: true, cause: herdv1.ExitCause_EXIT_CAUSE_CLEAN},
		{name: "worker disconnect", mode: "selfdisconnect",
			code: 0, after: true, cause: herdv1.ExitCause_EXIT_CAUSE_CLEAN},
		{name: "worker kill", mode: "selfkill",
			code: 0, after: true, cause: herdv1.ExitCause_EXIT_CAUSE_CLEAN},
		{name: "crash", mode: "panic",
			code: 2, after: false, cause: herdv1.ExitCause_EXIT_CAUSE_ERROR},
		{name: "os.Exit", mode: "exit3",
			code: 3, after: false, cause: herdv1.ExitCause_EXIT_CAUSE_ERROR},
		{name: "signal", mode: "idle", action: func(w *runtime.Worker) error { return syscall.Kill(w.PID(), syscall.SIGKILL) },
			code: -1, signal: "SIGKILL", after: false, cause: herdv1.ExitCause_EXIT_CAUSE_SIGNAL},
		{name: "primary kill", mode: "idle", action: func(w *runtime.Worker) error { return w.Kill(0) },
			code: -1, signal: "SIGTERM", after: false, cause: herdv1.ExitCause_EXIT_CAUSE_KILLED},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCluster(t, runtime.WithOutput(io.Discard, io.Discard))
			w := c.fork(tt.mode)
			c.rec.waitFor(fmt.Sprintf("online %d", w.ID()))
			if tt.action != nil {
				if err := tt.action(w); err != nil {
					t.Fatal(err)
				}
			}
			ev := c.waitExit(w)
			if ev.GetCode() != tt.code || ev.GetSignal() != tt.signal || ev.GetExitedAfterDisconnect() != tt.after || ev.GetCause() != tt.cause {
				t.Errorf("exit = code %d signal %q after %t cause %v; want %d %q %t %v",
					ev.GetCode(), ev.GetSignal(), ev.GetExitedAfterDisconnect(), ev.GetCause(), tt.code, tt.signal, tt.after, tt.cause)
			}
			if w.ExitedAfterDisconnect() != tt.after {
				t.Errorf("ExitedAfterDisconnect() = %t", w.ExitedAfterDisconnect())
			}
			events := c.rec.of(w.ID())
			if len(events) < 3 || events[0] != "fork" || events[1] != "online" || !strings.HasPrefix(events[len(events)-1], "exit") {
				t.Errorf("events %q: want fork, online, ..., exit", events)
			}
		})
	}
}

func TestDisconnectAll(t *testing.T) {
	c := newCluster(t)
	// With no workers it returns at once.
	if err := c.p.Disconnect(context.Background()); err != nil {
		t.Fatalf("Disconnect with no workers: %v", err)
	}
	var ws []*runtime.Worker
	for range 3 {
		ws = append(ws, c.fork("hooks"))
	}
	for _, w := range ws {
		c.rec.waitFor(fmt.Sprintf("report %d ready", w.ID()))
	}
	// Start one disconnect, then disconnect all while it is under way.
	go ws[0].Disconnect(context.Background())
	if err := c.p.Disconnect(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		ev := c.waitExit(w)
		if !ev.GetExitedAfterDisconnect() || ev.GetCode() != 0 {
			t.Errorf("worker %d exit %v", w.ID(), ev)
		}
		// The drain hook ran, and its report came before the exit.
		got := c.rec.of(w.ID())
		want := []string{"fork", "online", "report ready", "report draining", "disconnect"}
		if len(got) != 6 || !slices.Equal(got[:5], want) || !strings.HasPrefix(got[5], "exit") {
			t.Errorf("worker %d events %q", w.ID(), got)
		}
	}
	if n := len(c.p.Workers()); n != 0 {
		t.Errorf("%d workers left", n)
	}
}

func TestDisconnectFromBothSides(t *testing.T) {
	c := newCluster(t)
	for range 3 {
		w := c.fork("hooks")
		c.rec.waitFor(fmt.Sprintf("report %d ready", w.ID()))
		// The worker starts its own disconnect while the primary starts one.
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			testv1herd.NewTestServiceClient(w).SendDisconnect(context.Background(), &testv1.DisconnectRequest{})
		}()
		go func() {
			defer wg.Done()
			if err := w.Disconnect(context.Background()); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		ev := c.waitExit(w)
		if !ev.GetExitedAfterDisconnect() || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_CLEAN {
			t.Errorf("exit %v", ev)
		}
		// The drain hooks ran exactly once.
		got := c.rec.of(w.ID())
		drains := 0
		for _, e := range got {
			if e == "report draining" {
				drains++
			}
		}
		if drains != 1 {
			t.Errorf("drain hooks ran %d times: %q", drains, got)
		}
	}
}

func TestDisconnectDeadlineKills(t *testing.T) {
	c := newCluster(t)
	w := c.fork("nostart")
	c.rec.waitFor("fork 1")
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := w.Disconnect(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Disconnect = %v, want deadline exceeded", err)
	}
	ev := c.waitExit(w)
	if ev.GetSignal() != "SIGKILL" || ev.GetCause() != herdv1.ExitCause_EXIT_CAUSE_KILLED || !ev.GetExitedAfterDisconnect() {
		t.Errorf("exit %v", ev)
	}
}

func TestEnvPerFork(t *testing.T) {
	c := newCluster(t)
	w1 := c.fork("env", runtime.WithForkEnv("HERD_TEST_VALUE=one", runtime.EnvWorkerID+"=99"))
	w2 := c.fork("env")
	got1 := c.rec.waitFor(fmt.Sprintf("report %d ", w1.ID()))
	got2 := c.rec.waitFor(fmt.Sprintf("report %d ", w2.ID()))
	if want := `report 1 HERD_TEST_VALUE="one" sentinel=""`; got1 != want {
		t.Errorf("worker 1: %s, want %s", got1, want)
	}
	if want := `report 2 HERD_TEST_VALUE="" sentinel=""`; got2 != want {
		t.Errorf("worker 2: %s, want %s", got2, want)
	}
}

func TestSettingsApplyToLaterForks(t *testing.T) {
	dir := t.TempDir()
	c := newCluster(t)
	w1 := c.fork("cwd")
	c.p.Setup(runtime.WithDir(dir), runtime.WithEnv("HERD_TEST_VALUE=setup"))
	w2 := c.fork("cwd")
	wd, _ := os.Getwd()
	if got := c.rec.waitFor(fmt.Sprintf("report %d ", w1.ID())); got != "report 1 "+wd {
		t.Errorf("worker 1 cwd: %s", got)
	}
	real, _ := filepath.EvalSymlinks(dir)
	if got := c.rec.waitFor(fmt.Sprintf("report %d ", w2.ID())); got != "report 2 "+real && got != "report 2 "+dir {
		t.Errorf("worker 2 cwd: %s, want %s", got, dir)
	}
}

func TestSilentOutputReadable(t *testing.T) {
	c := newCluster(t, runtime.WithSilent(true))
	w := c.fork("print")
	out, errOut := w.Stdout(), w.Stderr()
	if out == nil || errOut == nil {
		t.Fatal("no output pipes")
	}
	defer out.Close()
	defer errOut.Close()
	b, err := io.ReadAll(out)
	if err != nil || string(b) != "hello from stdout\n" {
		t.Errorf("stdout %q, %v", b, err)
	}
	b, err = io.ReadAll(errOut)
	if err != nil || string(b) != "hello from stderr\n" {
		t.Errorf("stderr %q, %v", b, err)
	}
	w.Disconnect(context.Background())
	c.waitExit(w)
}

func TestEverythingSentBeforeExit(t *testing.T) {
	c := newCluster(t)
	w := c.fork("burst")
	c.waitExit(w)
	got := c.rec.of(w.ID())
	if len(got) != 2+500+2 {
		t.Fatalf("%d events, want 504: %q", len(got), got)
	}
	for i := range 500 {
		if got[2+i] != fmt.Sprintf("report %d", i) {
			t.Fatalf("event %d = %q", 2+i, got[2+i])
		}
	}
	if got[502] != "disconnect" || !strings.HasPrefix(got[503], "exit") {
		t.Errorf("tail %q", got[500:])
	}
}

func TestGarbageClosesOnlyThatLink(t *testing.T) {
	c := newCluster(t)
	good := c.fork("idle")
	bad := c.fork("garbage")
	c.rec.waitFor(fmt.Sprintf("online %d", good.ID()))
	line := c.rec.waitFor(fmt.Sprintf("error %d", bad.ID()))
	if !strings.Contains(line, "too large") {
		t.Errorf("error event %q", line)
	}
	c.waitExit(bad)
	// The other worker still answers.
	res, err := testv1herd.NewTestServiceClient(good).Echo(context.Background(), &testv1.EchoRequest{Message: "hi"})
	if want := fmt.Sprintf("worker %d:hi", good.ID()); err != nil || res.GetMessage() != want {
		t.Errorf("call to the good worker: %v %v, want %q", res, err, want)
	}
}

func TestCallsBothWaysAndErrors(t *testing.T) {
	c := newCluster(t)
	w := c.fork("idle")
	c.rec.waitFor("online 1")
	ctx := context.Background()
	client := testv1herd.NewTestServiceClient(w)
	if res, err := client.Echo(ctx, &testv1.EchoRequest{Message: "a"}); err != nil || res.GetMessage() != "worker 1:a" {
		t.Fatalf("echo: %v %v", res, err)
	}
	err := w.Call(ctx, missingProcedure, &testv1.AskRequest{}, &testv1.AskResponse{})
	if runtime.CodeOf(err) != runtime.CodeUnimplemented {
		t.Errorf("unknown procedure: %v", err)
	}
	// Cancellation reaches the callee: Sleep returns when its context ends.
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	_, err = client.Sleep(cctx, &testv1.SleepRequest{})
	if runtime.CodeOf(err) != runtime.CodeDeadlineExceeded {
		t.Errorf("sleep: %v", err)
	}
	// The worker is still serving.
	if res, err := client.Echo(ctx, &testv1.EchoRequest{Message: "b"}); err != nil || res.GetMessage() != "worker 1:b" {
		t.Fatalf("echo after cancel: %v %v", res, err)
	}
	w.Kill(syscall.SIGKILL)
	c.waitExit(w)
	_, err = client.Echo(ctx, &testv1.EchoRequest{})
	if runtime.CodeOf(err) != runtime.CodeUnavailable {
		t.Errorf("call to a dead worker: %v", err)
	}
}

func TestForkExitCyclesLeakNothing(t *testing.T) {
	p := runtime.NewPrimary(runtime.WithOutput(io.Discard, io.Discard))
	base := herdtest.Take()
	const cycles, parallel = 200, 4
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i := range cycles {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			mode := [...]string{"exit3", "selfkill", "idle"}[i%3]
			w, err := p.Fork(context.Background(), herdtest.ForkRole(mode))
			if err != nil {
				t.Error(err)
				return
			}
			if mode == "idle" {
				w.Disconnect(context.Background())
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			if _, err := w.Wait(ctx); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	herdtest.Check(t, base, 10*time.Second)
}

// TestPrimaryDeathLeavesNoWorker kills a primary (a child of the test) and
// checks that its workers go too: after SIGKILL, with idle and with busy
// workers, and after the primary exits with status 1.
func TestPrimaryDeathLeavesNoWorker(t *testing.T) {
	tests := []struct{ name, primaryRole, workerRole string }{
		{"sigkill idle", "primary", "hooks"},
		{"sigkill busy", "primary", "busy"},
		{"exit 1", "primary-exit1", "hooks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			herdtest.CheckLeaks(t)
			p := herdtest.Start(t, tt.primaryRole, herdtest.WithEnv(envWorkerRole+"="+tt.workerRole))
			var pids []int
			for _, f := range strings.Fields(strings.TrimPrefix(p.WaitLine("pids "), "pids ")) {
				var pid int
				fmt.Sscan(f, &pid)
				pids = append(pids, pid)
			}
			if len(pids) != 2 {
				t.Fatalf("primary printed pids %q", p.Lines())
			}
			// Track holds pidfds before the primary dies, so that PID reuse
			// cannot fool the check; the cleanup fails the test if a worker
			// survives its primary.
			for _, pid := range pids {
				p.Track(pid)
			}
			if tt.primaryRole == "primary" {
				p.Signal(syscall.SIGKILL)
				p.WaitExit(-1)
			} else {
				p.WaitExit(1)
			}
		})
	}
}

func TestExtraFiles(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := newCluster(t, runtime.WithExtraFiles(w))
	wk := c.fork("extrafd")
	w.Close() // the worker holds its own copy
	if got := c.rec.waitFor(fmt.Sprintf("report %d ", wk.ID())); got != "report 1 <nil>" {
		t.Errorf("worker: %s", got)
	}
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil || line != "written by the worker\n" {
		t.Errorf("read %q, %v", line, err)
	}
	wk.Disconnect(context.Background())
	c.waitExit(wk)
}

// TestCredential runs a worker as nobody, for privilege separation. It
// needs root to change credentials.
func TestCredential(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("changing a worker's credentials needs root")
	}
	dir, bin := publicTestBinary(t)
	c := newCluster(t, runtime.WithExec(bin), runtime.WithDir(dir), runtime.WithCredential(nobody, nobody))
	w := c.fork("uid")
	if got := c.rec.waitFor(fmt.Sprintf("report %d ", w.ID())); got != "report 1 uid=65534 gid=65534" {
		t.Errorf("worker: %s", got)
	}
	w.Disconnect(context.Background())
	c.waitExit(w)
}

// nobody is the unprivileged user the credential tests run processes as.
const nobody = 65534

// publicTestBinary copies the test binary, which lives in a directory only
// root may enter, into a fresh directory anyone may read, so that a
// process run as nobody can execute it. The copy is removed at the end of
// the test.
func publicTestBinary(t *testing.T) (dir, bin string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "herd-public-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	bin = filepath.Join(dir, "herd.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, bin
}
