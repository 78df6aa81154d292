package runtime

import (
	"context"
	"fmt"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// ReloadError says where a rolling reload stopped and why. The workers of
// the slots before Slot were replaced and stay; Slot's and those after it
// kept their workers.
type ReloadError struct {
	// Slot is the slot whose replacement failed.
	Slot int
	// Worker is the replacement's ID, 0 when its fork failed.
	Worker uint64
	// Err says why.
	Err error
}

func (e *ReloadError) Error() string {
	return fmt.Sprintf("herd: pool: reload aborted at slot %d (replacement worker %d): %v", e.Slot, e.Worker, e.Err)
}

func (e *ReloadError) Unwrap() error { return e.Err }

// Reload replaces every worker of the pool, one slot at a time, with at
// most one extra worker and never one ready worker fewer (max surge 1, max
// unavailable 0): it forks the slot's replacement, which execs the program
// as it is on disk now, waits until it is ready, then disconnects the old
// worker gracefully (routing to it stops at once, its listeners close, its
// drain hooks run; SIGKILL after the graceful timeout) and waits for its
// exit before the next slot. A slot whose worker is waiting for a restart,
// or failed, gets the replacement directly.
//
// A replacement that exits, or is not ready within the ready timeout, or
// ctx ending, aborts the reload: the replacement goes, the workers not yet
// replaced keep serving, the ones already replaced stay, and Reload returns
// a *ReloadError naming the slot and why (and a ReloadAborted event says
// so). One reload runs at a time; a second call waits for the first.
// ReloadStarted and ReloadFinished events frame a reload that succeeds.
func (pl *Pool) Reload(ctx context.Context) error {
	pl.reloadMu.Lock()
	defer pl.reloadMu.Unlock()
	return pl.reloadLocked(ctx)
}

// reloadLocked is Reload, with reloadMu held.
func (pl *Pool) reloadLocked(ctx context.Context) error {
	pl.mu.Lock()
	if pl.stopping || pl.draining || !pl.started {
		pl.mu.Unlock()
		return ErrPoolStopped
	}
	slots := append([]*slot(nil), pl.slots...)
	var old []uint64
	for _, s := range slots {
		if s.cur != nil && s.cur.w != nil {
			old = append(old, s.cur.w.id)
		}
	}
	pl.mu.Unlock()
	// systemd (Type=notify-reload): RELOADING=1 now, READY=1 when the
	// reload has ended, also when it aborted (the old workers still serve).
	pl.notifyPhase(phaseReloading)
	defer pl.notifyPhase(phaseRunning, NotifyReady)
	pl.emitPool(ctx, eventReloadStartedProcedure, &herdv1.ReloadStartedEvent{Workers: old})

	var fresh []uint64
	for _, s := range slots {
		id, err := pl.reloadSlot(ctx, s)
		if err != nil {
			return err
		}
		if id != 0 {
			fresh = append(fresh, id)
		}
	}
	pl.emitPool(ctx, eventReloadFinishedProcedure, &herdv1.ReloadFinishedEvent{Workers: fresh})
	return nil
}

// reloadSlot replaces s's worker and returns the replacement's ID (0 when
// the slot went away meanwhile).
func (pl *Pool) reloadSlot(ctx context.Context, s *slot) (uint64, error) {
	m, err := pl.replaceSlot(ctx, s, retireReload, nil)
	if err != nil {
		return 0, pl.abortReload(ctx, s, m, err)
	}
	if m == nil {
		return 0, nil
	}
	return m.w.id, nil
}

// replaceSlot replaces s's worker by the rolling path: it forks the
// replacement, waits until it is ready, puts it in the slot, then (after
// announce, when given) disconnects the old worker gracefully, reason
// saying why, and waits for its exit. It returns the replacement, or nil
// when the slot went away or the pool began to stop meanwhile (the scale
// or the stop takes care of the replacement). When the fork fails or the
// replacement is not ready, it returns why, with the replacement (nil when
// the fork failed), which the caller must retire (dropReplacement).
func (pl *Pool) replaceSlot(ctx context.Context, s *slot, reason retireReason, announce func(old, m *member)) (*member, error) {
	m, err := pl.forkInto(ctx, s, true)
	if err != nil {
		pl.mu.Lock()
		removed := s.removed
		pl.mu.Unlock()
		if removed {
			return nil, nil
		}
		return nil, fmt.Errorf("fork: %w", err)
	}
	select {
	case <-m.ready:
	case <-m.dead:
	case <-ctx.Done():
	}
	pl.mu.Lock()
	ok := m.isReady && !m.isDead
	dead, exit := m.isDead, m.exit
	var old *member
	if ok {
		if s.removed || pl.stopping {
			// Scaled down or stopping meanwhile: the scale or the stop
			// takes care of m (it was s.next).
			pl.mu.Unlock()
			return nil, nil
		}
		old = s.cur
		s.next, s.cur = nil, m
		s.failed = false
		if s.cancel != nil {
			s.cancel() // a pending restart: m takes its place
			s.cancel = nil
		}
		if old != nil {
			old.retiring = true
			old.retire = reason
		}
	}
	pl.mu.Unlock()
	if !ok {
		switch {
		case dead && exit.GetCause() == herdv1.ExitCause_EXIT_CAUSE_READY_TIMEOUT:
			return m, fmt.Errorf("not ready within %v; killed", pl.cfg.readyTimeout)
		case dead:
			return m, fmt.Errorf("exited before it was ready: %s", describeExit(exit))
		default:
			return m, fmt.Errorf("not ready: %w", ctx.Err())
		}
	}
	if old != nil && old.w != nil && !old.isDead {
		if announce != nil {
			announce(old, m)
		}
		_ = pl.retire(context.Background(), []*member{old})
	}
	return m, nil
}

// dropReplacement ends a failed replacement m of s (if any), and gives a
// slot whose worker died meanwhile its restart.
func (pl *Pool) dropReplacement(s *slot, m *member) {
	if m != nil {
		pl.mu.Lock()
		m.retiring = true
		alive := !m.isDead
		pl.mu.Unlock()
		if alive {
			_ = pl.retire(context.Background(), []*member{m})
		}
	}
	pl.mu.Lock()
	orphan := s.cur == nil && s.cancel == nil && !s.failed && !s.removed && !pl.stopping
	var delay = pl.cfg.backoff.Next(0)
	pl.mu.Unlock()
	if orphan {
		pl.scheduleRestart(s, delay)
	}
}

// abortReload ends a reload at s: the replacement m (if any) goes, and a
// slot whose worker died meanwhile gets its restart.
func (pl *Pool) abortReload(ctx context.Context, s *slot, m *member, why error) error {
	var id uint64
	if m != nil {
		id = m.w.id
	}
	pl.dropReplacement(s, m)
	err := &ReloadError{Slot: s.index, Worker: id, Err: why}
	pl.log.Error("herd: pool: reload aborted", "slot", s.index, "worker", id, "error", why)
	pl.emitPool(context.WithoutCancel(ctx), eventReloadAbortedProcedure, &herdv1.ReloadAbortedEvent{
		Slot: uint32(s.index), Replacement: &herdv1.Worker{Id: id, Pid: pidOf(m)}, Reason: why.Error(),
	})
	return err
}

func pidOf(m *member) int64 {
	if m == nil || m.w == nil {
		return 0
	}
	return int64(m.w.pid)
}
