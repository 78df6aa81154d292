package runtime

import (
	"context"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// defaultWorkerSignalGrace is how long the primary waits by default, after a
// worker reports a stop signal, for its own stop to reach that worker.
const defaultWorkerSignalGrace = time.Second

// WithWorkerSignalGrace sets how long the primary waits, after a worker
// reports a stop signal (SIGINT, SIGTERM; see WithStopSignals), for its own
// graceful stop to reach that worker, before it disconnects that worker
// alone. A signal sent to the whole process group reaches the primary too,
// whose handler then calls Disconnect: that stop wins, in the primary's
// order and with its deadline. A signal sent to one worker finds the primary
// not stopping, and only that worker disconnects, once the grace has passed
// (it serves meanwhile). Default 1s.
func WithWorkerSignalGrace(d time.Duration) PrimaryOption {
	return primaryOptionFunc(func(s *settings) { s.signalGrace = d })
}

// stopSignal serves a worker's StopSignal: Kill's own signal terminates the
// worker; any other stop signal is a drain, which the primary's own stop
// performs when it comes, and the primary performs alone after the grace
// otherwise. It answers at once; the control lane never waits for the grace.
func (p *Primary) stopSignal(ctx context.Context, req *herdv1.StopSignalRequest) *herdv1.StopSignalResponse {
	w, _ := WorkerFromContext(ctx)
	if sig, ok := w.killSignal.Load().(string); ok && sig == req.GetSignal() {
		return &herdv1.StopSignalResponse{Action: herdv1.StopSignalAction_STOP_SIGNAL_ACTION_TERMINATE}
	}
	if !w.disconnecting.Load() && w.signalled.CompareAndSwap(false, true) {
		p.mu.Lock()
		grace := p.settings.signalGrace
		p.mu.Unlock()
		if grace <= 0 {
			grace = defaultWorkerSignalGrace
		}
		go w.disconnectAfterSignal(grace)
	}
	return &herdv1.StopSignalResponse{Action: herdv1.StopSignalAction_STOP_SIGNAL_ACTION_DRAIN}
}

// disconnectAfterSignal disconnects a worker that reported a stop signal,
// unless a disconnect reaches it within grace (the primary's own stop) or it
// exits. The worker bounds its drain hooks itself (WithDrainTimeout), as it
// does for a disconnect it starts.
func (w *Worker) disconnectAfterSignal(grace time.Duration) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-w.exited:
		return
	case <-t.C:
	}
	if w.disconnecting.Load() {
		return // the primary's own stop, or the worker's, is under way
	}
	// Not Disconnect: the primary's user did not ask for this one, so a
	// Pool replaces the worker (the exit still says exitedAfterDisconnect).
	w.beginDisconnect(context.Background())
}
