package runtime

import (
	"context"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// registerControl installs the primary's side of herd.v1.ControlService.
// Its handlers run on the calling worker's control lane (control.go),
// concurrently with that worker's user handlers; the events they cause
// go on the user lane, in order with that worker's messages.
func (p *Primary) registerControl() {
	err := p.control.Register(
		NewUnaryHandler(controlHelloProcedure, p.hello),
		NewUnaryHandler(controlDisconnectProcedure, p.workerDisconnecting),
		NewUnaryHandler(controlListeningProcedure, p.listening),
		NewUnaryHandler(controlListenProcedure, p.ports.listen),
		NewUnaryHandler(controlCloseListenerProcedure, p.ports.closeListener),
		NewUnaryHandler(controlRejectedProcedure, p.rejected),
		NewUnaryHandler(controlStopSignalProcedure, p.stopSignal),
		NewUnaryHandler(controlReadyProcedure, p.ready),
		NewUnaryHandler(controlRecycleProcedure, p.recycle),
	)
	if err != nil {
		panic(err) // the procedures are constants
	}
}

// hello completes a worker's handshake: the worker is online.
func (p *Primary) hello(ctx context.Context, req *herdv1.HelloRequest) (*herdv1.HelloResponse, error) {
	w, _ := WorkerFromContext(ctx)
	if req.GetProtocolVersion() != ProtocolVersion {
		return nil, Errorf(CodeFailedPrecondition, "worker %d speaks herd protocol %d, the primary speaks %d",
			w.id, req.GetProtocolVersion(), ProtocolVersion)
	}
	if req.GetWorkerId() != w.id {
		return nil, Errorf(CodeInvalidArgument, "worker %d says it is worker %d", w.id, req.GetWorkerId())
	}
	if w.State() == StateNone {
		w.state.Store(int32(StateOnline))
	}
	// Before the worker's Start returns: a worker that moved itself into
	// a memory cgroup of its own as it started is watched there
	// (exit_cause.go).
	w.oom.arm(w.pid)
	w.onlineOnce.Do(func() { close(w.online) })
	// The online event follows the reply on the link, so that whatever a
	// handler of the event sends the worker (a Disconnect, a call) reaches
	// it after its handshake completes.
	// It is queued now, ahead of any message the worker sends once it has
	// the reply.
	ev := &herdv1.OnlineEvent{Worker: w.ident(), ProtocolVersion: req.GetProtocolVersion()}
	w.ep.eventAfterReply(ctx, func() { w.emit(eventOnlineProcedure, ev) })
	res := &herdv1.HelloResponse{ProtocolVersion: ProtocolVersion}
	if w.pool != nil {
		res.MaxRequests = w.pool.maxRequests // pool_recycle.go
	}
	return res, nil
}

// workerDisconnecting records that the worker started its own disconnect,
// before it closes its link (Node's exitedAfterDisconnect message).
func (p *Primary) workerDisconnecting(ctx context.Context, req *herdv1.DisconnectRequest) (*herdv1.DisconnectResponse, error) {
	w, _ := WorkerFromContext(ctx)
	w.afterDisconnect.Store(true)
	w.disconnecting.Store(true)
	p.ports.stopRouting(w)
	return &herdv1.DisconnectResponse{}, nil
}

// listening records that a server in the worker is listening.
func (p *Primary) listening(ctx context.Context, req *herdv1.ListeningRequest) (*herdv1.ListeningResponse, error) {
	w, _ := WorkerFromContext(ctx)
	if s := w.State(); s == StateOnline || s == StateNone {
		w.state.Store(int32(StateListening))
	}
	w.emit(eventListeningProcedure, &herdv1.ListeningEvent{Worker: w.ident(), Address: req.GetAddress()})
	return &herdv1.ListeningResponse{}, nil
}

// ready records that the worker said it is ready (Self.Ready); a pool
// watching the worker counts it (pool.go).
func (p *Primary) ready(ctx context.Context, req *herdv1.ReadyRequest) (*herdv1.ReadyResponse, error) {
	w, _ := WorkerFromContext(ctx)
	w.saidReady.Store(true)
	if w.observe != nil {
		w.observe(w, controlReadyProcedure, req)
	}
	return &herdv1.ReadyResponse{}, nil
}

// recycle serves a worker's Recycle: its pool replaces it by the rolling
// path (pool_recycle.go).
func (p *Primary) recycle(ctx context.Context, req *herdv1.RecycleRequest) (*herdv1.RecycleResponse, error) {
	w, _ := WorkerFromContext(ctx)
	if w.pool == nil || w.pool.recycle == nil {
		return &herdv1.RecycleResponse{Reason: "the worker is not in a pool"}, nil
	}
	return w.pool.recycle(w, req), nil
}
