//go:build unix

package herdtest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
)

// The kit's own tests use the kit: this binary plays the roles below when a
// test starts it in one.
func TestMain(m *testing.M) {
	Main(m, Roles{
		"exit3": func() int { return 3 },
		"hello": func() int {
			fmt.Println("hello from", os.Getpid())
			return 0
		},
		"echo":    echoRole,
		"worker":  workerRole,
		"primary": primaryRole,
		"where":   whereRole,
	})
}

// whereRole prints its executable, arguments, working directory,
// HERDTEST_X, user and group, and the first line it reads from descriptor 3
// when it has one.
func whereRole() int {
	wd, _ := os.Getwd()
	exe, _ := os.Executable()
	fmt.Printf("exe %s\n", exe)
	fmt.Printf("args %q\n", os.Args[1:])
	fmt.Printf("dir %s\n", wd)
	fmt.Printf("env %q\n", os.Getenv("HERDTEST_X"))
	fmt.Printf("ids %d %d\n", os.Getuid(), os.Getgid())
	if f := os.NewFile(3, "extra"); f != nil {
		if line, err := bufio.NewReader(f).ReadString('\n'); err == nil {
			fmt.Printf("fd3 %s", line)
		}
	}
	return 0
}

// echoRole prints "ready", then echoes every line of its standard input
// until EOF or SIGTERM, and says which ended it; a line "stderr TEXT" also
// writes TEXT to standard error.
func echoRole() int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	fmt.Println("ready")
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				fmt.Println("eof")
				return 0
			}
			if text, ok := strings.CutPrefix(l, "stderr "); ok {
				fmt.Fprintln(os.Stderr, text)
			}
			fmt.Println("echo " + l)
		case s := <-sigs:
			fmt.Println("signal", s)
			return 0
		}
	}
}

// workerRole is a worker that comes online and waits to be disconnected.
func workerRole() int {
	self, err := runtime.NewSelf()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := self.Start(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-self.Done()
	return 0
}

// primaryRole forks one worker (in its own role: the workers of a role
// inherit it; it is a worker there), prints "listening PID" once the
// worker listens, and disconnects it on SIGTERM, then prints "done" and the
// worker's events.
func primaryRole() int {
	if runtime.IsWorker() {
		return listeningWorker()
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	ctx := context.Background()
	p := runtime.NewPrimary()
	events := NewEvents(nil)
	if err := events.Register(p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	w, err := p.Fork(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// Listening, not online: the online event comes as the handshake ends,
	// before the worker has set up its handling of SIGTERM.
	for len(events.Of(w.ID())) < 3 {
		<-events.notify
	}
	fmt.Println("listening", w.PID())
	<-sigs
	if err := p.Disconnect(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	p.Wait(ctx)
	fmt.Println("done", strings.Join(events.Of(w.ID()), ", "))
	return 0
}

// listeningWorker is a worker that comes online, listens on a loopback
// port, and waits to be disconnected.
func listeningWorker() int {
	ctx := context.Background()
	self, err := runtime.NewSelf()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := self.Start(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ln, err := runtime.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer ln.Close()
	<-self.Done()
	return 0
}

// fakeT is a testing.TB whose failures are recorded instead of failing
// the test, to test that the kit's helpers fail properly. Fatalf ends the
// goroutine, as testing's does.
type fakeT struct {
	*testing.T
	mu       sync.Mutex
	errs     []string
	failed   bool
	cleanups []func()
}

func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, fmt.Sprintf(format, args...))
	f.failed = true
}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	goruntime.Goexit()
}

func (f *fakeT) Logf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, "log: "+fmt.Sprintf(format, args...))
}

func (f *fakeT) Failed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.failed
}

func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// runFake runs body with a fakeT in a goroutine of its own (so that Fatalf
// can end it), then its cleanups, last first, and returns what it reported.
func runFake(t *testing.T, body func(t testing.TB)) string {
	f := &fakeT{T: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body(f)
	}()
	<-done
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
	return strings.Join(f.errs, "\n")
}

func TestStartRole(t *testing.T) {
	CheckLeaks(t)
	p := Start(t, "hello")
	if got, want := p.WaitLine("hello "), fmt.Sprint("hello from ", p.PID()); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	p.WaitExit(0)

	Start(t, "exit3").WaitExit(3)
}

// copyTestBinary copies the test binary into a directory anyone may read,
// and returns the directory and the copy.
func copyTestBinary(t *testing.T) (dir, prog string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir, err = os.MkdirTemp("", "herdtest-") // t.TempDir's parent is the test user's alone
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	prog = filepath.Join(dir, "copy.test")
	if err := os.WriteFile(prog, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, prog
}

// TestStartOptions: WithProgram runs a copy of the test binary, in the role
// all the same; WithArgs, WithDir, WithEnv and WithExtraFiles reach it.
func TestStartOptions(t *testing.T) {
	CheckLeaks(t)
	dir, prog := copyTestBinary(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p := Start(t, "where", WithProgram(prog), WithArgs("-x", "y"), WithDir(dir), WithEnv("HERDTEST_X=1"), WithExtraFiles(r))
	r.Close()
	fmt.Fprintln(w, "through fd 3")
	w.Close()
	p.WaitExit(0)
	want := []string{"exe " + prog, `args ["-x" "y"]`, "dir " + dir, `env "1"`, fmt.Sprintf("ids %d %d", os.Getuid(), os.Getgid()), "fd3 through fd 3"}
	if got := p.Lines(); !slices.Equal(got, want) {
		t.Errorf("lines %q, want %q", got, want)
	}
}

// TestStartCredential: WithCredential runs the program as another user.
func TestStartCredential(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("changing user needs root")
	}
	CheckLeaks(t)
	const nobody = 65534
	dir, prog := copyTestBinary(t) // the test binary's own directory is root's alone
	p := Start(t, "where", WithProgram(prog), WithCredential(nobody, nobody), WithDir(dir), WithEnv("GOCOVERDIR="))
	p.WaitExit(0)
	if want := fmt.Sprintf("ids %d %d", nobody, nobody); !slices.Contains(p.Lines(), want) {
		t.Errorf("lines %q, want %q among them", p.Lines(), want)
	}
}

func TestStartUnknownRole(t *testing.T) {
	CheckLeaks(t)
	p := Start(t, "nosuch")
	p.WaitExit(2)
	if want := `herdtest: no role "nosuch" in this test binary (it has "echo", "exit3", "hello", "primary", "where", "worker")`; !strings.Contains(p.Stderr(), want) {
		t.Errorf("standard error %q, want %q", p.Stderr(), want)
	}
}

func TestProcessStdinAndSignal(t *testing.T) {
	CheckLeaks(t)
	p := Start(t, "echo")
	p.WaitLine("ready")
	p.Send("one")
	p.Send("two")
	if got := p.WaitLine("echo t"); got != "echo two" {
		t.Errorf("got %q", got)
	}
	if got := strings.Join(p.Lines(), "|"); got != "ready|echo one|echo two" {
		t.Errorf("lines %q", got)
	}
	p.Signal(syscall.SIGTERM)
	p.WaitLine("signal terminated")
	p.WaitExit(0)

	p = Start(t, "echo")
	p.CloseStdin()
	p.WaitLine("eof")
	p.WaitExit(0)
}

// TestProcessGroup: a primary role in a process group of its own, and its
// worker, get SIGTERM together; the primary disconnects the worker, which
// the cleanup then waits for.
func TestProcessGroup(t *testing.T) {
	CheckLeaks(t)
	p := Start(t, "primary", WithProcessGroup())
	var pid int
	fmt.Sscanf(p.WaitLine("listening "), "listening %d", &pid)
	if pid == 0 {
		t.Fatalf("no worker PID in %q", p.Lines())
	}
	p.Track(pid)
	p.SignalGroup(syscall.SIGTERM)
	want := "done fork, online, listening 127.0.0.1:*, disconnect, exit code=0 signal= after=true cause=EXIT_CAUSE_CLEAN"
	if got := p.WaitLine("done "); !regexp.MustCompile(`^done fork, online, listening 127\.0\.0\.1:[1-9][0-9]*, disconnect, exit code=0 signal= after=true cause=EXIT_CAUSE_CLEAN$`).MatchString(got) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	p.WaitExit(0)
}

func TestCleanupKillsRunningProcess(t *testing.T) {
	CheckLeaks(t)
	var pid int
	out := runFake(t, func(t testing.TB) {
		p := Start(t, "echo")
		p.WaitLine("ready")
		pid = p.PID()
	})
	if out != "" {
		t.Errorf("reported %q", out)
	}
	if Alive(pid) {
		t.Errorf("process %d alive after cleanup", pid)
	}
}

func TestRoleExitingNonZeroIsReported(t *testing.T) {
	CheckLeaks(t)
	out := runFake(t, func(t testing.TB) {
		p := Start(t, "exit3")
		<-p.done // exited, and nobody looked
	})
	if !strings.Contains(out, "herdtest: exit3 exited by itself with status 3 before the test ended") {
		t.Errorf("reported %q", out)
	}

	out = runFake(t, func(t testing.TB) { Start(t, "exit3").WaitExit(0) })
	if !strings.Contains(out, "herdtest: exit3: exit status 3, want 0") {
		t.Errorf("reported %q", out)
	}
}

func TestWaitLineFails(t *testing.T) {
	CheckLeaks(t)
	out := runFake(t, func(t testing.TB) {
		p := Start(t, "echo")
		p.WaitLine("ready") // the default bound: a loaded machine may take a while to start it
		p.Timeout = 200 * time.Millisecond
		p.WaitLine("never")
		t.Errorf("WaitLine returned")
	})
	if !strings.Contains(out, `herdtest: echo: no line ["never"] after 200ms; saw ["ready"]`) {
		t.Errorf("reported %q", out)
	}

	out = runFake(t, func(t testing.TB) {
		p := Start(t, "hello")
		p.WaitLines("hello", "bye")
		t.Errorf("WaitLines returned")
	})
	if !strings.Contains(out, `herdtest: hello: output ended without ["bye"]; saw ["hello from `) {
		t.Errorf("reported %q", out)
	}
}

func TestWaitFails(t *testing.T) {
	CheckLeaks(t)
	out := runFake(t, func(t testing.TB) {
		p := Start(t, "echo")
		p.WaitLine("ready") // the default bound: a loaded machine may take a while to start it
		p.Timeout = 200 * time.Millisecond
		p.Wait()
		t.Errorf("Wait returned")
	})
	if !strings.Contains(out, `herdtest: echo: still running after 200ms; saw ["ready"]`) {
		t.Errorf("reported %q", out)
	}
}

// TestMainRefusesWorkerWithoutRole: a worker forked without a role does not
// run the tests; it says why and exits with status 2.
func TestMainRefusesWorkerWithoutRole(t *testing.T) {
	CheckLeaks(t)
	var stderr tailBuffer
	stderr.max = 1 << 20
	p := runtime.NewPrimary(runtime.WithOutput(os.Stdout, &stderr))
	events := RecordEvents(t, p)
	ctx := context.Background()
	if _, err := p.Fork(ctx); err != nil {
		t.Fatal(err)
	}
	if got := events.WaitFor("exit 1 "); got != "exit 1 code=2 signal= after=false cause=EXIT_CAUSE_ERROR" {
		t.Errorf("got %q", got)
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if want := "herdtest: a worker was forked without a role, so it would run the tests again"; !strings.Contains(stderr.String(), want) {
		t.Errorf("standard error %q, want %q", stderr.String(), want)
	}
	if strings.Contains(stderr.String(), "--- ") || strings.Contains(stderr.String(), "PASS") {
		t.Errorf("the worker ran tests: %q", stderr.String())
	}
}

// TestForkRole: WorkerRole sets every worker's role, ForkRole one fork's.
func TestForkRole(t *testing.T) {
	CheckLeaks(t)
	ctx := context.Background()
	p := runtime.NewPrimary(WorkerRole("worker"))
	events := RecordEvents(t, p)
	w1, err := p.Fork(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Fork(ctx, ForkRole("exit3")); err != nil {
		t.Fatal(err)
	}
	events.WaitFor("online 1")
	if got := events.WaitFor("exit 2 "); got != "exit 2 code=3 signal= after=false cause=EXIT_CAUSE_ERROR" {
		t.Errorf("got %q", got)
	}
	if err := w1.Disconnect(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(events.Of(1), ", "), "fork, online, disconnect, exit code=0 signal= after=true cause=EXIT_CAUSE_CLEAN"; got != want {
		t.Errorf("worker 1: %s\nwant %s", got, want)
	}
}

func TestRun(t *testing.T) {
	roles := Roles{"seven": func() int { return 7 }}
	var stderr strings.Builder
	if got := run(fakeM(0), roles, &stderr); got != 0 {
		t.Errorf("tests: got %d", got)
	}
	if got := run(fakeM(1), roles, &stderr); got != 1 {
		t.Errorf("failing tests: got %d", got)
	}
	t.Setenv(EnvRole, "seven")
	if got := run(fakeM(0), roles, &stderr); got != 7 {
		t.Errorf("role: got %d", got)
	}
	t.Setenv(EnvRole, "eight")
	if got := run(fakeM(0), roles, &stderr); got != 2 || stderr.String() != "herdtest: no role \"eight\" in this test binary (it has \"seven\")\n" {
		t.Errorf("unknown role: got %d, %q", got, stderr.String())
	}
}

type fakeM int

func (m fakeM) Run() int { return int(m) }

func TestEventsWaitFor(t *testing.T) {
	e := NewEvents(t)
	go e.Add("online 1")
	if got := e.WaitFor("online "); got != "online 1" {
		t.Errorf("got %q", got)
	}
	e.Addf("exit %d code=%d", 12, 0)
	e.Add("exit 1 code=3")
	if got := e.WaitFor("exit 1 "); got != "exit 1 code=3" {
		t.Errorf("exit 1 matched %q", got)
	}
	if got := strings.Join(e.Of(1), ","); got != "online,exit code=3" {
		t.Errorf("Of(1) = %q", got)
	}

	out := runFake(t, func(t testing.TB) {
		e := NewEvents(t)
		e.Timeout = 100 * time.Millisecond
		e.Add("online 1")
		e.WaitFor("exit 1 ")
		t.Errorf("WaitFor returned")
	})
	if want := `herdtest: no event "exit 1 " after 100ms; recorded ["online 1"]`; out != want {
		t.Errorf("reported %q, want %q", out, want)
	}
}

func TestRecordEventsTwice(t *testing.T) {
	p := runtime.NewPrimary()
	RecordEvents(t, p)
	out := runFake(t, func(t testing.TB) {
		RecordEvents(t, p)
		t.Errorf("RecordEvents returned")
	})
	if !strings.Contains(out, "herdtest: record events: ") || !strings.Contains(out, "already registered") {
		t.Errorf("reported %q", out)
	}
}

func TestReceive(t *testing.T) {
	ch := make(chan int, 1)
	go func() { ch <- 5 }()
	if got := Receive(t, ch, "five"); got != 5 {
		t.Errorf("got %d", got)
	}
	out := runFake(t, func(t testing.TB) {
		Receive(t, ch, "a value", Within(50*time.Millisecond))
		t.Errorf("Receive returned")
	})
	if want := "herdtest: waiting for a value: nothing after 50ms"; out != want {
		t.Errorf("reported %q, want %q", out, want)
	}
	close(ch)
	out = runFake(t, func(t testing.TB) {
		Receive(t, ch, "a value")
		t.Errorf("Receive returned")
	})
	if want := "herdtest: waiting for a value: channel closed"; out != want {
		t.Errorf("reported %q, want %q", out, want)
	}
}

func TestWaitUntil(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	WaitUntil(t, "n is 3", func() bool { return n.Load() == 3 })

	out := runFake(t, func(t testing.TB) {
		WaitUntil(t, "never", func() bool { return false }, Within(20*time.Millisecond))
		t.Errorf("WaitUntil returned")
	})
	if want := "herdtest: waiting until never: still false after 20ms"; out != want {
		t.Errorf("reported %q, want %q", out, want)
	}
}

func TestLimitKeepsBeforeTestDeadline(t *testing.T) {
	d, ok := t.Deadline()
	got := limit(t, time.Hour)
	if !ok {
		if got != time.Hour {
			t.Errorf("no deadline: limit %v", got)
		}
		return
	}
	if left := time.Until(d); got > left {
		t.Errorf("limit %v beyond the test's deadline in %v", got, left)
	}
}

func TestWaitGone(t *testing.T) {
	CheckLeaks(t)
	p := Start(t, "echo")
	p.WaitLine("ready")
	pid := p.PID()
	out := runFake(t, func(t testing.TB) { WaitGone(t, pid, Within(50*time.Millisecond)) })
	// Still running (and our child): WaitGone kills it and says so.
	if want := fmt.Sprintf("herdtest: process %d still alive after 50ms", pid); out != want {
		t.Errorf("reported %q, want %q", out, want)
	}
	if code := p.Wait(); code != -1 {
		t.Errorf("exit status %d, want -1 (killed)", code)
	}
}

// TestTrackFails: a tracked process still running when the test ends is
// killed and reported.
func TestTrackFails(t *testing.T) {
	CheckLeaks(t)
	other := Start(t, "echo")
	other.WaitLine("ready")
	out := runFake(t, func(t testing.TB) {
		p := Start(t, "hello")
		p.Track(other.PID())
		p.WaitExit(0)
		p.Timeout = 50 * time.Millisecond // for the cleanup's wait
	})
	if want := fmt.Sprintf("herdtest: hello: worker %d still alive after 50ms", other.PID()); out != want {
		t.Errorf("reported %q, want %q", out, want)
	}
	if code := other.Wait(); code != -1 {
		t.Errorf("exit status %d, want -1 (killed)", code)
	}
}

func TestEventsWaitUntil(t *testing.T) {
	e := NewEvents(t)
	go func() {
		e.Add("exit 1 code=0")
		e.Add("exit 2 code=0")
	}()
	e.WaitUntil("two exits", func(lines []string) bool { return len(lines) == 2 })

	out := runFake(t, func(t testing.TB) {
		e := NewEvents(t)
		e.Timeout = 50 * time.Millisecond
		e.Add("exit 1 code=0")
		e.WaitUntil("two exits", func(lines []string) bool { return len(lines) == 2 })
		t.Errorf("WaitUntil returned")
	})
	if want := `herdtest: waiting until two exits after 50ms; recorded ["exit 1 code=0"]`; out != want {
		t.Errorf("reported %q, want %q", out, want)
	}
}

// echoedPID is a WithWorkerPIDs parser: the PID in "echo worker PID".
func echoedPID(line string) int {
	var pid int
	fmt.Sscanf(line, "echo worker %d", &pid)
	return pid
}

// TestWithWorkerPIDs: the workers a program names in its output are
// tracked whether the test reads the line (WaitLine) or the cleanup does;
// one still alive when the test ends is killed and reported, one that ended
// is not.
func TestWithWorkerPIDs(t *testing.T) {
	CheckLeaks(t)
	for _, readByTest := range []bool{true, false} {
		other := Start(t, "echo")
		other.WaitLine("ready")
		out := runFake(t, func(t testing.TB) {
			p := Start(t, "echo", WithWorkerPIDs(echoedPID))
			p.Send(fmt.Sprint("worker ", other.PID()))
			p.Timeout = 200 * time.Millisecond // for the cleanup's wait
			if readByTest {
				p.WaitLine("echo worker ")
				return
			}
			p.CloseStdin()
			<-p.done // exited, its output not read
		})
		if want := fmt.Sprintf("herdtest: echo: worker %d still alive after 200ms", other.PID()); out != want {
			t.Errorf("read by the test %v: reported %q, want %q", readByTest, out, want)
		}
		if code := other.Wait(); code != -1 {
			t.Errorf("read by the test %v: exit status %d, want -1 (killed)", readByTest, code)
		}
	}

	// A worker that ends before the test does is not reported.
	other := Start(t, "echo")
	other.WaitLine("ready")
	out := runFake(t, func(t testing.TB) {
		p := Start(t, "echo", WithWorkerPIDs(echoedPID))
		p.Send(fmt.Sprint("worker ", other.PID()))
		p.WaitLine("echo worker ")
		syscall.Kill(other.PID(), syscall.SIGTERM)
	})
	if out != "" {
		t.Errorf("reported %q", out)
	}
	other.WaitLine("signal terminated")
	other.WaitExit(0)
}

// TestWaitStderr: WaitStderr returns once standard error holds the text,
// and fails when the program exits without it or the bound is reached.
func TestWaitStderr(t *testing.T) {
	CheckLeaks(t)
	p := Start(t, "echo")
	p.WaitLine("ready")
	p.Send("stderr Listening on 1")
	p.WaitStderr("Listening on ")
	p.Send("stderr Listening on 2")
	p.WaitStderr("on 2")
	p.WaitStderr("on 1") // already there
	p.CloseStdin()
	p.WaitExit(0)

	out := runFake(t, func(t testing.TB) {
		p := Start(t, "echo")
		p.WaitLine("ready") // the default bound: a loaded machine may take a while to start it
		p.Send("stderr something else")
		p.Timeout = 200 * time.Millisecond
		p.WaitStderr("never")
		t.Errorf("WaitStderr returned")
	})
	if !strings.Contains(out, `herdtest: echo: no "never" on standard error after 200ms; saw ["ready"]`) {
		t.Errorf("reported %q", out)
	}

	out = runFake(t, func(t testing.TB) {
		p := Start(t, "hello")
		p.WaitStderr("never")
		t.Errorf("WaitStderr returned")
	})
	if !strings.Contains(out, `herdtest: hello: exited without "never" on standard error`) {
		t.Errorf("reported %q", out)
	}
}
