package herdtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Process is a program a test started in a role (Start): the test binary
// itself, run as a primary, as a worker or as a whole program. It reads the
// program's standard output as lines, writes to its standard input, keeps
// its standard error, and when the test ends kills it if it still runs,
// reaps it and waits for the processes given to Track to end.
//
// A Process belongs to the test goroutine, like *testing.T's Fatal.
type Process struct {
	// Timeout bounds each wait (WaitLine, WaitLines, Wait); zero means
	// DefaultTimeout.
	Timeout time.Duration

	t       testing.TB
	role    string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	lines   chan string // standard output, closed at EOF; nil once read to EOF
	seen    []string    // lines read from lines
	stderr  *tailBuffer
	done    chan struct{} // closed when the process has been reaped
	waitErr error         // cmd.Wait's result, set before done closes
	group   bool
	tracked []tracked
	pidOf   func(line string) int // WithWorkerPIDs
	waited  bool                  // the test looked at the exit status
}

// ProcessOption configures Start.
type ProcessOption interface{ applyProcess(*Process) }

type processOption func(*Process)

func (f processOption) applyProcess(p *Process) { f(p) }

// WithArgs sets the program's arguments (after the executable's name). The
// test binary's own flags are not needed: Main runs the role before the
// tests would parse theirs.
func WithArgs(args ...string) ProcessOption {
	return processOption(func(p *Process) { p.cmd.Args = append(p.cmd.Args[:1], args...) })
}

// WithEnv adds "KEY=value" entries to the program's environment.
func WithEnv(kv ...string) ProcessOption {
	return processOption(func(p *Process) { p.cmd.Env = append(p.cmd.Env, kv...) })
}

// WithProgram runs path instead of the test binary: a copy of the test
// binary (a test that replaces the program on disk), or a wrapper that runs
// it, such as unshare or sudo, given the test binary and its arguments with
// WithArgs (os.Executable names it). EnvRole is set all the same. A path
// without a slash is looked up in PATH.
func WithProgram(path string) ProcessOption {
	return processOption(func(p *Process) {
		if lp, err := exec.LookPath(path); err == nil {
			path = lp
		}
		p.cmd.Path = path
		p.cmd.Args[0] = path
	})
}

// WithWorkerPIDs names the workers in the program's output: every line of
// standard output that the test reads (WaitLine, WaitLines, Wait, and the
// cleanup, which reads the rest) is given to pidOf, and when it returns a
// PID above zero the process Tracks it at once. A primary that prints a
// line for each worker it starts ("online worker=1 pid=4242") then fails
// its test when a worker outlives it, replacements included, without the
// test tracking each line itself. pidOf runs on the goroutine that reads
// the line (the test's, or its cleanup's) and returns 0 for other lines.
func WithWorkerPIDs(pidOf func(line string) int) ProcessOption {
	return processOption(func(p *Process) { p.pidOf = pidOf })
}

// WithDir runs the program in dir instead of the test's working directory.
func WithDir(dir string) ProcessOption {
	return processOption(func(p *Process) { p.cmd.Dir = dir })
}

// WithExtraFiles gives the program files as its descriptors 3, 4, ...
// (exec.Cmd's ExtraFiles), as systemd passes the sockets of socket
// activation. Start does not close them: the test closes its copies once
// the program has started, if it should not hold them.
func WithExtraFiles(files ...*os.File) ProcessOption {
	return processOption(func(p *Process) { p.cmd.ExtraFiles = append(p.cmd.ExtraFiles, files...) })
}

// WithProcessGroup starts the program in a process group of its own, as a
// shell starts a job, so that SignalGroup reaches it and every worker it
// forked (as Ctrl-C, kill -- -PGID, systemd and docker stop do); the test's
// cleanup then kills the whole group. Unix only.
func WithProcessGroup() ProcessOption {
	return processOption(func(p *Process) { p.group = true; setGroup(p.cmd) })
}

// Start runs the test binary in role (see Main), with the test's
// environment and EnvRole=role, and returns it running. It fails the test
// if the program cannot start.
func Start(t testing.TB, role string, opts ...ProcessOption) *Process {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("herdtest: start %s: %v", role, err)
	}
	p := &Process{
		t:      t,
		role:   role,
		cmd:    exec.Command(exe),
		lines:  make(chan string, 1024),
		stderr: &tailBuffer{max: 64 << 10},
		done:   make(chan struct{}),
	}
	p.cmd.Env = append(os.Environ(), EnvRole+"="+role)
	for _, o := range opts {
		o.applyProcess(p)
	}
	p.cmd.Stderr = p.stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatalf("herdtest: start %s: %v", role, err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("herdtest: start %s: %v", role, err)
	}
	// Workers inherit standard error, and may hold it open after the
	// program has exited; this bounds how long Wait waits for it.
	p.cmd.WaitDelay = DefaultTimeout
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("herdtest: start %s: %v", role, err)
	}
	// One goroutine reads standard output and then reaps the process (Wait
	// must follow the reads of a StdoutPipe).
	lines := p.lines
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(p.cleanup)
	return p
}

// PID returns the program's process ID.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Send writes line and a newline to the program's standard input.
func (p *Process) Send(line string) {
	p.t.Helper()
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		p.t.Fatalf("herdtest: %s: write %q: %v", p.role, line, err)
	}
}

// CloseStdin closes the program's standard input (it reads EOF).
func (p *Process) CloseStdin() {
	p.stdin.Close()
}

// Signal sends sig to the program.
func (p *Process) Signal(sig os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatalf("herdtest: %s: signal %v: %v", p.role, sig, err)
	}
}

// tracked is a process the cleanup waits for.
type tracked struct {
	pid   int
	watch *Watch // nil where pidfds are missing
}

// Track makes the test's cleanup wait for pid (a worker of this program: not
// a child of the test) to end, so that a test cannot pass while a worker of
// its primary is left running. On Linux it holds a pidfd from now on, so
// that the PID being reused after the worker ends cannot fool the wait.
func (p *Process) Track(pid int) {
	w, _ := WatchPID(pid)
	p.tracked = append(p.tracked, tracked{pid: pid, watch: w})
}

// Lines returns the lines of standard output read so far (by WaitLine,
// WaitLines and Wait).
func (p *Process) Lines() []string { return append([]string(nil), p.seen...) }

// Stderr returns the program's standard error so far (its last 64 KiB).
func (p *Process) Stderr() string { return p.stderr.String() }

// WaitLine reads standard output up to the next line that starts with
// prefix, and returns that line. Lines before it are skipped (Lines keeps
// them). It fails the test, with the lines seen and standard error, when the
// output ends first or the wait reaches its bound.
func (p *Process) WaitLine(prefix string) string {
	p.t.Helper()
	return p.WaitLines(prefix)[prefix]
}

// WaitLines reads standard output until it has seen one line starting with
// each prefix, in any order (the events of different workers interleave),
// and returns them by prefix. A line is taken by the first prefix it
// matches that is still missing.
func (p *Process) WaitLines(prefixes ...string) map[string]string {
	p.t.Helper()
	got := make(map[string]string, len(prefixes))
	d := limit(p.t, p.Timeout)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for len(got) < len(prefixes) {
		if p.lines == nil {
			p.t.Fatalf("herdtest: %s: output ended without %q%s", p.role, missing(prefixes, got), p.context())
		}
		select {
		case l, ok := <-p.lines:
			if !ok {
				p.lines = nil
				p.t.Fatalf("herdtest: %s: output ended without %q%s", p.role, missing(prefixes, got), p.context())
			}
			p.take(l)
			for _, prefix := range prefixes {
				if _, done := got[prefix]; !done && strings.HasPrefix(l, prefix) {
					got[prefix] = l
					break
				}
			}
		case <-timer.C:
			p.t.Fatalf("herdtest: %s: no line %q after %v%s", p.role, missing(prefixes, got), d, p.context())
		}
	}
	return got
}

// take records a line of standard output the test has read, and tracks the
// worker it names (WithWorkerPIDs).
func (p *Process) take(l string) {
	p.seen = append(p.seen, l)
	if p.pidOf != nil {
		if pid := p.pidOf(l); pid > 0 {
			p.Track(pid)
		}
	}
}

// WaitStderr waits until the program's standard error (Stderr: its last
// 64 KiB) contains text, for a program or a wrapper that says on standard
// error that it is ready (systemd-socket-activate's "Listening on"). It
// fails the test, with the output so far, when the program exits without
// writing it or the wait reaches its bound.
func (p *Process) WaitStderr(text string) {
	p.t.Helper()
	d := limit(p.t, p.Timeout)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		ok, changed := p.stderr.contains(text)
		if ok {
			return
		}
		select {
		case <-changed:
		case <-p.done:
			// Wait has copied the whole of standard error by now.
			if ok, _ := p.stderr.contains(text); ok {
				return
			}
			p.t.Fatalf("herdtest: %s: exited without %q on standard error%s", p.role, text, p.context())
		case <-timer.C:
			p.t.Fatalf("herdtest: %s: no %q on standard error after %v%s", p.role, text, d, p.context())
		}
	}
}

func missing(prefixes []string, got map[string]string) []string {
	var out []string
	for _, prefix := range prefixes {
		if _, ok := got[prefix]; !ok {
			out = append(out, prefix)
		}
	}
	return out
}

// context describes the output so far, for a failure message.
func (p *Process) context() string {
	s := fmt.Sprintf("; saw %q", p.seen)
	if e := p.stderr.String(); e != "" {
		s += "\nstandard error:\n" + e
	}
	return s
}

// Wait waits for the program to exit, reading the rest of its output (Lines
// has it), and returns its exit status: -1 when a signal ended it. It fails
// the test when the wait reaches its bound (the cleanup then kills the
// program).
func (p *Process) Wait() int {
	p.t.Helper()
	d := limit(p.t, p.Timeout)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-p.lines:
			if ok {
				p.take(l)
				continue
			}
			p.lines = nil // read to EOF; now wait for the reaper
		case <-p.done:
			p.waited = true
			return p.cmd.ProcessState.ExitCode()
		case <-timer.C:
			p.t.Fatalf("herdtest: %s: still running after %v%s", p.role, d, p.context())
		}
	}
}

// WaitExit waits for the program to exit (Wait) and fails the test, with its
// output, unless its exit status is code.
func (p *Process) WaitExit(code int) {
	p.t.Helper()
	if got := p.Wait(); got != code {
		p.t.Errorf("herdtest: %s: exit status %d, want %d (%v)%s", p.role, got, code, p.waitErr, p.context())
	}
}

// cleanup kills the program if it still runs, reaps it, reads the rest of
// its output (tracking the workers it names, WithWorkerPIDs), reports a
// program that failed on its own while the test did not look, and waits
// for the tracked processes.
func (p *Process) cleanup() {
	p.t.Helper()
	select {
	case <-p.done:
		p.drain()
		var ee *exec.ExitError
		if !p.waited && errors.As(p.waitErr, &ee) && !p.t.Failed() {
			p.t.Errorf("herdtest: %s exited by itself with status %d before the test ended (%v)%s",
				p.role, ee.ExitCode(), p.waitErr, p.context())
		}
	default:
		if p.group {
			killGroup(p.cmd.Process.Pid)
		}
		p.cmd.Process.Kill()
		p.drain()
		<-p.done
	}
	p.stdin.Close()
	d := limit(p.t, p.Timeout)
	for _, tr := range p.tracked {
		gone := false
		if tr.watch != nil {
			gone = tr.watch.Wait(d)
		} else {
			gone = waitGone(tr.pid, d)
		}
		if !gone {
			killPID(tr.pid)
			p.t.Errorf("herdtest: %s: worker %d still alive after %v", p.role, tr.pid, d)
		}
	}
	if p.t.Failed() {
		if e := p.stderr.String(); e != "" {
			p.t.Logf("herdtest: %s: standard error:\n%s", p.role, e)
		}
	}
}

// drain reads standard output to its end (the program has exited or been
// killed), as the test would have.
func (p *Process) drain() {
	if p.lines == nil {
		return
	}
	for l := range p.lines {
		p.take(l)
	}
	p.lines = nil
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	buf     bytes.Buffer
	changed chan struct{} // closed by the next write; nil while nobody waits
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if extra := b.buf.Len() - b.max; extra > 0 {
		b.buf.Next(extra)
	}
	if b.changed != nil {
		close(b.changed)
		b.changed = nil
	}
	return len(p), nil
}

// contains reports whether the buffer holds text; when it does not, it
// also returns a channel that the next write closes.
func (b *tailBuffer) contains(text string) (bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if strings.Contains(b.buf.String(), text) {
		return true, nil
	}
	if b.changed == nil {
		b.changed = make(chan struct{})
	}
	return false, b.changed
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
