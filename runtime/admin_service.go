package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// adminService implements herd.v1.AdminService for a pool. The service's
// handler side is generated into the runtime with unexported names
// (admin.herd.go, buf.gen.yaml), since the public stubs
// (herdv1herd.AdminServiceClient, which herdctl calls it with) import the
// runtime.
type adminService struct {
	a *adminServer
}

var _ adminServiceHandler = (*adminService)(nil)

// register registers the service's handlers on a.mux.
func (a *adminServer) register() error {
	return registerAdminServiceHandler(&a.mux, &adminService{a: a})
}

// audit logs an operator's action, with who asked.
func (s *adminService) audit(ctx context.Context, msg string, args ...any) {
	peer, _ := ctx.Value(adminPeerKey{}).(adminPeer)
	s.a.log.Info("herd: admin: "+msg, append(args, "uid", peer.uid, "pid", peer.pid)...)
}

// Status implements AdminService.Status.
func (s *adminService) Status(ctx context.Context, _ *herdv1.StatusRequest) (*herdv1.StatusResponse, error) {
	ps := s.a.pl.Status()
	res := &herdv1.StatusResponse{
		Pid: int64(os.Getpid()), Size: uint32(ps.Size), Stopping: ps.Stopping,
		LastEvent: s.a.events.last(), ResourcesNote: ps.ResourcesNote,
		Workers: make([]*herdv1.WorkerStatus, 0, len(ps.Workers)),
	}
	for _, w := range ps.Workers {
		res.Workers = append(res.Workers, &herdv1.WorkerStatus{
			Slot: uint32(w.Slot), Id: w.ID, Pid: int64(w.PID), State: w.State, Ready: w.Ready,
			Replacement: w.Replacement, Uptime: durationpb.New(w.Uptime), Restarts: uint32(w.Restarts),
			LastExit: w.LastExit, RssBytes: w.RSS, CpuTime: durationpb.New(w.CPUTime),
			Connections: w.Connections, MailboxDepth: uint32(w.MailboxDepth),
		})
	}
	return res, nil
}

// poolError is a pool's error as the admin client sees it.
func poolError(op string, err error) error {
	if errors.Is(err, ErrPoolStopped) {
		return Errorf(CodeFailedPrecondition, "%s: the pool is stopping", op)
	}
	if _, ok := err.(*Error); ok {
		return err
	}
	return Errorf(CodeAborted, "%s: %v", op, err)
}

// Reload implements AdminService.Reload. The reload goes on when the
// client goes away: an operator's Ctrl-C must not leave half a reload.
func (s *adminService) Reload(ctx context.Context, _ *herdv1.ReloadRequest) (*herdv1.ReloadResponse, error) {
	s.audit(ctx, "reload")
	err := s.a.pl.Reload(context.WithoutCancel(ctx))
	res := &herdv1.ReloadResponse{}
	var re *ReloadError
	switch {
	case errors.As(err, &re):
		res.Aborted = &herdv1.ReloadAbortedEvent{Slot: uint32(re.Slot), Replacement: &herdv1.Worker{Id: re.Worker}, Reason: re.Err.Error()}
	case err != nil:
		return nil, poolError("reload", err)
	}
	for _, w := range s.a.pl.Workers() {
		res.Workers = append(res.Workers, w.id)
	}
	res.LastEvent = s.a.events.last()
	return res, nil
}

// Scale implements AdminService.Scale. Like a reload, it is not undone by
// the client going away.
func (s *adminService) Scale(ctx context.Context, req *herdv1.ScaleRequest) (*herdv1.ScaleResponse, error) {
	n := req.GetSize()
	if n > MaxAdminScale {
		return nil, Errorf(CodeInvalidArgument, "scale to %d: at most %d workers (MaxAdminScale)", n, MaxAdminScale)
	}
	s.audit(ctx, "scale", "size", n)
	prev := s.a.pl.Size()
	if err := s.a.pl.Scale(context.WithoutCancel(ctx), int(n)); err != nil {
		return nil, poolError(fmt.Sprintf("scale to %d", n), err)
	}
	return &herdv1.ScaleResponse{Previous: uint32(prev), Size: uint32(s.a.pl.Size())}, nil
}

// worker finds a live worker of the primary by ID.
func (s *adminService) worker(id uint64) (*Worker, error) {
	if id == 0 {
		return nil, Errorf(CodeInvalidArgument, "no worker ID given")
	}
	w, ok := s.a.pl.p.Worker(id)
	if !ok {
		return nil, Errorf(CodeNotFound, "no live worker %d (herdctl status lists them)", id)
	}
	return w, nil
}

// Kill implements AdminService.Kill.
func (s *adminService) Kill(ctx context.Context, req *herdv1.KillRequest) (*herdv1.KillResponse, error) {
	sig := syscall.SIGTERM
	if name := req.GetSignal(); name != "" {
		var err error
		if sig, err = ParseSignal(name); err != nil || sig > 64 {
			return nil, Errorf(CodeInvalidArgument, "kill: unknown signal %q", name)
		}
	}
	w, err := s.worker(req.GetWorker())
	if err != nil {
		return nil, err
	}
	s.audit(ctx, "kill", "worker", w.id, "signal", signalName(sig))
	if err := w.Kill(sig); err != nil {
		return nil, Errorf(CodeUnavailable, "%v", err)
	}
	return &herdv1.KillResponse{Worker: w.ident(), Signal: signalName(sig)}, nil
}

// Disconnect implements AdminService.Disconnect.
func (s *adminService) Disconnect(ctx context.Context, req *herdv1.AdminServiceDisconnectRequest) (*herdv1.AdminServiceDisconnectResponse, error) {
	w, err := s.worker(req.GetWorker())
	if err != nil {
		return nil, err
	}
	timeout := s.a.pl.cfg.gracefulTimeout
	if d := req.GetTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
			return nil, Errorf(CodeInvalidArgument, "disconnect: timeout %v is not a positive duration", d.AsDuration())
		}
		timeout = d.AsDuration()
	}
	s.audit(ctx, "disconnect", "worker", w.id, "timeout", timeout)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	_ = w.Disconnect(dctx) // SIGKILL at the deadline: the exit says so
	exit, err := w.Wait(ctx)
	if err != nil {
		return nil, NewError(CodeOf(err), err)
	}
	return &herdv1.AdminServiceDisconnectResponse{Exit: exit}, nil
}

// Recycle implements AdminService.Recycle: the rolling path of a reload,
// for one slot.
func (s *adminService) Recycle(ctx context.Context, req *herdv1.AdminServiceRecycleRequest) (*herdv1.AdminServiceRecycleResponse, error) {
	id := req.GetWorker()
	if _, err := s.worker(id); err != nil {
		return nil, err
	}
	s.audit(ctx, "recycle", "worker", id)
	slot, next, err := s.a.pl.recycleWorker(context.WithoutCancel(ctx), id)
	if err != nil {
		return nil, err
	}
	return &herdv1.AdminServiceRecycleResponse{Slot: uint32(slot), Previous: &herdv1.Worker{Id: id}, Replacement: next.ident()}, nil
}

// recycleWorker replaces worker id by the rolling path, as a recycle the
// worker asked for would (pool_recycle.go): a replacement forked into its
// slot and, once ready, a Recycled event (reason
// RECYCLE_REASON_OPERATOR) and the worker disconnected gracefully, its
// exit's cause EXIT_CAUSE_RECYCLED. It runs under the reload lock (one
// reload or recycle at a time). A replacement that is not ready fails it,
// and the worker keeps serving.
func (pl *Pool) recycleWorker(ctx context.Context, id uint64) (int, *Worker, error) {
	pl.reloadMu.Lock()
	defer pl.reloadMu.Unlock()
	pl.mu.Lock()
	var m *member
	for _, x := range pl.slots {
		if c := x.cur; c != nil && c.w != nil && c.w.id == id && !c.isDead {
			m = c
		}
	}
	var why string
	switch {
	case pl.stopping:
		why = "the pool is stopping"
	case m == nil:
		why = "it is not in a slot of the pool"
	case m.retiring || m.recycling || m.w.disconnecting.Load():
		why = "it is leaving already"
	default:
		m.recycling = true
	}
	pl.mu.Unlock()
	if why != "" {
		return 0, nil, Errorf(CodeFailedPrecondition, "recycle worker %d: %s", id, why)
	}
	s := m.slot
	announce := func(old, repl *member) {
		ev := &herdv1.RecycledEvent{
			Worker: old.w.ident(), Slot: uint32(s.index), Reason: herdv1.RecycleReason_RECYCLE_REASON_OPERATOR,
			Replacement: repl.w.ident(),
		}
		// On the old worker's lane: before its disconnect and exit.
		old.w.ep.runEvent(func() { old.w.emit(eventRecycledProcedure, ev) })
	}
	repl, err := pl.replaceSlot(ctx, s, retireRecycle, announce)
	if err != nil || repl == nil {
		pl.dropReplacement(s, repl)
		pl.mu.Lock()
		m.recycling = false
		pl.mu.Unlock()
		if err == nil {
			err = errors.New("its slot went away")
		}
		return 0, nil, Errorf(CodeAborted, "recycle worker %d: it keeps serving: its replacement %v", id, err)
	}
	return s.index, repl.w, nil
}

// Watch implements AdminService.Watch, by long poll.
func (s *adminService) Watch(ctx context.Context, req *herdv1.WatchRequest) (*herdv1.WatchResponse, error) {
	l := s.a.events
	if req.GetFromNow() {
		return &herdv1.WatchResponse{Last: l.last()}, nil
	}
	wait := maxWatchWait
	if d := req.GetWait(); d != nil {
		wait = min(d.AsDuration(), maxWatchWait)
	}
	var timer <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timer = t.C
	}
	for {
		evs, last, missed, changed := l.since(req.GetAfter(), maxWatchEvents)
		if len(evs) > 0 || missed > 0 || timer == nil {
			return &herdv1.WatchResponse{Events: evs, Last: last, Missed: missed}, nil
		}
		select {
		case <-changed:
		case <-timer:
			timer = nil
		case <-ctx.Done():
			return nil, NewError(CodeOf(ctx.Err()), ctx.Err())
		}
	}
}
