package runtime

import (
	"context"

	"google.golang.org/protobuf/proto"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// The procedures of herd.v1.EventService, generated into this package
// (events.herd.go; see buf.gen.yaml). The runtime calls the handlers
// registered for them (by the public generated
// herdv1herd.RegisterEventServiceHandler) when cluster events happen.
const (
	eventForkProcedure             = eventServiceForkProcedure
	eventOnlineProcedure           = eventServiceOnlineProcedure
	eventListeningProcedure        = eventServiceListeningProcedure
	eventDisconnectProcedure       = eventServiceDisconnectProcedure
	eventExitProcedure             = eventServiceExitProcedure
	eventErrorProcedure            = eventServiceErrorProcedure
	eventReadyProcedure            = eventServiceReadyProcedure
	eventRestartScheduledProcedure = eventServiceRestartScheduledProcedure
	eventSlotFailedProcedure       = eventServiceSlotFailedProcedure
	eventReloadStartedProcedure    = eventServiceReloadStartedProcedure
	eventReloadFinishedProcedure   = eventServiceReloadFinishedProcedure
	eventReloadAbortedProcedure    = eventServiceReloadAbortedProcedure
	eventRecycledProcedure         = eventServiceRecycledProcedure
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
	w.primary.record(ev) // admin_events.go
	if w.observe != nil {
		w.observe(w, procedure, ev)
	}
}

// ident is the Worker field of events.
func (w *Worker) ident() *herdv1.Worker {
	return &herdv1.Worker{Id: w.id, Pid: int64(w.pid)}
}

// errorEvent reports an error event about w's link. The endpoint calls it on
// w's drainer, so it is ordered with w's messages.
func (w *Worker) errorEvent(code Code, procedure string, err error) {
	ev := &herdv1.ErrorEvent{Worker: w.ident(), Code: herdv1.Code(code), Message: err.Error(), Procedure: procedure}
	w.primary.log.Debug("herd: worker error", "worker", w.id, "pid", w.pid, "code", code, "procedure", procedure, "error", err)
	w.emit(eventErrorProcedure, ev)
}

// errorEvent reports an error event that is not about a live worker,
// such as a failed fork, on the calling goroutine.
func (p *Primary) errorEvent(ctx context.Context, w *herdv1.Worker, code Code, err error) {
	p.log.Warn("herd: cluster error", "code", code, "error", err)
	ev := &herdv1.ErrorEvent{Worker: w, Code: herdv1.Code(code), Message: err.Error()}
	if h := p.mux.Handler(eventErrorProcedure); h != nil {
		_, _ = h.invoke(ctx, ev)
	}
	p.record(ev) // admin_events.go
}

// emitPool delivers a pool event that is about no one worker to the
// primary's handler, on the calling goroutine.
func (pl *Pool) emitPool(ctx context.Context, procedure string, ev proto.Message) {
	if h := pl.p.mux.Handler(procedure); h != nil {
		if _, err := h.invoke(ctx, ev); err != nil && CodeOf(err) != CodeUnimplemented {
			pl.log.Warn("herd: event handler failed", "procedure", procedure, "error", err)
		}
	}
	pl.p.record(ev) // admin_events.go
}
