package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Other processes on the machine skew every figure, and on a small machine
// a parallel test run takes all of it. Before each run the harness samples
// the CPU time the whole machine spent busy (Linux: /proc/stat) while the
// harness itself was idle, and waits, up to -quiet-wait, for it to drop
// below quietBusy. The load it saw is reported with the table.

// quietBusy is the busy fraction of all CPUs below which the machine
// counts as quiet.
const quietBusy = 0.10

// quietSample is how long one sample of the load lasts.
const quietSample = 250 * time.Millisecond

// loadLog records the background load found before each run.
type loadLog struct {
	samples []float64 // busy fraction before each run, once quiet or out of patience
	waited  time.Duration
	noisy   int // runs that started on a busy machine
}

// awaitQuiet waits until the machine is quiet or cfg.quietWait has passed,
// and records the load the run starts with. It does nothing where the
// load cannot be read, or with a zero -quiet-wait.
func (l *loadLog) awaitQuiet(ctx context.Context, cfg *config) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if cfg.quietWait <= 0 {
		return nil
	}
	start := time.Now()
	for {
		busy, ok := machineBusy(quietSample)
		if !ok {
			return nil
		}
		if busy < quietBusy || time.Since(start) >= cfg.quietWait {
			l.samples = append(l.samples, busy)
			l.waited += time.Since(start)
			if busy >= quietBusy {
				l.noisy++
				cfg.log.Warn("machine busy, running anyway", "busy", fmt.Sprintf("%.0f%%", busy*100), "waited", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// report prints what the load log saw.
func (l *loadLog) report(w io.Writer) {
	if len(l.samples) == 0 {
		return
	}
	fmt.Fprintf(w, "background CPU load before the runs (other processes): median %.0f%%, max %.0f%%; %d of %d runs started above %.0f%%; waited %v for quiet\n",
		median(l.samples)*100, maxOf(l.samples)*100, l.noisy, len(l.samples), quietBusy*100, l.waited.Round(time.Second))
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = max(m, x)
	}
	return m
}
