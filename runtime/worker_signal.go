package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// defaultStopSignals are the signals a worker drains on by default: those
// that reach every process of a group at once (Ctrl-C in a terminal,
// kill -- -PGID, systemd's KillMode=control-group, docker stop of a
// container whose workers share its cgroup), not only the primary.
var defaultStopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM}

// stopSignalTimeout bounds the worker's question to the primary about a stop
// signal. The primary answers at once, on its control lane (control.go); no
// answer in this time means the primary is stuck, and the worker disconnects
// by itself.
const stopSignalTimeout = 5 * time.Second

// WithStopSignals sets the signals that make the worker stop gracefully
// instead of dying at once. Default SIGINT and SIGTERM.
//
// On such a signal the worker keeps serving and asks the primary how to
// stop. When the primary is stopping too (the signal went to the whole
// process group, and the primary's handler calls Primary.Disconnect), the
// primary's own graceful stop disconnects the worker, in the primary's
// order and with its deadline. When the signal reached the worker alone, the
// primary disconnects that worker alone after a short grace
// (WithWorkerSignalGrace). Either way the worker runs its drain hooks,
// finishes what is in flight and exits with status 0, and its exit event
// says exitedAfterDisconnect. When the signal came from the primary's
// Worker.Kill, the worker dies of it, as Kill promises. A signal ignored
// when the worker started stays ignored.
//
// The signals stay caught after the disconnect, until the process exits (a
// late copy of the group signal that started the drain must not kill a
// worker that drained cleanly); a program that keeps running after its
// disconnect (WithExitOnDisconnect(false)) can restore their default action
// with signal.Reset.
//
// WithStopSignals() with no signals leaves signal handling to the program:
// use it when the worker installs its own handlers (signal.Notify) for
// these signals.
func WithStopSignals(sigs ...os.Signal) SelfOption {
	sigs = append([]os.Signal{}, sigs...)
	return selfOptionFunc(func(c *selfConfig) { c.stopSignals = sigs })
}

// catchStopSignals starts catching the stop signals before the handshake
// (the primary reports the worker online before the worker has read the
// Hello reply, so a signal sent to the group right after the online event
// must not find the default action still in place) and returns the function
// Start calls once the handshake is over: with true it starts handling them,
// signals caught meanwhile included; with false (the handshake failed) it
// restores their default action and raises any caught meanwhile, so a
// worker signalled during a failed start still dies of the signal.
func (s *Self) catchStopSignals() func(online bool) {
	var sigs []os.Signal
	for _, sig := range s.cfg.stopSignals {
		// Notify would undo an ignore the worker inherited (a background
		// job started with SIGINT ignored): keep it.
		if !signal.Ignored(sig) {
			sigs = append(sigs, sig)
		}
	}
	if len(sigs) == 0 {
		return func(bool) {}
	}
	// The signals stay caught for the life of the process, also after
	// the worker has disconnected: a signal sent to the group reaches each
	// process when one of its threads next runs, which on a loaded machine
	// can be after the drain it started has finished, and restoring the
	// default action before the exit would let that late copy kill a
	// worker that drained cleanly (an untruthful exit status).
	ch := make(chan os.Signal, len(sigs))
	signal.Notify(ch, sigs...)
	return func(online bool) {
		if !online {
			signal.Stop(ch)
			select {
			case sig := <-ch:
				raise(sig)
			default:
			}
			return
		}
		go func() {
			for sig := range ch {
				// Every signal is reported, one at a time, even during a
				// drain: a repeated group signal changes nothing (the
				// primary is draining this worker already), while the
				// signal of Worker.Kill still kills.
				s.stopSignal(sig)
			}
		}()
	}
}

// stopSignal asks the primary what to do about sig and does it.
func (s *Self) stopSignal(sig os.Signal) {
	name := sig.String()
	if ss, ok := sig.(syscall.Signal); ok {
		name = signalName(ss)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stopSignalTimeout)
	res, err := s.rpc.StopSignal(ctx, &herdv1.StopSignalRequest{Signal: name})
	cancel()
	switch {
	case err == nil && res.GetAction() == herdv1.StopSignalAction_STOP_SIGNAL_ACTION_TERMINATE:
		raise(sig)
	case err == nil:
		// The primary disconnects this worker, now or with its own stop.
	case isLinkClosed(s.ep.closed):
		// The primary is gone: watchLink runs the orphan path.
	case s.disconnecting.Load():
		// A disconnect is under way (the link is closing): it decides.
	default:
		// No answer (a primary stuck, or one without StopSignal): drain
		// alone, as Self.Disconnect does.
		s.cfg.endpoint.logger.Warn("herd: the primary did not answer a stop signal; disconnecting", "signal", name, "error", err)
		go func() {
			dctx, cancel := context.WithTimeout(context.Background(), s.cfg.drainTimeout)
			defer cancel()
			if err := s.Disconnect(dctx); err != nil && !errors.Is(err, context.Canceled) {
				s.errorEvent(CodeOf(err), controlServiceStopSignalProcedure, fmt.Errorf("disconnect on %s: %w", name, err))
			}
		}()
	}
}

func isLinkClosed(closed chan struct{}) bool {
	select {
	case <-closed:
		return true
	default:
		return false
	}
}
