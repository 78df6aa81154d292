package runtime

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
)

// poolNotify is what a pool tells systemd (sd_notify(3)) when its primary
// runs as a service of Type=notify or notify-reload: READY=1 once every
// initial slot has a ready worker, STATUS= with a one-line summary whenever
// it changes, RELOADING=1 and READY=1 around a reload, STOPPING=1 when a
// graceful stop begins, and WATCHDOG=1 every half of WATCHDOG_USEC while
// the pool is healthy. Every notification goes through mu, so that two
// workers' drainers never send their summaries out of order.
type poolNotify struct {
	once   sync.Once
	n      *Notifier
	mu     sync.Mutex
	ready  bool      // READY=1 sent
	status string    // the last STATUS= sent
	phase  poolPhase // the phase of the last RELOADING=1 or READY=1
	cancel func()    // ends the watchdog pinger
}

// notifier returns the pool's Notifier, made on first use (NOTIFY_SOCKET is
// read then).
func (pl *Pool) notifier() *Notifier {
	pl.sd.once.Do(func() { pl.sd.n = NewNotifier(pl.log) })
	return pl.sd.n
}

// poolPhase is what the pool as a whole is doing, for its summary.
type poolPhase int

const (
	phaseRunning poolPhase = iota
	phaseReloading
	phaseDraining
	phaseStopping
)

// summaryLocked is the pool's one-line summary: "4/4 workers ready, 0
// restarting", with ", N starting" (booting workers) and ", N failed"
// (slots past their restart intensity) when there are any, and the phase
// first ("reloading: ", "draining: ", "stopping: ") when not plain running.
// pl.mu is held.
func (pl *Pool) summaryLocked(phase poolPhase) string {
	var ready, restarting, starting, failed int
	for _, s := range pl.slots {
		switch {
		case s.failed:
			failed++
		case s.cur != nil && s.cur.isReady && !s.cur.isDead:
			ready++
		case s.cur != nil && !s.cur.isDead:
			starting++
		default:
			restarting++ // its worker died; a replacement is due
		}
	}
	var b strings.Builder
	switch {
	case phase == phaseStopping || pl.stopping:
		b.WriteString("stopping: ")
	case phase == phaseDraining || pl.draining:
		b.WriteString("draining: ")
	case phase == phaseReloading:
		b.WriteString("reloading: ")
	}
	fmt.Fprintf(&b, "%d/%d workers ready, %d restarting", ready, len(pl.slots), restarting)
	if starting > 0 {
		fmt.Fprintf(&b, ", %d starting", starting)
	}
	if failed > 0 {
		fmt.Fprintf(&b, ", %d failed", failed)
	}
	return b.String()
}

// allReadyLocked reports whether every slot has a ready worker.
func (pl *Pool) allReadyLocked() bool {
	for _, s := range pl.slots {
		if s.cur == nil || !s.cur.isReady || s.cur.isDead {
			return false
		}
	}
	return len(pl.slots) > 0
}

// notifyState tells systemd what changed after one of the pool's events:
// READY=1 (with MAINPID and the summary) the first time every slot has a
// ready worker, else STATUS= when the summary changed. It sends nothing when
// NOTIFY_SOCKET is unset.
func (pl *Pool) notifyState() {
	n := pl.notifier()
	if !n.Enabled() {
		return
	}
	pl.sd.mu.Lock()
	defer pl.sd.mu.Unlock()
	pl.mu.Lock()
	status := pl.summaryLocked(pl.sd.phase)
	ready := !pl.sd.ready && !pl.stopping && !pl.draining && pl.allReadyLocked()
	pl.mu.Unlock()
	switch {
	case ready:
		pl.sd.ready = true
		pl.sd.status = status
		// MAINPID: the primary is the service's main process. It is
		// systemd's word already when systemd started the primary
		// itself, as Type=notify expects; when a wrapper started it
		// (and NotifyAccess=all lets it speak), systemd follows the
		// primary from here on.
		_ = n.Notify(NotifyReady, NotifyMainPID(os.Getpid()), NotifyStatus(status))
	case status != pl.sd.status:
		pl.sd.status = status
		_ = n.Notify(NotifyStatus(status))
	}
}

// notifyPhase sends state (RELOADING=1, READY=1 or STOPPING=1) with the
// summary for phase. Once a stop has begun only STOPPING=1 is sent: a
// reload that ends during the stop does not say READY=1 again.
func (pl *Pool) notifyPhase(phase poolPhase, state ...string) {
	n := pl.notifier()
	if !n.Enabled() {
		return
	}
	pl.sd.mu.Lock()
	defer pl.sd.mu.Unlock()
	pl.mu.Lock()
	status := pl.summaryLocked(phase)
	stopping := pl.stopping || pl.draining
	pl.mu.Unlock()
	if stopping && phase != phaseStopping && phase != phaseDraining {
		return // a reload's end after the stop began: STOPPING=1 stands
	}
	pl.sd.status = status
	pl.sd.phase = phase
	for _, s := range state {
		if s == NotifyReady {
			pl.sd.ready = true
		}
	}
	switch {
	case phase == phaseReloading:
		_ = n.Reloading(status)
	default:
		_ = n.Notify(append(state, NotifyStatus(status))...)
	}
}

// healthy is the pool's health for systemd's watchdog: the pool runs (not
// ended), and no slot has failed, so that every slot has a ready worker, or
// one booting (bounded by the ready timeout), or a restart due within its
// restart intensity. A slot past its intensity makes the pool unhealthy: the
// pings stop, systemd's watchdog expires and systemd restarts the whole
// service (Restart=on-failure or on-watchdog). A pool that is draining or
// stopping stays healthy: its stop is bounded by its own timeouts. healthy
// takes the pool's lock, so a primary stuck holding it stops the pings too.
func (pl *Pool) healthy() bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.ended || !pl.started {
		return false
	}
	for _, s := range pl.slots {
		if s.failed {
			return false
		}
	}
	return true
}

// startWatchdog starts pinging systemd's watchdog while the pool is
// healthy, when WATCHDOG_USEC (and WATCHDOG_PID, if set) enable it for this
// process; the pinger ends with the pool.
func (pl *Pool) startWatchdog() {
	d, ok := WatchdogInterval(pl.log)
	if !ok || !pl.notifier().Enabled() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	pl.sd.mu.Lock()
	pl.sd.cancel = cancel
	pl.sd.mu.Unlock()
	go pl.notifier().runWatchdog(ctx, d, pl.healthy)
}

// stopWatchdog ends the pinger, if any.
func (pl *Pool) stopWatchdog() {
	pl.sd.mu.Lock()
	cancel := pl.sd.cancel
	pl.sd.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}
