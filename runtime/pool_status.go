package runtime

import (
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// PoolStatus is a snapshot of a pool (Pool.Status), for operators: herdctl
// status shows it, and a metrics exporter may read it as often as it
// likes (it takes the pool's lock briefly and reads /proc once per worker).
type PoolStatus struct {
	// Size is the number of slots.
	Size int
	// Stopping is true once the pool has started to stop.
	Stopping bool
	// Workers has one entry per slot, in slot order, and one more right
	// after a slot's entry for a reload's or recycle's replacement that is
	// not ready yet.
	Workers []WorkerStatus
	// ResourcesNote says why RSS and CPUTime are zero on this system (the
	// primary reads them from /proc, on Linux); empty where they are read.
	ResourcesNote string
}

// WorkerStatus is one slot's worker in a PoolStatus. A slot without a
// worker (its restart pending, or failed) has ID 0 and State "restarting"
// or "failed".
type WorkerStatus struct {
	// Slot is the slot, from 0.
	Slot int
	// ID and PID identify the worker.
	ID  uint64
	PID int
	// State is the worker's state ("none", "online", "listening",
	// "disconnected", "dead"; "forking" while its fork is under way), or
	// the slot's when it has no worker ("restarting", "failed").
	State string
	// Ready is true once the pool counts the worker as ready.
	Ready bool
	// Replacement is true for a reload's or recycle's replacement that is
	// not ready yet (the slot's worker is the entry before it).
	Replacement bool
	// Uptime is how long ago the worker was forked.
	Uptime time.Duration
	// Restarts counts the slot's restarts (a worker that died replaced)
	// since the pool started.
	Restarts int
	// LastExit is the exit of the slot's previous worker, nil when it has
	// had none.
	LastExit *herdv1.ExitEvent
	// RSS is the worker's resident set size in bytes, CPUTime the CPU time
	// it used (user and system), read from /proc/PID/stat; zero where
	// PoolStatus.ResourcesNote says why.
	RSS     uint64
	CPUTime time.Duration
	// Connections counts the connections the primary handed to the worker
	// that its server accepted, on the round-robin listeners it still has
	// (with shared and reuseport listeners the worker accepts itself, and
	// the primary does not see them).
	Connections uint64
	// MailboxDepth is how many of the worker's messages wait in the
	// primary's mailbox for their handlers (both lanes).
	MailboxDepth int
}

// slotStat is what a slot remembers for Status across its workers.
type slotStat struct {
	restarts int
	lastExit *herdv1.ExitEvent
}

// Status returns a snapshot of the pool: per slot, its worker's ID, PID,
// state, readiness, uptime, the slot's restarts and last exit, the
// worker's RSS and CPU time, the connections it accepted and its mailbox
// depth.
func (pl *Pool) Status() PoolStatus {
	type entry struct {
		st WorkerStatus
		w  *Worker // nil for an empty slot, or a worker still forking
	}
	now := pl.cfg.clock.Now()
	pl.mu.Lock()
	ps := PoolStatus{Size: len(pl.slots), Stopping: pl.stopping}
	var entries []entry
	for _, s := range pl.slots {
		base := WorkerStatus{Slot: s.index, Restarts: s.stat.restarts, LastExit: s.stat.lastExit}
		switch {
		case s.cur != nil:
			entries = append(entries, entry{memberStatus(base, s.cur, now), s.cur.w})
		case s.failed:
			base.State = "failed"
			entries = append(entries, entry{st: base})
		default:
			base.State = "restarting"
			entries = append(entries, entry{st: base})
		}
		if s.next != nil {
			st := memberStatus(base, s.next, now)
			st.Replacement = !s.next.isReady
			entries = append(entries, entry{st, s.next.w})
		}
	}
	pl.mu.Unlock()
	ps.ResourcesNote = procStatNote
	for _, e := range entries {
		if w := e.w; w != nil {
			if r, err := readProcStat(w.pid); err == nil {
				e.st.RSS, e.st.CPUTime = r.rss, r.cpu
			}
			e.st.Connections = pl.p.ports.acceptedBy(w)
			ls := w.Stats()
			e.st.MailboxDepth = ls.MailboxUser + ls.MailboxSystem
		}
		ps.Workers = append(ps.Workers, e.st)
	}
	return ps
}

// memberStatus fills base with m's state; called with pl.mu held.
func memberStatus(base WorkerStatus, m *member, now time.Time) WorkerStatus {
	base.Ready = m.isReady && !m.isDead
	base.Uptime = now.Sub(m.started)
	if m.w == nil {
		base.State = "forking"
		return base
	}
	base.ID, base.PID = m.w.id, m.w.pid
	base.State = m.w.State().String()
	return base
}
