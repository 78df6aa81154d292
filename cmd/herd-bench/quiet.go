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
// below quietBusy. After each run it works out the CPU time other
// processes took during the run (the machine's busy time less that of the
// harness and everything it started, see takeCPU); a run where they took
// quietBusy or more is made again, up to maxRepeats times. Both loads are
// reported with the table.

// quietBusy is the busy fraction of all CPUs below which the machine
// counts as quiet.
const quietBusy = 0.10

// quietSample is how long one sample of the load lasts.
const quietSample = 250 * time.Millisecond

// maxRepeats bounds how often a run disturbed by other processes is made
// again.
const maxRepeats = 2

// loadLog records the background load found before each run.
type loadLog struct {
	samples   []float64 // busy fraction before each run, once quiet or out of patience
	waited    time.Duration
	noisy     int       // runs that started on a busy machine
	during    []float64 // other processes' share of the CPUs during each kept run
	repeated  int       // runs made again because others took the CPUs
	disturbed int       // kept runs during which others took quietBusy or more
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

// disturbedRun reports whether a run that began with snapshot a should be
// made again because other processes took the CPUs during it, and records
// the load of the runs that are kept. repeats is how often it was already
// made again.
func (l *loadLog) disturbedRun(cfg *config, a cpuSnap, repeats int) bool {
	other, ok := otherLoad(a, takeCPU())
	if !ok || cfg.quietWait <= 0 {
		return false
	}
	cfg.log.Info("other processes during the run", "other", fmt.Sprintf("%.1f%%", other*100))
	if other >= quietBusy && repeats < maxRepeats {
		l.repeated++
		cfg.log.Warn("other processes took the CPUs during the run; making it again", "other", fmt.Sprintf("%.0f%%", other*100))
		return true
	}
	l.during = append(l.during, other)
	if other >= quietBusy {
		l.disturbed++
	}
	return false
}

// report prints what the load log saw.
func (l *loadLog) report(w io.Writer) {
	if len(l.samples) > 0 {
		fmt.Fprintf(w, "other processes' CPU load before the runs: median %.0f%%, max %.0f%%; %d of %d runs started above %.0f%%; waited %v for quiet\n",
			median(l.samples)*100, maxOf(l.samples)*100, l.noisy, len(l.samples), quietBusy*100, l.waited.Round(time.Second))
	}
	if len(l.during) > 0 {
		fmt.Fprintf(w, "other processes' CPU load during the runs: median %.0f%%, max %.0f%%; %d runs made again, %d kept above %.0f%%\n",
			median(l.during)*100, maxOf(l.during)*100, l.repeated, l.disturbed, quietBusy*100)
	}
}

func maxOf(xs []float64) float64 {
	m := xs[0]
	for _, x := range xs[1:] {
		m = max(m, x)
	}
	return m
}
