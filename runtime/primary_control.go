package runtime

import (
	"context"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// primaryControl is the primary's side of herd.v1.ControlService, the
// handler of every worker's control calls; each handler finds the calling
// worker with WorkerFromContext. Each runs on its procedure's lane
// (controlLanes): Hello, Listening and Ready in order with that worker's
// messages, Accepted on its link's reader, the others on its control lane
// (control.go), concurrently with its user handlers. The events they cause
// go on the user lane, in order with that worker's messages.
type primaryControl struct {
	unimplementedControlServiceHandler
	p *Primary
}

// registerControl installs the primary's side of herd.v1.ControlService.
func (p *Primary) registerControl() {
	if err := registerControlServiceHandler(&p.control, primaryControl{p: p}, withControlLanes()); err != nil {
		panic(err) // the procedures are constants
	}
}

func (c primaryControl) Hello(ctx context.Context, req *herdv1.HelloRequest) (*Response[herdv1.HelloResponse], error) {
	return c.p.hello(ctx, req)
}

func (c primaryControl) Disconnect(ctx context.Context, req *herdv1.DisconnectRequest) (*Response[herdv1.DisconnectResponse], error) {
	return NewResponse(c.p.workerDisconnecting(ctx, req)), nil
}

func (c primaryControl) Listening(ctx context.Context, req *herdv1.ListeningRequest) (*Response[herdv1.ListeningResponse], error) {
	return NewResponse(c.p.listening(ctx, req)), nil
}

func (c primaryControl) Ready(ctx context.Context, req *herdv1.ReadyRequest) (*Response[herdv1.ReadyResponse], error) {
	return NewResponse(c.p.ready(ctx, req)), nil
}

// Listen answers with the handle's socket attached, for the shared and
// reuseport policies.
func (c primaryControl) Listen(ctx context.Context, req *herdv1.ListenRequest) (*Response[herdv1.ListenResponse], error) {
	var fds []int
	res, err := c.p.ports.listen(ctx, req, &fds)
	if err != nil {
		return nil, err
	}
	return NewResponse(res).attachFDs(fds), nil
}

func (c primaryControl) CloseListener(ctx context.Context, req *herdv1.CloseListenerRequest) (*Response[herdv1.CloseListenerResponse], error) {
	res, err := c.p.ports.closeListener(ctx, req)
	return NewResponse(res), err
}

func (c primaryControl) Rejected(ctx context.Context, req *herdv1.RejectedRequest) (*Response[herdv1.RejectedResponse], error) {
	c.p.rejected(ctx, req)
	return nil, nil
}

func (c primaryControl) StopSignal(ctx context.Context, req *herdv1.StopSignalRequest) (*Response[herdv1.StopSignalResponse], error) {
	return NewResponse(c.p.stopSignal(ctx, req)), nil
}

// Recycle serves a worker's request to be replaced: its pool replaces it by
// the rolling path (pool_recycle.go).
func (c primaryControl) Recycle(ctx context.Context, req *herdv1.RecycleRequest) (*Response[herdv1.RecycleResponse], error) {
	w, _ := WorkerFromContext(ctx)
	if w.pool == nil || w.pool.recycle == nil {
		return NewResponse(&herdv1.RecycleResponse{Reason: "the worker is not in a pool"}), nil
	}
	return NewResponse(w.pool.recycle(w, req)), nil
}

// Accepted runs on the worker's link reader (controlLanes).
func (c primaryControl) Accepted(ctx context.Context, req *herdv1.AcceptedRequest) (*Response[herdv1.AcceptedResponse], error) {
	w, _ := WorkerFromContext(ctx)
	w.accepted(req)
	return nil, nil
}

// hello completes a worker's handshake: the worker is online.
func (p *Primary) hello(ctx context.Context, req *herdv1.HelloRequest) (*Response[herdv1.HelloResponse], error) {
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
	after := w.ep.eventAfterReply(func() { w.emit(eventOnlineProcedure, ev) })
	res := &herdv1.HelloResponse{ProtocolVersion: ProtocolVersion}
	if w.pool != nil {
		res.MaxRequests = w.pool.maxRequests // pool_recycle.go
	}
	return NewResponse(res).AfterReply(after), nil
}

// workerDisconnecting records that the worker started its own disconnect,
// before it closes its link (Node's exitedAfterDisconnect message).
func (p *Primary) workerDisconnecting(ctx context.Context, req *herdv1.DisconnectRequest) *herdv1.DisconnectResponse {
	w, _ := WorkerFromContext(ctx)
	w.afterDisconnect.Store(true)
	w.disconnecting.Store(true)
	p.ports.stopRouting(w)
	return &herdv1.DisconnectResponse{}
}

// listening records that a server in the worker is listening.
func (p *Primary) listening(ctx context.Context, req *herdv1.ListeningRequest) *herdv1.ListeningResponse {
	w, _ := WorkerFromContext(ctx)
	if s := w.State(); s == StateOnline || s == StateNone {
		w.state.Store(int32(StateListening))
	}
	w.emit(eventListeningProcedure, &herdv1.ListeningEvent{Worker: w.ident(), Address: req.GetAddress()})
	return &herdv1.ListeningResponse{}
}

// ready records that the worker said it is ready (Self.Ready); a pool
// watching the worker counts it (pool.go).
func (p *Primary) ready(ctx context.Context, req *herdv1.ReadyRequest) *herdv1.ReadyResponse {
	w, _ := WorkerFromContext(ctx)
	w.saidReady.Store(true)
	if w.observe != nil {
		w.observe(w, controlServiceReadyProcedure, req)
	}
	return &herdv1.ReadyResponse{}
}
