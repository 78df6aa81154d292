package runtime

import (
	"context"

	herdv1 "github.com/herd-go/herd/gen/herd/v1"
)

// workerControl is a worker's side of herd.v1.ControlService, the handler
// of the primary's control calls. Each runs on its procedure's lane
// (controlLanes): Handoff on the link's reader, the others on the control
// lane (control.go), so that a Disconnect reaches a worker whose user
// handler is stuck.
type workerControl struct {
	unimplementedControlServiceHandler
	s *Self
}

// registerControl installs the worker's side of herd.v1.ControlService.
func (s *Self) registerControl() error {
	return registerControlServiceHandler(&s.control, workerControl{s: s}, withControlLanes())
}

func (c workerControl) Disconnect(ctx context.Context, req *herdv1.DisconnectRequest) (*Response[herdv1.DisconnectResponse], error) {
	return c.s.primaryDisconnect(ctx, req), nil
}

func (c workerControl) Rejected(ctx context.Context, req *herdv1.RejectedRequest) (*Response[herdv1.RejectedResponse], error) {
	c.s.rejected(ctx, req)
	return nil, nil
}

func (c workerControl) Adopt(ctx context.Context, req *herdv1.AdoptRequest) (*Response[herdv1.AdoptResponse], error) {
	return c.s.adopt(ctx, req), nil
}

// Heartbeat answers a pool's watchdog (pool_watchdog.go). It is ordered
// with the primary's messages (controlLanes), so an answer proves that
// this worker's reader and user lane make progress.
func (c workerControl) Heartbeat(ctx context.Context, req *herdv1.HeartbeatRequest) (*Response[herdv1.HeartbeatResponse], error) {
	return NewResponse(&herdv1.HeartbeatResponse{Seq: req.GetSeq()}), nil
}

// Handoff runs on the link's reader (controlLanes).
func (c workerControl) Handoff(ctx context.Context, req *herdv1.HandoffRequest) (*Response[herdv1.HandoffResponse], error) {
	c.s.handoff(ctx, req)
	return nil, nil
}
