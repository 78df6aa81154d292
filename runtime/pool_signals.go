package runtime

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
)

// Run starts the pool and runs it until it ends, making the primary handle
// its signals:
//
//   - SIGINT or SIGTERM stops the pool gracefully (Stop: routing stops,
//     every worker is disconnected with the graceful timeout, then SIGTERM,
//     then SIGKILL). A second SIGINT or SIGTERM during the stop skips to
//     SIGKILL. ctx ending stops it the same way.
//   - SIGHUP reloads every worker (Reload). A SIGHUP during a reload (or a
//     recycle) queues one more reload, run when that one ends, so that a
//     binary installed while a reload was under way is the one that ends
//     up serving; more SIGHUPs meanwhile join the queued one. A reload
//     that fails is logged (its ReloadAborted event says where and why)
//     and leaves the pool serving.
//
// Run returns Err: nil when every worker exited after its disconnect (exit
// status 0 for the primary), else why the pool ended (every slot failed,
// boot failure) or which workers had to be killed. Send SIGHUP to the
// primary only: a worker's default action for SIGHUP is to exit.
func (pl *Pool) Run(ctx context.Context) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	if err := pl.Start(ctx); err != nil {
		<-pl.done
		return err
	}
	// hup holds at most one pending reload; the reloader runs them one at
	// a time, after any reload or recycle under way (Reload waits for
	// reloadMu).
	hup := make(chan struct{}, 1)
	defer close(hup)
	go func() {
		for range hup {
			err := pl.Reload(context.Background())
			if err != nil && !errors.Is(err, ErrPoolStopped) {
				pl.log.Error("herd: pool: reload on SIGHUP failed", "error", err)
			}
		}
	}()
	stopping := false
	stop := func() {
		if stopping {
			pl.ForceStop()
			return
		}
		stopping = true
		go pl.Stop(context.Background())
	}
	done := ctx.Done()
	for {
		select {
		case <-pl.done:
			return pl.Err()
		case <-done:
			done = nil
			if !stopping {
				stop()
			}
		case sig := <-sigs:
			if sig != syscall.SIGHUP {
				stop()
				continue
			}
			if stopping {
				continue
			}
			select {
			case hup <- struct{}{}:
			default:
				pl.log.Info("herd: pool: SIGHUP while a reload is queued: it joins that one")
			}
		}
	}
}
