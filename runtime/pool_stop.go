package runtime

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// Stop stops the pool gracefully: no more restarts, and every worker is
// disconnected at once (routing to it stops, its listeners close, its drain
// hooks run) with the graceful timeout (WithStopTimeouts, 30 s); a worker
// still running then gets SIGTERM and, after the term timeout (5 s),
// SIGKILL. When ctx ends, or ForceStop is called, the steps left are skipped
// to SIGKILL. Stop returns once every worker has exited: nil when each
// exited after its disconnect, an error naming the workers that had to be
// signalled otherwise (or the error the pool ended with before).
func (pl *Pool) Stop(ctx context.Context) error {
	stopped := make(chan error, 1)
	go func() { stopped <- pl.stop(ctx, true) }()
	var err error
	select {
	case err = <-stopped:
	case <-ctx.Done():
		pl.ForceStop()
		err = <-stopped
	}
	pl.end(err)
	<-pl.done
	return pl.Err()
}

// ForceStop makes a stop under way, or the next one, skip its graceful
// steps: every worker left gets SIGKILL (a second SIGINT or SIGTERM to Run).
func (pl *Pool) ForceStop() {
	pl.forceOnce.Do(func() { close(pl.force) })
}

// stop runs the stop once, after the drain delay when drain is set (a stop
// the user asked for); later calls wait for it and return its result.
func (pl *Pool) stop(ctx context.Context, drain bool) error {
	pl.stopOnce.Do(func() {
		defer close(pl.stopDone)
		// systemd: STOPPING=1, as Primary.Disconnect says it.
		drain = drain && pl.cfg.drainDelay > 0
		phase := phaseStopping
		if drain {
			phase = phaseDraining
		}
		pl.notifyPhase(phase, NotifyStopping)
		if drain {
			pl.drain(ctx) // WithDrainDelay: not ready, still serving (pool_drain.go)
		}
		pl.mu.Lock()
		pl.stopping = true
		if pl.sampleStop != nil {
			pl.sampleStop()
		}
		var members []*member
		var dead []*Worker
		for _, s := range pl.slots {
			if s.cancel != nil {
				s.cancel()
				s.cancel = nil
			}
			dead = append(dead, takeDead(s)...)
			for _, m := range []*member{s.cur, s.next} {
				if m != nil && m.w != nil && !m.isDead {
					members = append(members, m)
				}
			}
		}
		pl.mu.Unlock()
		pl.p.ports.releaseOrphans(dead) // no restart will take them
		errs := make([]error, len(members))
		var wg sync.WaitGroup
		for i, m := range members {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = pl.stopMember(m, ctx.Done())
			}()
		}
		wg.Wait()
		pl.stopErr = errors.Join(errs...)
	})
	<-pl.stopDone
	return pl.stopErr
}

// stopMember disconnects m's worker, then SIGTERM, then SIGKILL, and
// returns once it has exited: nil when it exited within the graceful
// timeout.
func (pl *Pool) stopMember(m *member, cancel <-chan struct{}) error {
	w := m.w
	pl.mu.Lock()
	m.retiring = true
	pl.mu.Unlock()
	dctx, done := context.WithTimeout(context.Background(), pl.cfg.gracefulTimeout+pl.cfg.termTimeout)
	defer done()
	w.beginDisconnect(dctx)
	if pl.waitExit(w, pl.cfg.gracefulTimeout, cancel) {
		return nil
	}
	forced := ForcedError{Worker: w.id, Signal: "SIGKILL"}
	select {
	case <-pl.force:
	default:
		_ = w.Kill(syscall.SIGTERM)
		if pl.waitExit(w, pl.cfg.termTimeout, cancel) {
			forced.Signal = "SIGTERM"
			return &forced
		}
	}
	_ = w.Kill(syscall.SIGKILL)
	<-w.Exited()
	return &forced
}

// waitExit waits for w's exit at most d (on the pool's clock), or until the
// stop is forced; it reports whether w exited.
func (pl *Pool) waitExit(w *Worker, d time.Duration, cancel <-chan struct{}) bool {
	expired := make(chan struct{})
	stop := pl.cfg.clock.AfterFunc(d, func() { close(expired) })
	defer stop()
	select {
	case <-w.Exited():
		return true
	case <-expired:
	case <-pl.force:
	case <-cancel:
		pl.ForceStop()
	}
	select {
	case <-w.Exited():
		return true
	default:
		return false
	}
}

// ForcedError says a worker did not exit within the graceful timeout of a
// stop and was ended with a signal.
type ForcedError struct {
	// Worker is the worker's ID.
	Worker uint64
	// Signal is the signal that ended it: SIGTERM or SIGKILL.
	Signal string
}

func (e *ForcedError) Error() string {
	return fmt.Sprintf("herd: pool: worker %d did not exit after its disconnect in time; ended with %s", e.Worker, e.Signal)
}
