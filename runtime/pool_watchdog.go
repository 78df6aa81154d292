package runtime

import (
	"fmt"
	"syscall"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// The watchdog's defaults (gunicorn's timeout; see
// ../shared/reference/supervision.md).
const (
	// DefaultWatchdogTimeout is how long a worker may leave heartbeats
	// unanswered before the watchdog kills it; heartbeats go every half of
	// it.
	DefaultWatchdogTimeout = 30 * time.Second
	// DefaultWatchdogDumpWait bounds the wait for a hung Go worker's
	// goroutine dump (its exit after SIGQUIT) before SIGKILL.
	DefaultWatchdogDumpWait = 5 * time.Second
	// DefaultWatchdogDumpBytes bounds the dump kept for the exit event.
	DefaultWatchdogDumpBytes = 256 << 10
)

// WithWatchdog sets the watchdog's timeout: every timeout/2 the pool sends
// each online worker a heartbeat, which the worker answers on its user
// lane, behind the messages it already received, so an answer proves that
// its link reader and its handlers make progress. A worker that answered
// none for timeout (its handlers deadlocked or spinning, stopped by
// SIGSTOP, its link reader stuck) is killed, after a goroutine dump
// (WithWatchdogDump), with exit cause EXIT_CAUSE_WATCHDOG; the pool then
// replaces it as any failed worker. A worker that is disconnecting is not
// watched (its disconnect's deadline bounds it). Default 30 s; 0 disables
// the watchdog.
//
// A handler of the worker's that runs longer than timeout holds the
// heartbeats behind it, and is taken for a hung worker: give the watchdog
// a timeout above the longest handler.
func WithWatchdog(timeout time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.watchdog, c.watchdogSet = max(timeout, 0), true })
}

// WithWatchdogDump sets how the watchdog collects a hung worker's
// goroutine dump before it kills it: it sends SIGQUIT (a Go program then
// writes every goroutine's stack to stderr and exits with status 2), waits
// at most wait for the exit, keeps up to maxBytes of what the worker wrote
// to stderr meanwhile for the exit event's diagnostics (the output still
// reaches the primary's stderr), then sends SIGKILL if the worker still
// runs. A worker stopped by SIGSTOP gets SIGCONT after the SIGQUIT, so
// that it can write its dump. The dump needs the pool to keep the worker's
// stderr (not WithStderrTail(-1), not a silent primary). Defaults 5 s and
// 256 KiB; a negative wait kills at once, with no dump.
func WithWatchdogDump(wait time.Duration, maxBytes int) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.dumpWait, c.dumpBytes, c.dumpSet = wait, maxBytes, true })
}

// watchdog is a member's heartbeat state, under the pool's lock.
type watchdog struct {
	seq      uint64      // heartbeats sent
	answered uint64      // heartbeats answered
	last     time.Time   // the last answer (or the start), on the pool's clock
	tick     time.Time   // the last tick (or the start)
	inflight bool        // a heartbeat waits for its answer
	stop     func() bool // cancels the next tick
	fired    bool
}

// startHeartbeats starts watching m once it is online.
func (pl *Pool) startHeartbeats(m *member) {
	if pl.cfg.watchdog <= 0 {
		return
	}
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if m.isDead || m.wd != nil {
		return
	}
	now := pl.cfg.clock.Now()
	m.wd = &watchdog{last: now, tick: now}
	pl.armWatchdogLocked(m)
}

func (pl *Pool) armWatchdogLocked(m *member) {
	m.wd.stop = pl.cfg.clock.AfterFunc(pl.cfg.watchdog/2, func() { pl.watchdogTick(m) })
}

// stopWatchdogLocked stops watching m (it exited).
func (pl *Pool) stopWatchdogLocked(m *member) {
	if m.wd != nil && m.wd.stop != nil {
		m.wd.stop()
		m.wd.stop = nil
	}
}

// watchdogTick runs every timeout/2: a worker that has answered nothing
// for the timeout while a heartbeat waits for its answer (sent a tick ago
// at least) is hung; otherwise a heartbeat goes, unless one still waits.
func (pl *Pool) watchdogTick(m *member) {
	pl.mu.Lock()
	wd, w := m.wd, m.w
	if m.isDead || wd.fired || wd.stop == nil || w.disconnecting.Load() || w.IsDead() {
		pl.mu.Unlock()
		return
	}
	now := pl.cfg.clock.Now()
	// A tick much later than due means the primary itself did not run
	// (its process stopped, the machine suspended): the worker's silence
	// is then no evidence, and no worker is judged on this tick.
	late := now.Sub(wd.tick) > pl.cfg.watchdog*3/4
	wd.tick = now
	if silent := now.Sub(wd.last); wd.inflight && !late && silent >= pl.cfg.watchdog {
		wd.fired = true
		wd.stop = nil
		answered := wd.answered
		pl.mu.Unlock()
		pl.hung(m, silent, answered)
		return
	}
	send := !wd.inflight
	if send {
		wd.inflight = true
		wd.seq++
	}
	seq := wd.seq
	pl.armWatchdogLocked(m)
	pl.mu.Unlock()
	if send {
		go pl.heartbeat(m, seq)
	}
}

// heartbeat sends one heartbeat and records its answer. It waits as long
// as the worker lives: the watchdog's clock, not this call, decides when
// the worker is hung.
func (pl *Pool) heartbeat(m *member, seq uint64) {
	w := m.w
	// Ordered (credited) traffic: the worker answers on its user lane
	// (controlLanes).
	res, err := w.rpc.Heartbeat(w.handlerCtx, &herdv1.HeartbeatRequest{Seq: seq})
	pl.mu.Lock()
	m.wd.inflight = false
	ok := err == nil && res.GetSeq() == seq
	if ok {
		m.wd.answered++
		m.wd.last = pl.cfg.clock.Now()
	}
	pl.mu.Unlock()
	if ok && pl.cfg.heartbeatHook != nil {
		pl.cfg.heartbeatHook(w.id, seq)
	}
}

// hung ends a worker the watchdog found silent: it stops routing to it,
// collects a goroutine dump (SIGQUIT, and SIGCONT to a stopped worker),
// then kills it. The exit event carries the diagnostics (classifyExit).
func (pl *Pool) hung(m *member, silent time.Duration, answered uint64) {
	w := m.w
	w.watchdogFired.Store(true)
	w.primary.ports.stopRouting(w)
	state := processState(w.pid)
	diag := fmt.Sprintf("herd: watchdog: worker %d (pid %d) answered no heartbeat for %v (timeout %v, %d answered before)",
		w.id, w.pid, silent, pl.cfg.watchdog, answered)
	if state != "" {
		diag += "; process state " + state
	}
	dump := pl.cfg.dumpWait >= 0 && w.tail != nil
	switch {
	case dump && isStopped(state):
		diag += "; sent SIGQUIT, then SIGCONT so that it could write its goroutine dump:"
	case dump:
		diag += "; sent SIGQUIT for its goroutine dump:"
	case pl.cfg.dumpWait < 0:
		diag += "; killed without a dump (WithWatchdogDump)"
	default:
		diag += "; killed without a dump: the pool does not keep its stderr (WithStderrTail(-1), or a silent primary)"
	}
	pl.mu.Lock()
	m.diag = diag
	pl.mu.Unlock()
	pl.log.Error("herd: pool: worker hung; killing it", "worker", w.id, "pid", w.pid, "silent", silent, "state", state)
	if dump {
		w.tail.capture(pl.cfg.dumpBytes)
		_ = w.cmd.Process.Signal(syscall.SIGQUIT)
		if isStopped(state) {
			// A stopped process takes SIGQUIT only once continued. It
			// is killed right after its dump anyway.
			_ = w.cmd.Process.Signal(sigCont)
		}
		if pl.waitExit(w, pl.cfg.dumpWait, nil) {
			return
		}
		pl.mu.Lock()
		m.diag = diag + fmt.Sprintf("\n(still running %v after SIGQUIT: SIGKILL)", pl.cfg.dumpWait)
		pl.mu.Unlock()
	}
	_ = w.cmd.Process.Signal(syscall.SIGKILL)
}
