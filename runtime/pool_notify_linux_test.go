//go:build linux

package runtime_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/herd-go/herd/runtime"
)

// nextState returns the next notification that is not a STATUS= update
// alone, and the STATUS= lines seen before it (its own included, last).
func (s *notifySocket) nextState() (string, []string) {
	s.t.Helper()
	var statuses []string
	for {
		got := s.next()
		if st, ok := strings.CutPrefix(got, "STATUS="); ok && strings.Count(got, "\n") == 1 {
			statuses = append(statuses, strings.TrimSuffix(st, "\n"))
			continue
		}
		for _, l := range strings.Split(strings.TrimSuffix(got, "\n"), "\n") {
			if st, ok := strings.CutPrefix(l, "STATUS="); ok {
				statuses = append(statuses, st)
			}
		}
		return got, statuses
	}
}

// waitStatus reads notifications until one says STATUS=want, and returns
// the ones before it.
func (s *notifySocket) waitStatus(want string) []string {
	s.t.Helper()
	var seen []string
	for {
		got := s.next()
		if strings.Contains(got, "STATUS="+want+"\n") {
			return seen
		}
		seen = append(seen, got)
	}
}

// TestPoolReloadNotifiesSystemd: a reload tells systemd RELOADING=1 (with
// MONOTONIC_USEC) when it starts and READY=1 when it has ended, as
// Type=notify-reload expects.
func TestPoolReloadNotifiesSystemd(t *testing.T) {
	sock := newNotifySocket(t, filepath.Join(t.TempDir(), "notify"))
	c, pl := newPool(t, "idle", runtime.WithPoolSize(1), runtime.WithReadiness(runtime.ReadyOnOnline))
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	if got, _ := sock.nextState(); !strings.HasPrefix(got, "READY=1\n") {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if err := pl.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _ := sock.nextState()
	if !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") || !strings.HasSuffix(got, "\nSTATUS=reloading: 1/1 workers ready, 0 restarting\n") {
		t.Errorf("notification %q, want RELOADING=1 with MONOTONIC_USEC and the status", got)
	}
	got, statuses := sock.nextState()
	if got != "READY=1\nSTATUS=1/1 workers ready, 0 restarting\n" {
		t.Errorf("notification %q, want READY=1 with the status", got)
	}
	for _, st := range statuses[:len(statuses)-1] {
		if !strings.HasPrefix(st, "reloading: ") {
			t.Errorf("status %q during the reload", st)
		}
	}
}

// TestPoolNotifiesReadyAndStatus: the pool sends READY=1 (with MAINPID and
// its summary) once every slot has a ready worker, and before that only
// STATUS= updates; a worker's death and replacement show in STATUS=, and a
// graceful stop sends STOPPING=1.
func TestPoolNotifiesReadyAndStatus(t *testing.T) {
	sock := newNotifySocket(t, filepath.Join(t.TempDir(), "notify"))
	clk := newFakeClock(0) // restarts wait for Advance
	c, pl := newPool(t, "idle", runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithClock(clk), runtime.WithStopTimeouts(time.Hour, time.Hour))
	startPool(t, pl)
	got, statuses := sock.nextState()
	want := "READY=1\nMAINPID=" + strconv.Itoa(os.Getpid()) + "\nSTATUS=2/2 workers ready, 0 restarting\n"
	if got != want {
		t.Fatalf("notification %q, want %q", got, want)
	}
	for _, st := range statuses[:len(statuses)-1] {
		if strings.HasPrefix(st, "2/2 workers ready") {
			t.Errorf("status %q before READY=1", st)
		}
	}
	c.rec.waitFor("ready 1 ")
	c.rec.waitFor("ready 2 ")

	w1, _ := c.p.Worker(1)
	syscall.Kill(w1.PID(), syscall.SIGKILL)
	sock.waitStatus("1/2 workers ready, 1 restarting")
	c.rec.waitFor("restart 1 slot=0 attempt=1")
	// The restart's timer is set just after its event: move the clock
	// until the replacement forks.
	for deadline := time.Now().Add(waitLimit); c.rec.count("fork 3") == 0; {
		if time.Now().After(deadline) {
			t.Fatalf("no fork of the replacement: %q", c.rec.all())
		}
		clk.Advance(time.Second)
		select {
		case <-c.rec.notify:
		case <-time.After(10 * time.Millisecond):
		}
	}
	c.rec.waitFor("ready 3 slot=0")
	sock.waitStatus("2/2 workers ready, 0 restarting")

	if err := pl.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, _ := sock.nextState(); got != "STOPPING=1\nSTATUS=stopping: 2/2 workers ready, 0 restarting\n" {
		t.Errorf("notification %q, want STOPPING=1 with the status", got)
	}
}

// TestPoolWatchdog: with WATCHDOG_USEC set, the pool pings WATCHDOG=1 while
// it is healthy, and stops once a slot has failed (more restarts than its
// intensity allows), so that systemd restarts the service.
func TestPoolWatchdog(t *testing.T) {
	sock := newNotifySocket(t, filepath.Join(t.TempDir(), "notify"))
	const interval = 10 * time.Millisecond // a ping every 10 ms
	t.Setenv(runtime.EnvWatchdogUSec, strconv.Itoa(int(2*interval/time.Microsecond)))
	t.Setenv(runtime.EnvWatchdogPID, strconv.Itoa(os.Getpid()))
	// Read every notification as it comes (a full queue would hold the
	// sender back).
	notes := make(chan string, 10000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.conn.Read(buf)
			if err != nil {
				close(notes)
				return
			}
			notes <- string(buf[:n])
		}
	}()
	sock.conn.SetReadDeadline(time.Time{})
	clk := newFakeClock(time.Minute) // restarts at once
	c, pl := newPool(t, "idle", runtime.WithPoolSize(2), runtime.WithReadiness(runtime.ReadyOnOnline),
		runtime.WithClock(clk), runtime.WithStopTimeouts(time.Hour, time.Hour), runtime.WithRestartIntensity(1, time.Hour))
	if pl.Healthy() {
		t.Error("healthy before Start")
	}
	startPool(t, pl)
	c.rec.waitFor("ready 1 ")
	c.rec.waitFor("ready 2 ")
	if !pl.Healthy() {
		t.Error("not healthy with its workers ready")
	}
	waitNote := func(want string) {
		t.Helper()
		for n := range notes {
			if strings.Contains(n, want) {
				return
			}
		}
		t.Fatalf("no notification %q", want)
	}
	waitNote("READY=1\n")
	waitNote("WATCHDOG=1\n")

	// Slot 0: a restart is within its intensity, a second one is not.
	w1, _ := c.p.Worker(1)
	syscall.Kill(w1.PID(), syscall.SIGKILL)
	c.rec.waitFor("ready 3 slot=0")
	if !pl.Healthy() {
		t.Error("not healthy after a restart within the intensity")
	}
	w3, _ := c.p.Worker(3)
	syscall.Kill(w3.PID(), syscall.SIGKILL)
	c.rec.waitFor("slotfailed 3 slot=0")
	if pl.Healthy() {
		t.Error("healthy with a failed slot")
	}
	waitNote("STATUS=1/2 workers ready, 0 restarting, 1 failed\n")
	// A ping whose health check came just before the failure may still
	// arrive; then none does, for a hundred intervals (a loaded machine
	// that sends fewer pings only makes this weaker, never wrong).
	pings := 0
	timeout := time.After(100 * interval)
	for done := false; !done; {
		select {
		case n := <-notes:
			if n == "WATCHDOG=1\n" {
				pings++
			}
		case <-timeout:
			done = true
		}
	}
	if pings > 1 {
		t.Errorf("%d pings after the slot failed", pings)
	}
}
