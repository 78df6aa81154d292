package runtime

import (
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// Exit causes.
//
// A worker's exit event says why it exited (herd.v1.ExitCause). The
// Worker knows what the primary did to it (exitCause); a Pool adds what
// only it knows (classifyExit): a boot failure, a recycled or reloaded
// worker's clean exit. The order below is the order of precedence: the
// primary's own reasons to kill a worker first, then the kernel's (OOM),
// then the status.

// exitCause classifies an exit from its status and what the primary did.
func (w *Worker) exitCause(code int, sig string) herdv1.ExitCause {
	switch {
	case w.watchdogFired.Load():
		// Whatever the status: a Go worker dumps its goroutines on the
		// watchdog's SIGQUIT and exits with status 2, or the watchdog's
		// SIGKILL ends it.
		return herdv1.ExitCause_EXIT_CAUSE_WATCHDOG
	case sig != "" && w.helloExpired.Load():
		return herdv1.ExitCause_EXIT_CAUSE_HELLO_TIMEOUT
	case sig != "" && w.readyExpired.Load():
		return herdv1.ExitCause_EXIT_CAUSE_READY_TIMEOUT
	case sig != "" && w.killed.Load():
		return herdv1.ExitCause_EXIT_CAUSE_KILLED
	case sig == "SIGKILL" && w.oom.killed():
		return herdv1.ExitCause_EXIT_CAUSE_OOM
	case sig != "":
		return herdv1.ExitCause_EXIT_CAUSE_SIGNAL
	case code == 0:
		return herdv1.ExitCause_EXIT_CAUSE_CLEAN
	default:
		return herdv1.ExitCause_EXIT_CAUSE_ERROR
	}
}

// exitUsage fills the exit event's uptime and resource usage.
func (w *Worker) exitUsage(ev *herdv1.ExitEvent) {
	if !w.started.IsZero() {
		ev.Uptime = durationpb.New(time.Since(w.started))
	}
	if cpu, rss, ok := processUsage(w.cmd.ProcessState); ok {
		ev.CpuTime = durationpb.New(cpu)
		ev.MaxRssBytes = rss
	}
}

// oomWatch tells whether the kernel's OOM killer killed a worker: the
// oom_kill count of the worker's memory cgroup (cgroup v2 memory.events,
// v1 memory.oom_control), or the kernel's (/proc/vmstat) when the worker is
// in no memory cgroup of its own, went up between the fork (or its online
// event: a worker may move itself into a cgroup as it starts) and its exit
// by SIGKILL that the primary did not send. Another process of the same
// cgroup killed by the OOM killer while the worker died of someone's
// SIGKILL would be taken for the worker's; a worker alone in its cgroup is
// never mistaken.
type oomWatch struct {
	mu   sync.Mutex
	file string // the counter's file; "" when none could be read
	key  string // the counter's name in it
	base uint64 // its value when armed
}

// arm reads pid's cgroup and the count of OOM kills now.
func (o *oomWatch) arm(pid int) {
	file, key := oomCounterFile(pid)
	n, ok := readOOMCounter(file, key)
	o.mu.Lock()
	defer o.mu.Unlock()
	if !ok {
		o.file = ""
		return
	}
	o.file, o.key, o.base = file, key, n
}

// killed reports whether the count went up since arm.
func (o *oomWatch) killed() bool {
	o.mu.Lock()
	file, key, base := o.file, o.key, o.base
	o.mu.Unlock()
	if file == "" {
		return false
	}
	n, ok := readOOMCounter(file, key)
	return ok && n > base
}

// classifyExit adds to m's exit event what only the pool knows, on the
// worker's supervising goroutine before the event is delivered: a worker
// that failed before it was ready is a boot failure; one that exited
// cleanly after the pool recycled it, or a reload replaced it, says so;
// and the watchdog's diagnostics.
func (pl *Pool) classifyExit(m *member, w *Worker, ev *herdv1.ExitEvent) {
	pl.mu.Lock()
	ready, retiring, reason, diag := m.isReady, m.retiring, m.retire, m.diag
	stopping := pl.stopping
	pl.mu.Unlock()
	if diag != "" {
		if w.tail != nil {
			if dump := w.tail.captured(); dump != "" {
				diag += "\n" + dump
			}
		}
		ev.Diagnostics = diag
	}
	switch ev.GetCause() {
	case herdv1.ExitCause_EXIT_CAUSE_CLEAN:
		switch reason {
		case retireRecycle:
			ev.Cause = herdv1.ExitCause_EXIT_CAUSE_RECYCLED
			return
		case retireReload:
			ev.Cause = herdv1.ExitCause_EXIT_CAUSE_RELOADED
			return
		}
		fallthrough
	case herdv1.ExitCause_EXIT_CAUSE_ERROR, herdv1.ExitCause_EXIT_CAUSE_SIGNAL:
		if !ready && !retiring && !stopping && !w.asked.Load() {
			ev.Cause = herdv1.ExitCause_EXIT_CAUSE_BOOT_FAILURE
		}
	}
}
