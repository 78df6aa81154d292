//go:build linux

package runtime_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
	testv1 "github.com/herd-go/herd/runtime/internal/testpb/testv1"
	"github.com/herd-go/herd/runtime/internal/testpb/testv1/testv1herd"
)

// orphanerMain is a worker that starts a grandchild and exits with status 7
// without waiting for it. The grandchild waits for the primary to open and
// close the FIFO $HERD_TEST_FIFO, which it does once the worker's exit has
// been reaped (the kernel re-parents a process's children before its parent
// can reap it), then prints the parent it has been re-parented to, and
// exits.
func orphanerMain() int {
	ctx := context.Background()
	self, err := runtime.NewSelf()
	if err != nil {
		fmt.Fprintln(os.Stderr, "NewSelf:", err)
		return 10
	}
	if err := self.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Start:", err)
		return 12
	}
	cmd := exec.Command("/bin/sh", "-c", `read x < "$HERD_TEST_FIFO"; read a b c ppid rest < /proc/self/stat; echo "grandchild ppid=$ppid"`)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "grandchild:", err)
		return 14
	}
	msg := &testv1.ReportRequest{Message: strconv.Itoa(cmd.Process.Pid)}
	if err := self.Call(ctx, testv1herd.TestServiceReportProcedure, msg, &testv1.ReportResponse{}); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
	}
	return 7
}

// reaperPrimaryMain is a primary (PID 1 in a namespace, or a subreaper
// with HERD_TEST_SUBREAPER=1) with an idle worker (reporting "ready" and,
// from its drain hook, "draining") and an orphaner. It
// prints the orphaner's exit, whether the grandchild was reaped, and, after
// SIGTERM or SIGINT, how its graceful stop ended the idle worker.
func reaperPrimaryMain() int {
	ctx := context.Background()
	var opts []runtime.PrimaryOption
	if os.Getenv("HERD_TEST_SUBREAPER") == "1" {
		opts = append(opts, runtime.WithSubreaper())
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	dir, err := os.MkdirTemp("", "herd-reaper")
	if err != nil {
		fmt.Println(err)
		return 2
	}
	defer os.RemoveAll(dir)
	fifo := dir + "/fifo"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		fmt.Println(err)
		return 2
	}
	opts = append(opts, runtime.WithEnv("HERD_TEST_FIFO="+fifo))
	p := runtime.NewPrimary(opts...)
	grandchild := make(chan int, 1)
	idleReports := make(chan string, 2) // "ready", then "draining" (the hooks mode)
	p.Register(runtime.NewUnaryHandler(testv1herd.TestServiceReportProcedure, func(ctx context.Context, req *testv1.ReportRequest) (*testv1.ReportResponse, error) {
		if pid, err := strconv.Atoi(req.GetMessage()); err == nil {
			grandchild <- pid
		} else {
			idleReports <- req.GetMessage()
		}
		return &testv1.ReportResponse{}, nil
	}))
	fmt.Println("primary pid", os.Getpid())
	idle, err := p.Fork(ctx, herdtest.ForkRole("hooks"))
	if err != nil {
		fmt.Println("fork:", err)
		return 2
	}
	orphaner, err := p.Fork(ctx, herdtest.ForkRole("orphaner"))
	if err != nil {
		fmt.Println("fork:", err)
		return 2
	}
	wctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	var gpid int
	select {
	case gpid = <-grandchild:
	case <-wctx.Done():
		fmt.Println("no grandchild report")
		return 3
	}
	ev, err := orphaner.Wait(wctx)
	if err != nil {
		fmt.Println("orphaner wait:", err)
		return 3
	}
	fmt.Printf("orphaner exit code=%d signal=%q cause=%s\n", ev.GetCode(), ev.GetSignal(), ev.GetCause())
	// The worker has been reaped, so its orphan has been re-parented: let
	// the grandchild look at its parent and exit.
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		fmt.Println("fifo:", err)
		return 3
	}
	f.Close()
	fmt.Println(waitReaped(gpid))
	select {
	case r := <-idleReports:
		fmt.Println("idle", r)
	case <-wctx.Done():
		fmt.Println("idle worker not ready")
		return 3
	}
	fmt.Println("waiting for SIGTERM")
	<-sig
	dctx, dcancel := context.WithTimeout(ctx, waitLimit)
	defer dcancel()
	if err := p.Disconnect(dctx); err != nil {
		fmt.Println("disconnect:", err)
	}
	ev, err = idle.Wait(dctx)
	if err != nil {
		fmt.Println("idle wait:", err)
		return 3
	}
	select {
	case r := <-idleReports:
		fmt.Println("idle", r)
	default:
		fmt.Println("idle did not drain")
	}
	fmt.Printf("stopped code=%d signal=%q after=%t cause=%s\n", ev.GetCode(), ev.GetSignal(), ev.GetExitedAfterDisconnect(), ev.GetCause())
	return 0
}

// waitReaped waits for pid to exit (its pidfd), then for its zombie to go
// from /proc (the reaper waits for it on SIGCHLD), bounded by waitLimit.
func waitReaped(pid int) string {
	w, err := herdtest.WatchPID(pid)
	if err != nil {
		return "watch: " + err.Error()
	}
	if !w.Wait(waitLimit) {
		return fmt.Sprintf("grandchild %d did not exit", pid)
	}
	deadline := time.Now().Add(waitLimit)
	backoff := time.Millisecond
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return "grandchild reaped"
		}
		if time.Now().After(deadline) {
			return "grandchild not reaped: " + string(b)
		}
		time.Sleep(backoff)
		backoff = min(2*backoff, 100*time.Millisecond)
	}
}

// runReaperPrimary runs the reaper primary (the test binary, or with
// herdtest.WithProgram a wrapper such as unshare running it), sends SIGTERM
// to the primary once it waits for it (target finds the primary's PID from
// the started program's), and returns its output and exit status.
func runReaperPrimary(t *testing.T, target func(pid int) int, opts ...herdtest.ProcessOption) ([]string, int) {
	t.Helper()
	herdtest.CheckLeaks(t)
	p := herdtest.Start(t, "reaper-primary", opts...)
	p.Timeout = 2 * waitLimit
	p.WaitLine("waiting for SIGTERM")
	if pid := target(p.PID()); pid > 0 {
		syscall.Kill(pid, syscall.SIGTERM)
	} else {
		t.Errorf("no primary to signal under %d", p.PID())
		p.Signal(syscall.SIGKILL)
	}
	code := p.Wait()
	return p.Lines(), code
}

func checkReaperOutput(t *testing.T, lines []string, code int, wantPPID int) {
	t.Helper()
	if code != 0 {
		t.Errorf("primary: exit status %d", code)
	}
	want := []string{
		fmt.Sprintf("grandchild ppid=%d", wantPPID),
		`orphaner exit code=7 signal="" cause=EXIT_CAUSE_ERROR`,
		"grandchild reaped",
		"idle ready",
		"idle draining", // its drain hook ran: a graceful stop
		`stopped code=0 signal="" after=true cause=EXIT_CAUSE_CLEAN`,
	}
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || l == w
		}
		if !found {
			t.Errorf("no line %q in %q", w, lines)
		}
	}
}

// TestSubreaperReapsOrphans: with WithSubreaper, a worker's orphan is
// re-parented to the primary (not to init) and reaped by it, and the
// worker's own exit status still reaches its exit event.
func TestSubreaperReapsOrphans(t *testing.T) {
	var primaryPID int
	lines, code := runReaperPrimary(t, func(pid int) int {
		primaryPID = pid
		return primaryPID
	}, herdtest.WithEnv("HERD_TEST_SUBREAPER=1"))
	checkReaperOutput(t, lines, code, primaryPID)
}

// TestPID1ReapsOrphans runs the primary as PID 1 of a new PID namespace, as
// in a container: it reaps its workers' orphans without the option, keeps
// its workers' exit statuses, and stops gracefully on SIGTERM.
func TestPID1ReapsOrphans(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("a PID namespace needs root (CI runs as root)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("unshare (util-linux) not installed")
	}
	if out, err := exec.Command(unshare, "--pid", "--fork", "--kill-child", "--mount-proc", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot make a PID namespace here: %v: %s", err, strings.TrimSpace(string(out)))
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	lines, code := runReaperPrimary(t, func(pid int) int {
		// unshare --fork waits for its child, PID 1 inside: that child
		// is the one to signal.
		return childOf(pid)
	}, herdtest.WithProgram(unshare), herdtest.WithArgs("--pid", "--fork", "--kill-child", "--mount-proc", exe))
	if len(lines) == 0 || lines[0] != "primary pid 1" {
		t.Fatalf("the primary is not PID 1: %q (exit status %d)", lines, code)
	}
	checkReaperOutput(t, lines, code, 1)
}

// childOf returns the (first) child process of pid, from /proc.
func childOf(pid int) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			return c
		}
	}
	return 0
}
