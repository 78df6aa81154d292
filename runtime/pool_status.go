package runtime

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
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
	ps.ResourcesNote = procUsageNote
	for _, e := range entries {
		if w := e.w; w != nil {
			if r, err := readProcUsage(w.pid); err == nil {
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

// procUsage is what Status reads of a process in /proc/PID/stat.
type procUsage struct {
	rss uint64        // bytes
	cpu time.Duration // utime + stime
}

// errProcUsage is wrapped by parseProcUsage's errors.
var errProcUsage = errors.New("herd: malformed /proc/PID/stat")

// parseProcUsage decodes the contents of /proc/PID/stat (proc(5)): the
// command name in parentheses may hold spaces and parentheses, so the
// fields are counted after the last ')'. utime and stime (fields 14 and
// 15) are in clock ticks of userHZ; rss (field 24) is in pages of
// pageSize bytes.
func parseProcUsage(b []byte, pageSize int) (procUsage, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procUsage{}, fmt.Errorf("%w: no ')' after the command name", errProcUsage)
	}
	// Field 3 (state) is the first after ") ".
	fields := bytes.Fields(b[i+1:])
	const first = 3
	const utime, stime, rss = 14, 15, 24
	if len(fields) < rss-first+1 {
		return procUsage{}, fmt.Errorf("%w: %d fields after the command name, want at least %d", errProcUsage, len(fields), rss-first+1)
	}
	num := func(field int) (uint64, error) {
		s := string(fields[field-first])
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			// rss can be negative in theory (a signed long); treat as 0.
			if n, err2 := strconv.ParseInt(s, 10, 64); err2 == nil && n < 0 {
				return 0, nil
			}
			return 0, fmt.Errorf("%w: field %d %q: %w", errProcUsage, field, s, err)
		}
		return v, nil
	}
	u, err := num(utime)
	if err != nil {
		return procUsage{}, err
	}
	st, err := num(stime)
	if err != nil {
		return procUsage{}, err
	}
	pages, err := num(rss)
	if err != nil {
		return procUsage{}, err
	}
	const maxTicks = uint64(1<<63-1) / uint64(time.Second/userHZ)
	ticks := u + st
	if ticks < u || ticks > maxTicks {
		return procUsage{}, fmt.Errorf("%w: CPU ticks %d+%d overflow", errProcUsage, u, st)
	}
	return procUsage{rss: pages * uint64(pageSize), cpu: time.Duration(ticks) * (time.Second / userHZ)}, nil
}

// userHZ is the unit of the times in /proc/PID/stat: USER_HZ, which Linux
// fixes at 100 for user space whatever the kernel's own HZ.
const userHZ = 100
