package runtime

import (
	"context"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// The procedures of herd.v1.EventService. The runtime calls the handlers
// registered for them (by the generated RegisterEventServiceHandler) when
// cluster events happen.
const (
	eventForkProcedure       = "/herd.v1.EventService/Fork"
	eventOnlineProcedure     = "/herd.v1.EventService/Online"
	eventListeningProcedure  = "/herd.v1.EventService/Listening"
	eventDisconnectProcedure = "/herd.v1.EventService/Disconnect"
	eventExitProcedure       = "/herd.v1.EventService/Exit"
	eventErrorProcedure      = "/herd.v1.EventService/Error"

	eventReadyProcedure            = "/herd.v1.EventService/Ready"
	eventRestartScheduledProcedure = "/herd.v1.EventService/RestartScheduled"
	eventSlotFailedProcedure       = "/herd.v1.EventService/SlotFailed"
	eventReloadStartedProcedure    = "/herd.v1.EventService/ReloadStarted"
	eventReloadFinishedProcedure   = "/herd.v1.EventService/ReloadFinished"
	eventReloadAbortedProcedure    = "/herd.v1.EventService/ReloadAborted"
	eventRecycledProcedure         = "/herd.v1.EventService/Recycled"
)

// The procedures of herd.v1.ControlService, the runtime's own protocol.
const (
	controlHelloProcedure         = "/herd.v1.ControlService/Hello"
	controlDisconnectProcedure    = "/herd.v1.ControlService/Disconnect"
	controlListenProcedure        = "/herd.v1.ControlService/Listen"
	controlCloseListenerProcedure = "/herd.v1.ControlService/CloseListener"
	controlHandoffProcedure       = "/herd.v1.ControlService/Handoff"
	controlAcceptedProcedure      = "/herd.v1.ControlService/Accepted"
	controlListeningProcedure     = "/herd.v1.ControlService/Listening"
	controlStopSignalProcedure    = "/herd.v1.ControlService/StopSignal"
	controlCreditProcedure        = "/herd.v1.ControlService/Credit"
	controlReadyProcedure         = "/herd.v1.ControlService/Ready"
	controlHeartbeatProcedure     = "/herd.v1.ControlService/Heartbeat"
	controlRecycleProcedure       = "/herd.v1.ControlService/Recycle"
)

// emit delivers a cluster event about w: first to the handlers registered
// for this worker, then to the primary's (Node emits on the worker, then on
// the cluster). It runs on w's drainer, in order with w's messages. A
// handler's error is logged; it cannot stop the event.
func (w *Worker) emit(procedure string, ev proto.Message) {
	ctx := w.ctx
	for _, m := range [...]*Mux{&w.mux, &w.primary.mux} {
		h := m.Handler(procedure)
		if h == nil {
			continue
		}
		if _, err := h.invoke(ctx, ev); err != nil && CodeOf(err) != CodeUnimplemented {
			w.primary.log.Warn("herd: event handler failed", "procedure", procedure, "worker", w.id, "pid", w.pid, "error", err)
		}
	}
	if w.observe != nil {
		w.observe(w, procedure, ev)
	}
}

// ident is the Worker field of events.
func (w *Worker) ident() *herdv1.Worker {
	return &herdv1.Worker{Id: w.id, Pid: int64(w.pid)}
}

// emitError reports an error event about w's link. The endpoint calls it on
// w's drainer, so it is ordered with w's messages.
func (w *Worker) emitError(code Code, procedure string, err error) {
	ev := &herdv1.ErrorEvent{Worker: w.ident(), Code: herdv1.Code(code), Message: err.Error(), Procedure: procedure}
	w.primary.log.Debug("herd: worker error", "worker", w.id, "pid", w.pid, "code", code, "procedure", procedure, "error", err)
	w.emit(eventErrorProcedure, ev)
}

// emitClusterError reports an error event that is not about a live worker,
// such as a failed fork, on the calling goroutine.
func (p *Primary) emitClusterError(ctx context.Context, w *herdv1.Worker, code Code, err error) {
	p.log.Warn("herd: cluster error", "code", code, "error", err)
	if h := p.mux.Handler(eventErrorProcedure); h != nil {
		ev := &herdv1.ErrorEvent{Worker: w, Code: herdv1.Code(code), Message: err.Error()}
		_, _ = h.invoke(ctx, ev)
	}
}

// emitPool delivers a pool event that is about no one worker to the
// primary's handler, on the calling goroutine.
func (pl *Pool) emitPool(ctx context.Context, procedure string, ev proto.Message) {
	if h := pl.p.mux.Handler(procedure); h != nil {
		if _, err := h.invoke(ctx, ev); err != nil && CodeOf(err) != CodeUnimplemented {
			pl.log.Warn("herd: event handler failed", "procedure", procedure, "error", err)
		}
	}
}
