//go:build unix

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
	"github.com/herd-go/herd/runtime/herdtest"
)

// The test binary doubles as the console (HERD_EVENTS_MAIN=1) and as its
// workers (the runtime's sentinel).
func TestMain(m *testing.M) {
	if runtime.IsWorker() || os.Getenv("HERD_EVENTS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

const waitLimit = 60 * time.Second

// console is a running events console.
type console struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	seen  []string
}

func start(t *testing.T, args ...string) *console {
	t.Helper()
	base := herdtest.Take()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "HERD_EVENTS_MAIN=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &console{t: t, cmd: cmd, stdin: stdin, lines: make(chan string, 1000)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		herdtest.Check(t, base, 10*time.Second)
	})
	return c
}

func (c *console) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, line+"\n"); err != nil {
		c.t.Fatal(err)
	}
}

// expect waits for a line starting with prefix and returns it.
func (c *console) expect(prefix string) string {
	c.t.Helper()
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("output ended without %q; saw %q", prefix, c.seen)
			}
			c.seen = append(c.seen, l)
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-timer.C:
			c.t.Fatalf("no line %q; saw %q", prefix, c.seen)
		}
	}
}

// expectAll waits for one line starting with each prefix, in any order.
func (c *console) expectAll(prefixes ...string) map[string]string {
	c.t.Helper()
	got := make(map[string]string, len(prefixes))
	timer := time.NewTimer(waitLimit)
	defer timer.Stop()
	for len(got) < len(prefixes) {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.t.Fatalf("output ended without %q; saw %q", prefixes, c.seen)
			}
			c.seen = append(c.seen, l)
			for _, p := range prefixes {
				if _, done := got[p]; !done && strings.HasPrefix(l, p) {
					got[p] = l
				}
			}
		case <-timer.C:
			c.t.Fatalf("no lines %q; saw %q", prefixes, c.seen)
		}
	}
	return got
}

// pid returns the pid= field of a line.
func pid(line string) int {
	for _, f := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(f, "pid="); ok {
			var n int
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// waitGone waits for a process (not our child) to end.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	w, err := herdtest.WatchPID(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !w.Wait(waitLimit) {
		syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("process %d still alive", pid)
	}
}

func (c *console) exitCode() int {
	c.t.Helper()
	err := c.cmd.Wait()
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	c.t.Fatal(err)
	return -1
}

func TestConsoleCommands(t *testing.T) {
	c := start(t, "-workers", "2")
	// Each worker's events are in order, but the two workers' events
	// interleave in any order.
	got := c.expectAll("event=fork worker=1 ", "event=fork worker=2 ", "event=online worker=1 ", "event=online worker=2 ")
	fork1, online1 := got["event=fork worker=1 "], got["event=online worker=1 "]
	if pid(fork1) == 0 || pid(fork1) != pid(online1) {
		t.Errorf("pids differ: %q %q", fork1, online1)
	}

	c.send("kill 1 SIGKILL")
	want := fmt.Sprintf("event=exit worker=1 pid=%d code=-1 signal=SIGKILL after_disconnect=false cause=killed", pid(fork1))
	if got := c.expect("event=exit worker=1 "); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	c.send("disconnect 2")
	c.expect("event=disconnect worker=2 ")
	if got := c.expect("event=exit worker=2 "); !strings.HasSuffix(got, "code=0 signal= after_disconnect=true cause=clean") {
		t.Errorf("exit after disconnect: %s", got)
	}
	c.send("bogus")
	c.send("kill 99")
	c.send("fork")
	fork3 := c.expect("event=fork worker=3 ")
	c.expect("event=online worker=3 ")
	c.send("quit")
	c.expect("event=disconnect worker=3 ")
	if got := c.expect("event=exit worker=3 "); !strings.HasSuffix(got, "after_disconnect=true cause=clean") {
		t.Errorf("exit on quit: %s", got)
	}
	c.expect("event=done")
	if code := c.exitCode(); code != 0 {
		t.Errorf("console exit status %d", code)
	}
	waitGone(t, pid(fork3))
}

func TestConsoleSignalAfterEOF(t *testing.T) {
	c := start(t, "-workers", "1")
	online := c.expect("event=online worker=1 ")
	c.stdin.Close() // EOF is ignored
	c.cmd.Process.Signal(syscall.SIGTERM)
	if got := c.expect("event=exit worker=1 "); !strings.HasSuffix(got, "after_disconnect=true cause=clean") {
		t.Errorf("exit on SIGTERM: %s", got)
	}
	c.expect("event=done")
	if code := c.exitCode(); code != 0 {
		t.Errorf("console exit status %d", code)
	}
	waitGone(t, pid(online))
}

func TestConsoleExecOtherProgram(t *testing.T) {
	// A worker that is not a herd program: it never comes online, and its
	// failure does not stop the console.
	c := start(t, "-workers", "1", "-exec", "/bin/sh", "--", "-c", "exit 3")
	c.expect("event=fork worker=1 ")
	if got := c.expect("event=exit worker=1 "); !strings.HasSuffix(got, "code=3 signal= after_disconnect=false cause=error") {
		t.Errorf("exit: %s", got)
	}
	c.send("fork")
	c.expect("event=exit worker=2 ")
	c.send("quit")
	c.expect("event=done")
	if code := c.exitCode(); code != 0 {
		t.Errorf("console exit status %d", code)
	}
}

func TestConsoleBadExec(t *testing.T) {
	c := start(t, "-workers", "1", "-exec", "/nonexistent/worker")
	if got := c.expect("event=error "); !strings.Contains(got, "no such file") {
		t.Errorf("error line: %s", got)
	}
	c.send("quit")
	c.expect("event=done")
	if code := c.exitCode(); code != 0 {
		t.Errorf("console exit status %d", code)
	}
}
