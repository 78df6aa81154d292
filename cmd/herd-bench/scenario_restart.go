package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/herd-go/herd/gen/herd/v1/herdv1herd"
	"github.com/herd-go/herd/runtime"
)

// The restart scenario: how long a pool takes to replace a worker that
// died. restartKills times, a worker is SIGKILLed and the clock runs until
// its replacement is ready (listening); the figure is the median.
//
// herd: a runtime.Pool with the default settings, the reload scenarios'
// hello-world workers; once every worker has been ready for longer than
// the pool's minimum uptime (runtime.DefaultMinUptime, 1 s: a worker
// killed in steady state, which the pool replaces at once; one killed
// sooner would wait the restart backoff, 100 ms +-20 % the first time),
// the primary kills the worker of each of restartKills slots in turn, so
// that every restart is its slot's first, and stops the clock at the
// replacement's Ready event. The table also shows the backoff delays the
// pool scheduled (0 for these) and the rest (the exit noticed, fork, exec,
// handshake, listen).
// pm2: PM2's cluster mode with 2 instances (see pm2.go); the driver kills
// them in turn and stops the clock when the replacement tells it that it
// is listening.

// restartKills is the number of kills of one run.
const restartKills = 5

// restartScenario is the restart_ms scenario.
func restartScenario() *scenario {
	return &scenario{
		name:  "restart_ms",
		title: "a worker SIGKILLed (herd: ready for over the 1 s minimum uptime), until its replacement is ready (listening), median of 5 kills",
		unit:  "ms",
		lower: true,
		refs:  []string{"pm2"},
		systems: []*system{
			{name: "herd", key: "restart_ms", run: restartHerd, extras: []extra{
				{key: "restart_backoff_ms", label: "of which the backoff delay", unit: "ms", tableOnly: true},
				{key: "restart_after_backoff_ms", label: "the rest (exit noticed, fork to ready)", unit: "ms", tableOnly: true},
			}},
			{name: "pm2", key: "restart_ms_pm2", needs: needsPM2, run: restartPM2, extras: []extra{
				{key: "restart_ms_pm2_online", label: "until PM2 says online", unit: "ms", tableOnly: true},
			}},
		},
	}
}

// restartHerd runs one herd restart child.
func restartHerd(ctx context.Context, cfg *config) (map[string]float64, error) {
	return runSelf(ctx, cfg, roleRestartPrimary, fmt.Sprintf("%s=%d", envWorkers, restartKills))
}

// restartPrimary is the herd restart system: a pool with one slot per
// kill; it kills each slot's worker in turn and prints the medians.
func restartPrimary() error {
	n, err := roleInt(envWorkers)
	if err != nil {
		return err
	}
	p := runtime.NewPrimary(runtime.WithEnv(envWorkerRole + "=" + workerReload))
	ev := newPoolEvents()
	if err := herdv1herd.RegisterEventServiceHandler(p, ev); err != nil {
		return err
	}
	pool := runtime.NewPool(p, runtime.WithPoolSize(n))
	ctx := context.Background()
	defer pool.ForceStop()
	if err := pool.Start(ctx); err != nil {
		return err
	}
	slotWorker := make(map[uint32]uint64)
	t := time.NewTimer(childTimeout)
	defer t.Stop()
	for len(slotWorker) < n {
		select {
		case r := <-ev.ready:
			slotWorker[r.GetSlot()] = r.GetWorker().GetId()
		case <-pool.Done():
			return fmt.Errorf("the pool ended: %v", pool.Err())
		case <-t.C:
			return fmt.Errorf("%d of %d workers ready within %v", len(slotWorker), n, childTimeout)
		}
	}
	// Steady state: every victim has been ready for longer than the
	// minimum uptime (with a margin for the pool's own clock reading).
	time.Sleep(runtime.DefaultMinUptime + 100*time.Millisecond)
	var total, backoff, rest []float64
	for slot := range uint32(n) {
		w, ok := p.Worker(slotWorker[slot])
		if !ok {
			return fmt.Errorf("slot %d: worker %d is gone", slot, slotWorker[slot])
		}
		proc, err := os.FindProcess(w.PID())
		if err != nil {
			return err
		}
		start := time.Now()
		if err := proc.Signal(os.Kill); err != nil {
			return fmt.Errorf("kill worker %d: %w", w.ID(), err)
		}
		var delay time.Duration
		t.Reset(childTimeout)
	wait:
		for {
			select {
			case r := <-ev.restarts:
				if r.GetSlot() == slot {
					delay = r.GetDelay().AsDuration()
				}
			case r := <-ev.ready:
				if r.GetSlot() == slot && r.GetWorker().GetId() != w.ID() {
					took := time.Since(start)
					total = append(total, ms(took))
					backoff = append(backoff, ms(delay))
					rest = append(rest, ms(took-delay))
					break wait
				}
			case <-pool.Done():
				return fmt.Errorf("the pool ended: %v", pool.Err())
			case <-t.C:
				return fmt.Errorf("slot %d: no replacement ready within %v of the kill", slot, childTimeout)
			}
		}
	}
	sctx, cancel := context.WithTimeout(ctx, childTimeout)
	defer cancel()
	if err := pool.Stop(sctx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	emit(lineResult, map[string]float64{
		"value":                    median(total),
		"restart_backoff_ms":       median(backoff),
		"restart_after_backoff_ms": median(rest),
	})
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
