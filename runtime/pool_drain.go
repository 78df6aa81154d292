package runtime

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// WithDrainDelay makes a graceful stop (Stop, and Run on SIGINT or
// SIGTERM) begin with a drain of d: the pool reports itself not ready
// (Serving turns false, ReadinessHandler answers 503, systemd's STATUS says
// "draining") while its workers keep accepting and serving new connections
// for d; only then are they disconnected as Stop describes. A load
// balancer that routes by readiness, such as a Kubernetes Service, keeps
// sending new connections to a pod for a while after the pod was told to
// stop (until its endpoints are updated everywhere); the delay lets them
// find a listener, so that no preStop sleep is needed. Set d to a few
// periods of the readiness probe. Default 0: the disconnect starts at once.
//
// During the drain the pool still replaces a worker that dies, refuses a
// Reload (ErrPoolStopped), and keeps its workers from leaving on a stop
// signal of their own (one sent to the whole process group, as a container
// runtime or systemd does): the primary's own stop disconnects them when the
// drain ends. A second SIGINT or SIGTERM to Run, ForceStop, or the end of
// Stop's context skips the drain with the rest of the graceful steps.
func WithDrainDelay(d time.Duration) PoolOption {
	return poolOptionFunc(func(c *poolConfig) { c.drainDelay = d })
}

// drain runs a stop's drain delay (WithDrainDelay): the pool turns not
// ready and waits d, its workers still serving, unless the stop is forced
// or ctx ends first.
func (pl *Pool) drain(ctx context.Context) {
	d := pl.cfg.drainDelay
	if d <= 0 {
		return
	}
	pl.mu.Lock()
	if pl.stopping || pl.draining || pl.ended {
		pl.mu.Unlock()
		return
	}
	pl.draining = true
	for _, s := range pl.slots {
		for _, m := range []*member{s.cur, s.next} {
			if m != nil && m.w != nil {
				m.w.holdStopSignals()
			}
		}
	}
	pl.mu.Unlock()
	pl.log.Info("herd: pool: draining: reporting not ready, still serving", "delay", d)
	pl.notifyState()
	expired := make(chan struct{})
	stop := pl.cfg.clock.AfterFunc(d, func() { close(expired) })
	defer stop()
	select {
	case <-expired:
	case <-pl.force:
	case <-ctx.Done():
	}
}

// holdStopSignals makes a stop signal the worker reports (a group signal)
// wait for the primary's own stop instead of disconnecting the worker alone
// after the grace (signal_primary.go): the pool is draining, and its stop
// disconnects every worker when the drain ends.
func (w *Worker) holdStopSignals() { w.signalled.Store(true) }

// Serving reports whether the pool should be sent traffic: it has started,
// is neither draining nor stopping nor ended, and at least one of its
// workers is ready. It is the answer of ReadinessHandler.
func (pl *Pool) Serving() bool {
	ok, _ := pl.serving()
	return ok
}

func (pl *Pool) serving() (bool, string) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	summary := pl.summaryLocked(phaseRunning)
	if !pl.started || pl.stopping || pl.draining || pl.ended {
		return false, summary
	}
	for _, s := range pl.slots {
		if s.cur != nil && s.cur.isReady && !s.cur.isDead {
			return true, summary
		}
	}
	return false, summary
}

// ReadinessHandler returns an http.Handler for a readiness probe (a
// Kubernetes readinessProbe's httpGet, a load balancer's health check):
// 200 while the pool is Serving, 503 before its first worker is ready and
// from the moment a graceful stop begins, its drain delay included
// (WithDrainDelay). The body is the pool's one-line summary, e.g. "4/4
// workers ready, 0 restarting" or "draining: 4/4 workers ready, 0
// restarting". The primary serves it on a port of its own, with net/http:
//
//	go http.Serve(healthListener, pool.ReadinessHandler())
func (pl *Pool) ReadinessHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, summary := pl.serving()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		if r.Method != http.MethodHead {
			fmt.Fprintln(w, summary)
		}
	})
}
