//go:build unix

package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/herd-go/herd/runtime/herdtest"
)

// The test binary doubles as the console (role "console", started by
// herdtest.Start) and as its workers, which inherit the role: main tells
// them apart by the runtime's sentinel.
func TestMain(m *testing.M) {
	herdtest.Main(m, herdtest.Roles{"console": func() int { main(); return 0 }})
}

// start runs the console with args; the test's cleanup kills it if it
// still runs, then checks for leaks.
func start(t *testing.T, args ...string) *herdtest.Process {
	t.Helper()
	herdtest.CheckLeaks(t)
	return herdtest.Start(t, "console", herdtest.WithArgs(args...))
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

func TestConsoleCommands(t *testing.T) {
	c := start(t, "-workers", "2")
	// Each worker's events are in order, but the two workers' events
	// interleave in any order.
	got := c.WaitLines("event=fork worker=1 ", "event=fork worker=2 ", "event=online worker=1 ", "event=online worker=2 ")
	fork1, online1 := got["event=fork worker=1 "], got["event=online worker=1 "]
	if pid(fork1) == 0 || pid(fork1) != pid(online1) {
		t.Errorf("pids differ: %q %q", fork1, online1)
	}

	c.Send("kill 1 SIGKILL")
	want := fmt.Sprintf("event=exit worker=1 pid=%d code=-1 signal=SIGKILL after_disconnect=false cause=killed", pid(fork1))
	if got := c.WaitLine("event=exit worker=1 "); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	c.Send("disconnect 2")
	c.WaitLine("event=disconnect worker=2 ")
	if got := c.WaitLine("event=exit worker=2 "); !strings.HasSuffix(got, "code=0 signal= after_disconnect=true cause=clean") {
		t.Errorf("exit after disconnect: %s", got)
	}
	c.Send("bogus")
	c.Send("kill 99")
	c.Send("fork")
	c.Track(pid(c.WaitLine("event=fork worker=3 ")))
	c.WaitLine("event=online worker=3 ")
	c.Send("quit")
	c.WaitLine("event=disconnect worker=3 ")
	if got := c.WaitLine("event=exit worker=3 "); !strings.HasSuffix(got, "after_disconnect=true cause=clean") {
		t.Errorf("exit on quit: %s", got)
	}
	c.WaitLine("event=done")
	c.WaitExit(0)
}

func TestConsoleSignalAfterEOF(t *testing.T) {
	c := start(t, "-workers", "1")
	c.Track(pid(c.WaitLine("event=online worker=1 ")))
	c.CloseStdin() // EOF is ignored
	c.Signal(syscall.SIGTERM)
	if got := c.WaitLine("event=exit worker=1 "); !strings.HasSuffix(got, "after_disconnect=true cause=clean") {
		t.Errorf("exit on SIGTERM: %s", got)
	}
	c.WaitLine("event=done")
	c.WaitExit(0)
}

func TestConsoleExecOtherProgram(t *testing.T) {
	// A worker that is not a herd program: it never comes online, and its
	// failure does not stop the console.
	c := start(t, "-workers", "1", "-exec", "/bin/sh", "--", "-c", "exit 3")
	c.WaitLine("event=fork worker=1 ")
	if got := c.WaitLine("event=exit worker=1 "); !strings.HasSuffix(got, "code=3 signal= after_disconnect=false cause=error") {
		t.Errorf("exit: %s", got)
	}
	c.Send("fork")
	c.WaitLine("event=exit worker=2 ")
	c.Send("quit")
	c.WaitLine("event=done")
	c.WaitExit(0)
}

func TestConsoleBadExec(t *testing.T) {
	c := start(t, "-workers", "1", "-exec", "/nonexistent/worker")
	if got := c.WaitLine("event=error "); !strings.Contains(got, "no such file") {
		t.Errorf("error line: %s", got)
	}
	c.Send("quit")
	c.WaitLine("event=done")
	c.WaitExit(0)
}
